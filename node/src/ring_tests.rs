//! Tests of the ring: header checks, offsets, reads of damaged files.

use super::*;
use proptest::prelude::*;

/// A model: the whole output, never dropped.
fn check_against_model(cap: u64, writes: &[Vec<u8>], reads: &[(u64, usize)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let mut ring = Ring::create(&path, cap).unwrap();
    let mut model: Vec<u8> = Vec::new();
    for w in writes {
        ring.append(w);
        model.extend_from_slice(w);
        assert_eq!(ring.end().0, model.len() as u64);
        assert_eq!(ring.start().0, (model.len() as u64).saturating_sub(cap));
    }
    for &(from, max) in reads {
        let (p, bytes) = ring.read(Offset(from), max);
        let start = ring.start().0;
        if from < start {
            assert_eq!(p.gap_to, Some(start));
            assert_eq!(p.offset, start);
        } else {
            assert_eq!(p.gap_to, None);
            assert_eq!(p.offset, from.min(ring.end().0));
        }
        assert!(bytes.len() <= max);
        let o = p.offset as usize;
        assert_eq!(bytes, &model[o..o + bytes.len()]);
        // Reading on from there yields the rest, contiguously.
        let mut all = Vec::new();
        let (first, _) = ring.read_all(Offset(p.offset), &mut all);
        assert_eq!(first.0, p.offset);
        assert_eq!(&all[..], &model[o..]);
    }
    // Reopening the file (as a daemon does after the keeper died) shows
    // the same contents.
    drop(ring);
    let ring = Ring::open(&path).unwrap();
    let h = peek(&path).unwrap();
    assert_eq!((h.start(), h.end(), h.cap), (ring.start(), ring.end(), cap));
    let mut all = Vec::new();
    let (first, _) = ring.read_all(Offset(0), &mut all);
    assert_eq!(&all[..], &model[first.0 as usize..]);
    assert_eq!(ring.end().0, model.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn ring_matches_model(
        cap in 4096u64..9000,
        writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..12),
        reads in proptest::collection::vec((0u64..40000, 1usize..10000), 1..8),
    ) {
        check_against_model(cap, &writes, &reads);
    }

    #[test]
    fn plan_stays_in_bounds(cap in 1u64..1_000_000, end in 0u64..u64::MAX / 2, from in any::<u64>(), max in 1usize..1_000_000) {
        let p = plan_read(cap, end, from, max);
        prop_assert!(p.pos < cap as usize);
        prop_assert!(p.pos + p.len <= cap as usize);
        prop_assert!(p.offset + p.len as u64 <= end);
        prop_assert!(p.offset >= end.saturating_sub(cap));
        prop_assert!(p.len <= max);
    }
}

#[test]
fn spare_and_commit_match_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Ring::create(&dir.path().join("a"), 4096).unwrap();
    let mut b = Ring::create(&dir.path().join("b"), 4096).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    for chunk in data.chunks(1500) {
        a.append(chunk);
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = b.spare(rest.len());
            let n = room.len();
            room.copy_from_slice(&rest[..n]);
            b.commit(n);
            rest = &rest[n..];
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    a.read_all(Offset(0), &mut x);
    b.read_all(Offset(0), &mut y);
    assert_eq!((x, a.end()), (y, b.end()));
    assert_eq!(b.spare(usize::MAX).len(), 4096 - 10_000 % 4096);
}

#[test]
fn write_larger_than_capacity_keeps_the_tail() {
    let data: Vec<u8> = (0..20000u32).map(|i| i as u8).collect();
    check_against_model(
        4096,
        &[data],
        &[(0, 100_000), (15904, 10), (19999, 5), (20000, 5)],
    );
}

#[test]
fn corrupt_and_bad_size_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ring");
    std::fs::write(&p, vec![0u8; 9000]).unwrap();
    assert!(matches!(
        Ring::open(&p),
        Err(RingError::Corrupt {
            why: HeaderError::BadMagic,
            ..
        })
    ));
    assert!(matches!(Ring::create(&p, 10), Err(RingError::BadSize(10))));
}

/// A valid header's bytes.
fn header(cap: u64, end: u64) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&cap.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    // No status published.
    h.extend_from_slice(&[0; 8]);
    h
}

