//! The fuzz bodies of `tether_proto::fuzz`, run as proptests in CI: on
//! random bytes, and on valid streams and messages mutated the way a
//! fuzzer would (bits flipped, bytes cut, inserted, a length made huge).
//! The cargo-fuzz targets in `fuzz/` run the same functions for longer.

use proptest::prelude::*;
use tether_proto::frame::{Frame, MAX_FRAME_SIZE};
use tether_proto::fuzz;
use tether_proto::ids::{NodeId, Offset, SessionId};
use tether_proto::msg::{self, *};

fn info() -> SessionInfo {
    SessionInfo::new(SessionId([5; 16]), NodeId([6; 8]), SessionState::Running)
}

/// Control messages of every kind a peer sends.
fn messages() -> Vec<Vec<u8>> {
    let attach = AttachSpec::new("web", StartAt::Offset(Offset(42)));
    vec![
        msg::encode(&Hello::current("fuzz")),
        msg::encode(&Request::List),
        msg::encode(&Request::Attach(attach.clone())),
        msg::encode(&Request::Create(CreateSpec {
            name: Some("x".into()),
            command: vec!["sh".into()],
            env: vec![("A".into(), "b".into())],
            size: Some(WinSize::default()),
            ..CreateSpec::default()
        })),
        msg::encode(&Request::Send {
            target: "web".into(),
            data: vec![0, 255, 3],
        }),
        msg::encode(&Request::Route(Route::Session {
            target: "web@n1".into(),
        })),
        msg::encode(&StreamControl::Resize(WinSize { cols: 9, rows: 3 })),
        msg::encode(&StreamControl::Detach),
        msg::encode(&KeeperRequest::Attach(attach)),
        msg::encode(&KeeperRequest::Watch),
        msg::encode(&Reply::Attached {
            session: info(),
            start: Offset(7),
        }),
        msg::encode(&Reply::Gap {
            missed: Offset(1),
            resume: Offset(9),
        }),
        msg::encode(&Reply::Sessions {
            sessions: vec![info(), info()],
        }),
        msg::encode(&Reply::error(ErrorKind::NotFound, "no such session")),
        msg::encode(&Reply::Snapshot {
            offset: Offset(3),
            data: b"\x1b[H".to_vec(),
            skipped: 0,
        }),
    ]
}

/// An output stream as a node sends it: attached at `start`, then output
/// and gaps, then an end.
fn stream(start: u64, chunks: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut at = start;
    Frame::Control(msg::encode(&Reply::Attached {
        session: info(),
        start: Offset(at),
    }))
    .encode_into(&mut wire);
    for (gap, data) in chunks {
        if *gap {
            let resume = at.wrapping_add(data.len() as u64 + 1);
            Frame::Control(msg::encode(&Reply::Gap {
                missed: Offset(at),
                resume: Offset(resume),
            }))
            .encode_into(&mut wire);
            at = resume;
        } else {
            Frame::Output {
                offset: Offset(at),
                data: data.clone(),
            }
            .encode_into(&mut wire);
            at = at.wrapping_add(data.len() as u64);
        }
    }
    Frame::Control(msg::encode(&Reply::End { offset: Offset(at) })).encode_into(&mut wire);
    wire
}

