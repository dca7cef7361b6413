//! The stream reader of nodes, relays and keepers, split anywhere. The body is `tether_net::fuzz::frame_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_net::fuzz::frame_reader(data));
