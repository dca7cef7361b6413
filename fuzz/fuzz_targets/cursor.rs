//! The client's output cursor fed a hostile node's frames. The body is `tether_proto::fuzz::cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proto::fuzz::cursor(data));
