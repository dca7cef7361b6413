//! Tests of the sealed gossip transport: kept apart so that the module reads as
//! the mechanism alone.
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const NOW: u64 = 1_700_000_000_000;

fn key(s: &str) -> ClusterKey {
    ClusterKey::from_secret(s.as_bytes())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn b() -> SocketAddr {
    addr("127.0.0.2:7500")
}

fn opener(k: &str, own: SocketAddr) -> Opener {
    Opener::new(Keyring::new(key(k)), [own])
}

fn sealed(sealer: &mut Sealer, to: SocketAddr, time_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    sealer.seal(time_ms, to, payload, &mut d).unwrap();
    d
}

proptest! {
    #[test]
    fn seal_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..2000), inst in any::<u128>(), n in 1usize..5) {
        let mut s = Sealer::new(&key("secret"), inst);
        let mut o = opener("secret", b());
        for i in 1..=n as u64 {
            let d = sealed(&mut s, b(), NOW, &payload);
            prop_assert_eq!(d.len(), payload.len() + OVERHEAD);
            prop_assert_eq!(o.open(&d, NOW), Ok(Opened { instance: inst, counter: i, key: KeyRole::Current, payload: payload.clone() }));
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected(payload in proptest::collection::vec(any::<u8>(), 1..200), bit in any::<prop::sample::Index>()) {
        let mut d = sealed(&mut Sealer::new(&key("secret"), 1), b(), NOW, &payload);
        let i = bit.index(d.len() * 8);
        d[i / 8] ^= 1 << (i % 8);
        prop_assert!(opener("secret", b()).open(&d, NOW).is_err());
    }

    #[test]
    fn the_payload_is_not_in_clear(secret in "[a-z]{12,40}") {
        let payload = format!("{{\"c\":\"mysql -uroot -p{secret}\"}}");
        let d = sealed(&mut Sealer::new(&key("k"), 7), b(), NOW, payload.as_bytes());
        prop_assert!(!d.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    /// The window accepts exactly what a model with unbounded memory
    /// accepts: an unseen counter no further than the window behind
    /// the highest one accepted.
    #[test]
    fn replay_window_matches_a_model(counters in proptest::collection::vec(0u64..6000, 1..400)) {
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        for c in counters {
            let top = seen.last().copied();
            let model = !seen.contains(&c) && top.is_none_or(|t| c > t || t - c < REPLAY_WINDOW);
            prop_assert_eq!(w.is_new(c), model, "counter {}", c);
            if model {
                w.mark(c);
                seen.insert(c);
            }
        }
    }
}

#[test]
fn another_clusters_datagram_does_not_verify() {
    let d = sealed(&mut Sealer::new(&key("a"), 1), b(), NOW, b"hi");
    assert_eq!(opener("b", b()).open(&d, NOW), Err(Reject::Forged));
    assert_eq!(opener("b", b()).open(b"short", NOW), Err(Reject::Malformed));
    let mut v1 = d.clone();
    v1[..4].copy_from_slice(b"TGS1");
    assert_eq!(opener("a", b()).open(&v1, NOW), Err(Reject::Malformed));
}

#[test]
fn a_datagram_for_another_receiver_is_refused() {
    let c = addr("127.0.0.3:7500");
    let mut s = Sealer::new(&key("k"), 1);
    let to_b = sealed(&mut s, b(), NOW, b"syn");
    assert_eq!(opener("k", c).open(&to_b, NOW), Err(Reject::Misdirected));
    // Same IP, another port; and the same address as IPv4-mapped IPv6.
    assert_eq!(
        opener("k", addr("127.0.0.2:7501")).open(&to_b, NOW),
        Err(Reject::Misdirected)
    );
    let mapped = addr("[::ffff:127.0.0.2]:7500");
    assert!(opener("k", mapped).open(&to_b, NOW).is_ok());
    // Rewriting the receiver field breaks the tag.
    let mut moved = to_b.clone();
    moved[37..55].copy_from_slice(&receiver_bytes(c));
    assert_eq!(opener("k", c).open(&moved, NOW), Err(Reject::Forged));
    assert_eq!(receiver_of(&moved), Some(c));
}

#[test]
fn a_member_answers_to_each_of_its_addresses() {
    let listen = addr("10.0.0.5:7500");
    let advertise = addr("203.0.113.7:7500");
    let mut o = Opener::new(
        Keyring::new(key("k")),
        [advertise, listen, addr("0.0.0.0:0")],
    );
    assert_eq!(o.own(), &[listen, advertise]);
    let mut s = Sealer::new(&key("k"), 1);
    assert!(o.open(&sealed(&mut s, listen, NOW, b"x"), NOW).is_ok());
    assert!(o.open(&sealed(&mut s, advertise, NOW, b"x"), NOW).is_ok());
}

#[test]
fn a_replay_is_refused_and_reordering_within_the_window_is_not() {
    let mut s = Sealer::new(&key("k"), 1);
    let mut o = opener("k", b());
    let ds: Vec<Vec<u8>> = (0..5).map(|_| sealed(&mut s, b(), NOW, b"m")).collect();
    assert!(o.open(&ds[0], NOW).is_ok());
    assert_eq!(o.open(&ds[0], NOW), Err(Reject::Replayed));
    assert!(o.open(&ds[3], NOW).is_ok());
    assert!(o.open(&ds[1], NOW).is_ok(), "late, within the window");
    assert_eq!(o.open(&ds[1], NOW), Err(Reject::Replayed));
    assert_eq!(o.open(&ds[3], NOW), Err(Reject::Replayed));
    assert!(o.open(&ds[2], NOW).is_ok());
    assert!(o.open(&ds[4], NOW).is_ok());
    // Once the sender is further ahead than the window, the old one is
    // refused although never seen.
    let late = sealed(&mut s, b(), NOW, b"m");
    for _ in 0..REPLAY_WINDOW {
        let d = sealed(&mut s, b(), NOW, b"m");
        o.open(&d, NOW).unwrap();
    }
    assert_eq!(o.open(&late, NOW), Err(Reject::Replayed));
}

#[test]
fn send_time_outside_the_skew_is_stale() {
    let mut s = Sealer::new(&key("k"), 1);
    let mut o = opener("k", b());
    let old = sealed(&mut s, b(), NOW - MAX_SKEW_MS - 1, b"m");
    let future = sealed(&mut s, b(), NOW + MAX_SKEW_MS + 1, b"m");
    let edge = sealed(&mut s, b(), NOW - MAX_SKEW_MS, b"m");
    assert_eq!(o.open(&old, NOW), Err(Reject::Stale));
    assert_eq!(o.open(&future, NOW), Err(Reject::Stale));
    assert!(o.open(&edge, NOW).is_ok());
}

#[test]
fn a_rotated_key_is_accepted_only_while_configured() {
    let (old, new) = (key("old secret"), key("new secret"));
    let mut y = Sealer::new(&old, 1);
    let mut z = Sealer::new(&new, 2);
    let from_y = sealed(&mut y, b(), NOW, b"y");
    let from_z = sealed(&mut z, b(), NOW, b"z");
    // Only the new secret: the old one's datagrams do not verify.
    let mut x = Opener::new(Keyring::new(new.clone()), [b()]);
    assert_eq!(x.open(&from_y, NOW), Err(Reject::Forged));
    assert_eq!(x.open(&from_z, NOW).unwrap().key, KeyRole::Current);
    // New, previous old: both verify, each labelled.
    let ring = Keyring::new(new.clone()).accepting(KeyRole::Previous, old.clone());
    let mut x = Opener::new(ring, [b()]);
    assert_eq!(x.open(&from_y, NOW).unwrap().key, KeyRole::Previous);
    assert_eq!(x.open(&from_z, NOW).unwrap().key, KeyRole::Current);
    // Old, next new (first phase).
    let ring = Keyring::new(old.clone()).accepting(KeyRole::Next, new.clone());
    let mut w = Opener::new(ring, [b()]);
    assert_eq!(w.open(&from_z, NOW).unwrap().key, KeyRole::Next);
    // A known sender is held to the key it came with: a datagram of
    // instance 2 sealed with the old key is forged.
    let mut z_old = Sealer::new(&old, 2);
    let mut d = sealed(&mut z_old, b(), NOW, b"z");
    d[21..29].copy_from_slice(&9u64.to_be_bytes());
    assert_eq!(w.open(&d, NOW), Err(Reject::Forged));
}

#[test]
fn a_sealer_never_wraps_its_counter() {
    let mut s = Sealer::new(&key("k"), 1).at_counter(u64::MAX);
    let mut o = opener("k", b());
    let last = sealed(&mut s, b(), NOW, b"m");
    assert_eq!(o.open(&last, NOW).unwrap().counter, u64::MAX);
    let mut d = Vec::new();
    assert_eq!(
        s.seal(NOW, b(), b"m", &mut d),
        Err(SealError::CounterExhausted)
    );
}

#[test]
fn the_sender_table_is_bounded_and_forgets_silent_senders() {
    let k = key("k");
    let mut o = opener("k", b());
    o.max_senders = 4;
    for i in 0..4 {
        let d = sealed(&mut Sealer::new(&k, i), b(), NOW, b"m");
        o.open(&d, NOW).unwrap();
    }
    let d = sealed(&mut Sealer::new(&k, 100), b(), NOW, b"m");
    assert_eq!(o.open(&d, NOW), Err(Reject::TooManySenders));
    // A known sender still gets through.
    let mut s0 = Sealer::new(&k, 0).at_counter(2);
    assert!(o.open(&sealed(&mut s0, b(), NOW, b"m"), NOW).is_ok());
    // Once the others are silent for twice the skew, room is made.
    let later = NOW + 2 * MAX_SKEW_MS + 1;
    let d = sealed(&mut Sealer::new(&k, 100), b(), later, b"m");
    assert!(o.open(&d, later).is_ok());
    assert_eq!(o.senders(), 1);
}

#[test]
fn large_payloads_are_compressed_to_fit() {
    // chitchat's messages fit a datagram (they cross its own UDP
    // socket), but not always with the seal's overhead on top.
    let payload = vec![b'x'; MAX_DATAGRAM - 10];
    let d = sealed(&mut Sealer::new(&key("a"), 1), b(), NOW, &payload);
    assert!(d.len() <= MAX_DATAGRAM);
    assert_eq!(d[4], FLAG_ZSTD);
    assert_eq!(opener("a", b()).open(&d, NOW).unwrap().payload, payload);
    let mut d = Vec::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..MAX_DATAGRAM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let r = Sealer::new(&key("a"), 1).seal(NOW, b(), &noise, &mut d);
    assert_eq!(r, Err(SealError::TooLarge { len: MAX_DATAGRAM }));
}

#[test]
fn unknown_flags_are_malformed() {
    // A flag bit a future layout might use, sealed properly.
    let mut s = Sealer::new(&key("k"), 1);
    let mut d = sealed(&mut s, b(), NOW, b"m");
    d[4] = 0x80;
    let k = key("k").instance_key(1);
    let (header, rest) = d.split_at_mut(HEADER_LEN);
    let text_len = rest.len() - TAG_LEN;
    let mut text = b"m".to_vec();
    let tag = k
        .seal_in_place_separate_tag(nonce(1), Aad::from(&*header), &mut text)
        .unwrap();
    rest[..text_len].copy_from_slice(&text);
    rest[text_len..].copy_from_slice(tag.as_ref());
    assert_eq!(opener("k", b()).open(&d, NOW), Err(Reject::Malformed));
}
