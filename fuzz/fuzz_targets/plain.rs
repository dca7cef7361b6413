//! The plain-text filter, split anywhere. The body is `tether_proto::fuzz::plain`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proto::fuzz::plain(data));
