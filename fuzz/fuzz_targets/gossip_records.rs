//! Gossip records (JSON). The body is `tether_net::fuzz::gossip_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_net::fuzz::gossip_records(data));
