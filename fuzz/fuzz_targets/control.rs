//! Control messages: whatever decodes round-trips. The body is `tether_proto::fuzz::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proto::fuzz::control(data));
