//! Arbitrary bytes at a gossip socket. The body is `tether_net::fuzz::gossip_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_net::fuzz::gossip_open(data));
