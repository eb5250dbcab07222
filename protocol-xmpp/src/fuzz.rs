//! The fuzz targets' logic, shared with the corpus replay test.

#[doc(hidden)]
pub fn fuzz_stream(_data: &[u8]) {}

#[doc(hidden)]
pub fn fuzz_client_message(_data: &[u8]) {}