#[test]
fn impossible_headers_are_refused_with_the_reason() {
    let len = HEADER as u64 + 4096;
    assert_eq!(
        Header::parse(&header(4096, 10), len),
        Ok(Header {
            cap: 4096,
            end: 10,
            status: Status::default()
        })
    );
    assert_eq!(
        Header::parse(&header(4096, MAX_END), len).map(|h| h.start()),
        Ok(Offset(MAX_END - 4096))
    );
    let cases = [
        (
            header(4096, u64::MAX),
            len,
            HeaderError::ImpossibleEnd(u64::MAX),
        ),
        (
            header(4096, MAX_END + 1),
            len,
            HeaderError::ImpossibleEnd(MAX_END + 1),
        ),
        (header(0, 0), len, HeaderError::BadCapacity(0)),
        (
            header(MAX_RING_SIZE + 1, 0),
            len,
            HeaderError::BadCapacity(MAX_RING_SIZE + 1),
        ),
        (
            header(8192, 0),
            len,
            HeaderError::SizeMismatch { cap: 8192, len },
        ),
        (header(4096, 0), 100, HeaderError::TooShort(100)),
        (
            header(4096, 0)[..20].to_vec(),
            len,
            HeaderError::TooShort(len),
        ),
        (vec![0; Header::LEN], len, HeaderError::BadMagic),
    ];
    for (bytes, len, why) in cases {
        assert_eq!(Header::parse(&bytes, len), Err(why));
    }
}

#[test]
fn the_keepers_status_is_read_back_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ring");
    let mut ring = Ring::create(&p, 4096).unwrap();
    assert_eq!(peek(&p).unwrap().status, Status::default());
    let size = tether_proto::WinSize {
        cols: 132,
        rows: 43,
    };
    ring.set_status(2, size);
    ring.append(b"hello");
    let h = peek(&p).unwrap();
    assert_eq!((h.end, h.status.clients, h.status.size), (5, 2, Some(size)));
}

#[test]
fn a_damaged_end_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ring");
    let mut ring = Ring::create(&p, 4096).unwrap();
    ring.append(b"hello");
    drop(ring);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    for err in [Ring::open(&p).err().unwrap(), peek(&p).unwrap_err()] {
        let RingError::Corrupt { path, why } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((path, why), (&p, &HeaderError::ImpossibleEnd(u64::MAX)));
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string())
                && msg.contains("18446744073709551615")
                && msg.contains("tether rm"),
            "{msg}"
        );
    }
}

#[test]
fn ring_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ring");
    // Also a file left with a looser mode is made private.
    std::fs::write(&p, b"old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    Ring::create(&p, 4096).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Header bytes that are sometimes valid: the magic or not, capacities
/// and ends in range, at the edges, or anything.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let cap = prop_oneof![
        MIN_RING_SIZE..=MIN_RING_SIZE + 64,
        Just(MAX_RING_SIZE),
        any::<u64>()
    ];
    let end = prop_oneof![
        0u64..100_000,
        MAX_END - 100_000..=MAX_END + 1,
        u64::MAX - 100_000..=u64::MAX,
        any::<u64>()
    ];
    (
        any::<bool>(),
        cap,
        end,
        proptest::collection::vec(any::<u8>(), 0..30),
    )
        .prop_map(
            |(magic, cap, end, junk)| {
                if magic {
                    header(cap, end)
                } else {
                    junk
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Whatever a header says, a header that passes the check never
    /// makes `plan_read` point outside the file or before the start.
    #[test]
    fn no_header_plans_a_read_outside_the_file(
        bytes in header_bytes(),
        len_off in prop_oneof![Just(0u64), any::<u64>()],
        from in prop_oneof![0u64..200_000, any::<u64>()],
        max in 1usize..10_000_000,
    ) {
        // The file's length: what the header implies, or anything.
        let implied = bytes.get(8..16).map(|c| u64::from_le_bytes(c.try_into().unwrap()));
        let len = match (len_off, implied) {
            (0, Some(cap)) => (HEADER as u64).saturating_add(cap),
            (l, _) => l,
        };
        if let Ok(h) = Header::parse(&bytes, len) {
            let p = plan_read(h.cap, h.end, from, max);
            prop_assert!(HEADER as u64 + p.pos as u64 + p.len as u64 <= len);
            prop_assert!(p.offset >= h.start().0 && p.offset + p.len as u64 <= h.end);
            prop_assert!(p.len <= max);
        }
    }
}

#[test]
fn reads_of_a_file_with_any_header_stay_inside_it() {
    // The same through `Ring::open` on real files, for a few headers at
    // the edges: open refuses, or every read lands in the map.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ring");
    for (cap, end) in [(4096, 0), (4096, MAX_END), (4096, u64::MAX), (5000, 12345)] {
        Ring::create(&p, 4096).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[..Header::LEN].copy_from_slice(&header(cap, end));
        std::fs::write(&p, &bytes).unwrap();
        match Ring::open(&p) {
            Ok(r) => {
                let mut out = Vec::new();
                r.read_all(Offset(0), &mut out);
                assert!(out.len() as u64 <= r.capacity());
                assert_eq!((cap, r.end().0), (4096, end));
            }
            Err(e) => assert!(matches!(e, RingError::Corrupt { .. }), "{e}"),
        }
    }
}
