//! Server bytes into `StreamReader` in arbitrary chunks, NUL separating restarted
//! documents; see `protocol_xmpp::fuzz_stream` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol_xmpp::fuzz_stream(data));
