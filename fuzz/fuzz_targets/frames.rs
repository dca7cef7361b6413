//! A stream of frames: split anywhere, re-encoded, oversized headers. The body is `tether_proto::fuzz::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proto::fuzz::frames(data));
