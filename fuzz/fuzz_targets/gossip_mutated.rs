//! A sealed gossip datagram, changed. The body is `tether_net::fuzz::gossip_mutated`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_net::fuzz::gossip_mutated(data));
