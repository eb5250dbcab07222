//! Arbitrary client bytes, whole and cut at arbitrary points, into the decoder and the
//! per-channel content assemblers; see `fuzz_logic.rs` for the invariants checked.
#![no_main]

#[path = "../fuzz_logic.rs"]
mod fuzz_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_logic::fuzz_decode(data));
