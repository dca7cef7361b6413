//! The fuzz bodies of `tether_net::fuzz`, run as proptests in CI: the
//! stream reader and sealed gossip fed random bytes, and valid frames and
//! datagrams changed the way a fuzzer would. The cargo-fuzz targets in
//! `fuzz/` run the same functions for longer.

use proptest::prelude::*;
use tether_net::fuzz::{self, READER_MAX_FRAME};
use tether_proto::frame::MAX_FRAME_SIZE;
use tether_proto::ids::Offset;
use tether_proto::{msg, Frame, Hello, Request};

/// Valid frames, one of them of `big` bytes.
fn frames(big: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    Frame::Control(msg::encode(&Hello::current("fuzz"))).encode_into(&mut wire);
    Frame::Control(msg::encode(&Request::List)).encode_into(&mut wire);
    Frame::Input(vec![b'i'; big]).encode_into(&mut wire);
    Frame::Output {
        offset: Offset(9),
        data: b"out".to_vec(),
    }
    .encode_into(&mut wire);
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::frame_reader(&bytes);
        fuzz::gossip_open(&bytes);
        fuzz::gossip_mutated(&bytes);
        fuzz::gossip_records(&bytes);
    }

    #[test]
    fn mutated_frames(
        big in prop_oneof![0..READER_MAX_FRAME + 50, Just(READER_MAX_FRAME + 1)],
        flip in any::<prop::sample::Index>(),
        x in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        len in prop_oneof![Just(u32::MAX), Just(MAX_FRAME_SIZE as u32 + 1), any::<u32>()],
        cuts in proptest::collection::vec(0usize..1200, 0..5),
    ) {
        let wire = frames(big);
        fuzz::frame_reader_cut(&wire, &cuts);
        let mut m = wire.clone();
        let i = flip.index(m.len());
        m[i] ^= x;
        fuzz::frame_reader_cut(&m, &cuts);
        fuzz::frame_reader_cut(&wire[..cut.index(wire.len() + 1)], &cuts);
        let mut huge = wire;
        let at = cut.index(huge.len() - 4);
        huge[at..at + 4].copy_from_slice(&len.to_be_bytes());
        fuzz::frame_reader_cut(&huge, &cuts);
    }

    #[test]
    fn gossip_records_mutated(name in "[a-z]{0,8}", cut in any::<prop::sample::Index>()) {
        let j = format!(r#"{{"id":"{name}","name":"n","role":"node","fp":"ab","ver":"1","relays":["r1"]}}"#);
        fuzz::gossip_records(j.as_bytes());
        fuzz::gossip_records(&j.as_bytes()[..cut.index(j.len())]);
        let s = format!(r#"{{"n":"{name}","st":"paused","c":"sh","t":1}}"#);
        fuzz::gossip_records(s.as_bytes());
    }
}

/// A frame above a reader's limit is refused also when it arrives whole
/// in one read (the limit was checked only on a frame still incomplete,
/// so a relay's routing reader took a frame of up to 1 MiB in one read
/// where it allows 64 KiB).
#[test]
fn a_frame_above_the_limit_is_refused_in_any_read() {
    let wire = frames(READER_MAX_FRAME + 1);
    fuzz::frame_reader_cut(&wire, &[]);
    fuzz::frame_reader(&wire);
}