/// One change a fuzzer makes to an input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Cut(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    /// A u32 written big-endian somewhere: a frame length, say.
    Length(prop::sample::Index, u32),
    Repeat(prop::sample::Index, prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        (i(), 1u8..).prop_map(|(a, b)| Mutation::Flip(a, b)),
        i().prop_map(Mutation::Cut),
        (i(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        (
            i(),
            prop_oneof![
                Just(u32::MAX),
                Just(MAX_FRAME_SIZE as u32 + 1),
                any::<u32>()
            ]
        )
            .prop_map(|(a, b)| Mutation::Length(a, b)),
        (i(), i()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

fn mutate(mut v: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = v.len();
        match m {
            Mutation::Flip(i, x) if n > 0 => v[i.index(n)] ^= x,
            Mutation::Cut(i) => v.truncate(i.index(n + 1)),
            Mutation::Insert(i, b) => {
                let at = i.index(n + 1);
                v.splice(at..at, b.iter().copied());
            }
            Mutation::Length(i, len) if n >= 4 => {
                let at = i.index(n - 3);
                v[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            Mutation::Repeat(a, b) if n > 0 => {
                let (a, b) = (a.index(n), b.index(n));
                let seg = v[a.min(b)..a.max(b)].to_vec();
                v.extend(seg);
            }
            _ => {}
        }
    }
    v
}

fn chunks() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    proptest::collection::vec(
        (
            proptest::bool::weighted(0.2),
            proptest::collection::vec(any::<u8>(), 1..40),
        ),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::frames(&bytes);
        fuzz::control(&bytes);
        fuzz::cursor(&bytes);
        fuzz::plain(&bytes);
        fuzz::target(&bytes);
    }

    #[test]
    fn mutated_streams(
        start in prop_oneof![Just(0u64), Just(u64::MAX - 20), any::<u64>()],
        chunks in chunks(),
        ms in proptest::collection::vec(mutation(), 0..4),
        cuts in proptest::collection::vec(0usize..2000, 0..6),
    ) {
        let wire = mutate(stream(start, &chunks), &ms);
        fuzz::frames(&wire);
        fuzz::frames_cut(&wire, &cuts);
        fuzz::cursor(&wire);
    }

    #[test]
    fn mutated_messages(
        which in any::<prop::sample::Index>(),
        ms in proptest::collection::vec(mutation(), 0..3),
    ) {
        let all = messages();
        let m = mutate(all[which.index(all.len())].clone(), &ms);
        fuzz::control(&m);
        let mut wire = Vec::new();
        Frame::Control(m).encode_into(&mut wire);
        fuzz::frames(&wire);
    }

    #[test]
    fn mutated_terminal_output(
        text in "(\\PC|\x1b\\[[0-9;]{0,6}[A-Za-z]|\x1b\\][0-9];[a-z]{0,8}(\x07|\x1b\\\\)|\r\n?|\t)*",
        ms in proptest::collection::vec(mutation(), 0..3),
    ) {
        fuzz::plain(&mutate(text.into_bytes(), &ms));
    }

    #[test]
    fn mutated_ids(id in any::<[u8; 16]>(), ms in proptest::collection::vec(mutation(), 0..2)) {
        let text = SessionId(id).to_string();
        fuzz::target(&mutate(text.into_bytes(), &ms));
    }
}

/// Output near the end of the offsets: a hostile node cannot make the
/// client's cursor overflow (it panicked in debug builds, and wrapped in
/// release, before [`tether_proto::CursorError`] had `Overflow`).
#[test]
fn output_past_the_largest_offset_is_an_error() {
    let start = u64::MAX - 4;
    let frames = vec![
        Frame::Control(msg::encode(&Reply::Attached {
            session: info(),
            start: Offset(start),
        })),
        Frame::Output {
            offset: Offset(start),
            data: vec![b'x'; 10],
        },
    ];
    let mut c = tether_proto::OutputCursor::new(StartAt::Oldest);
    c.on_frame(frames[0].clone()).unwrap();
    let e = c.on_frame(frames[1].clone()).unwrap_err();
    assert!(e.to_string().contains("past 2^64"), "{e}");
    fuzz::cursor_frames(frames);
}

/// Only one text spells each ID: a first character that would carry bits
/// past the ID's end is refused (it was ignored, so four texts named each
/// session).
#[test]
fn an_id_has_one_spelling() {
    let id = SessionId([0xab; 16]).to_string();
    let mut other = id.clone().into_bytes();
    other[0] = b'z';
    let other = String::from_utf8(other).unwrap();
    assert!(other.parse::<SessionId>().is_err());
    assert_eq!(id.parse::<SessionId>().unwrap(), SessionId([0xab; 16]));
    assert_eq!(
        id.to_uppercase().parse::<SessionId>().unwrap(),
        SessionId([0xab; 16])
    );
    fuzz::target(other.as_bytes());
    let node = NodeId([0xff; 8]).to_string();
    assert!(node.parse::<NodeId>().is_ok());
    let mut bad = node.into_bytes();
    bad[0] = b'z';
    assert!(String::from_utf8(bad).unwrap().parse::<NodeId>().is_err());
}
