//! One WebSocket message into `parse_client_message`; see
//! `protocol_xmpp::fuzz_client_message` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol_xmpp::fuzz_client_message(data));
