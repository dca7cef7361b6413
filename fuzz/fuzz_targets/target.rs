//! Targets, IDs and key names a peer sends. The body is `tether_proto::fuzz::target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proto::fuzz::target(data));
