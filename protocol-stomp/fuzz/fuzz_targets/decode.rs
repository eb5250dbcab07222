//! Arbitrary bytes into the decoder, whole and split; see
//! `protocol_stomp::fuzz_decode` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol_stomp::fuzz_decode(data));
