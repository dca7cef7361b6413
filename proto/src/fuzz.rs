//! Fuzz bodies of the wire codec: one function per decoder a peer reaches,
//! taking arbitrary bytes and asserting (panicking otherwise) what every
//! decoder must do with any input:
//! - it never panics, and refuses a declared length above the limits from
//!   the header alone, before anything is allocated;
//! - what it decodes re-encodes to the same bytes, or at least decodes
//!   back to the same value;
//! - a stream decoder gives the same result whatever the cuts between the
//!   reads that fed it.
//!
//! The same functions run in two places: the cargo-fuzz targets of
//! `fuzz/` (nightly, on demand; see its README) and the proptests of
//! `proto/tests/fuzz.rs` (every CI run), with random and mutated-valid
//! inputs. The network layer's decoders (the stream reader, sealed gossip)
//! have theirs in `tether_net::fuzz`.
//!
//! Not a stable API: hidden from the docs, for those two callers only.

use crate::cursor::{Event, OutputCursor};
use crate::frame::{DecodeError, Frame, HEADER_LEN, MAX_FRAME_SIZE};
use crate::ids::{NodeId, Offset, SessionId};
use crate::msg::{self, StartAt};
use crate::plain::Plain;
use crate::resolve::{resolve_target, Candidate};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// How a stream of bytes ended, for [`decode_stream`].
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every byte was part of a whole frame.
    Clean,
    /// The last `n` bytes are the start of a frame that never finished.
    Truncated(usize),
    /// The bytes after the frames can never become one.
    Invalid(DecodeError),
}

/// Decodes `wire` as a stream reader does: the bytes arrive in reads cut
/// at `cuts` (offsets into `wire`, in any order; out of range ones are
/// ignored), and after each read every whole frame in the buffer is taken.
pub fn decode_stream(wire: &[u8], cuts: &[usize]) -> (Vec<Frame>, StreamEnd) {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < wire.len()).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    cuts.dedup();
    let (mut buf, mut frames, mut from) = (Vec::new(), Vec::new(), 0);
    for cut in cuts {
        buf.extend_from_slice(&wire[from..cut]);
        from = cut;
        loop {
            match Frame::decode(&buf) {
                Ok(Some((f, used))) => {
                    assert!(used >= HEADER_LEN && used <= buf.len(), "used {used}");
                    buf.drain(..used);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => return (frames, StreamEnd::Invalid(e)),
            }
        }
    }
    let end = match buf.len() {
        0 => StreamEnd::Clean,
        n => StreamEnd::Truncated(n),
    };
    (frames, end)
}

/// Frames: a stream of frames decodes the same whole, byte by byte, and
/// in reads of 3 and of 7 bytes; every frame re-encodes to the bytes it
/// came from; a header announcing more than [`MAX_FRAME_SIZE`] is refused
/// on its own.
pub fn frames(wire: &[u8]) {
    let every = |step: usize| (step..wire.len()).step_by(step).collect::<Vec<_>>();
    frames_cut(wire, &every(1));
    frames_cut(wire, &every(3));
    frames_cut(wire, &every(7));
}

/// [`frames`], with the reads cut at `cuts` compared to one read.
pub fn frames_cut(wire: &[u8], cuts: &[usize]) {
    let whole = decode_stream(wire, &[]);
    let split = decode_stream(wire, cuts);
    assert_eq!(whole, split, "cut at {cuts:?}");

    let (frames, end) = whole;
    let mut again = Vec::new();
    for f in &frames {
        f.encode_into(&mut again);
    }
    let rest = &wire[again.len()..];
    assert_eq!(
        &wire[..again.len()],
        &again[..],
        "frames re-encode as they came"
    );
    match end {
        StreamEnd::Clean => assert!(rest.is_empty()),
        StreamEnd::Truncated(n) => assert_eq!(n, rest.len()),
        StreamEnd::Invalid(DecodeError::TooLarge(n)) => {
            assert!(n > MAX_FRAME_SIZE);
            assert_eq!(
                Frame::decode(&rest[..HEADER_LEN]),
                Err(DecodeError::TooLarge(n)),
                "refused from the header alone"
            );
        }
        StreamEnd::Invalid(_) => {}
    }
}

/// Control messages: whatever decodes as one of the messages a peer sends
/// (hello, request, reply, stream control, keeper request, and the records
/// inside them) encodes again, and that decodes to the same value and
/// re-encodes to the same bytes.
pub fn control(payload: &[u8]) {
    roundtrip::<msg::Hello>(payload);
    roundtrip::<msg::Request>(payload);
    roundtrip::<msg::Reply>(payload);
    roundtrip::<msg::StreamControl>(payload);
    roundtrip::<msg::KeeperRequest>(payload);
    roundtrip::<msg::SessionInfo>(payload);
    roundtrip::<msg::MemberInfo>(payload);
    roundtrip::<crate::events::Event>(payload);
    roundtrip::<crate::gossip::SessionRecord>(payload);
    roundtrip::<crate::gossip::NodeRecord>(payload);
}

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + Debug>(payload: &[u8]) {
    let Ok(v) = msg::decode::<T>(payload) else {
        return;
    };
    let bytes = msg::encode(&v);
    let back: T = msg::decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} {v:?} encodes to bytes it cannot decode: {e}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(back, v);
    assert_eq!(msg::encode(&back), bytes, "one encoding per value");
}

/// The client's output cursor, fed the frames `wire` holds (see
/// [`cursor_frames`]).
pub fn cursor(wire: &[u8]) {
    cursor_frames(decode_stream(wire, &[]).0);
}

/// The client's output cursor, fed `frames` as a hostile node might send
/// them: it never panics; each output event starts at the byte expected
/// and moves the position by its length; a gap starts there too and moves
/// it forward; nothing else moves it; after an error the client stops.
pub fn cursor_frames(frames: Vec<Frame>) {
    let mut c = OutputCursor::new(StartAt::Oldest);
    for f in frames {
        let before = c.position();
        let Ok(ev) = c.on_frame(f) else {
            assert_eq!(c.position(), before, "an error moves nothing");
            return;
        };
        let after = c.position();
        match ev {
            Event::Output { offset, data } => {
                assert_eq!(Some(offset), before);
                assert!(!data.is_empty());
                assert_eq!(after, Some(Offset(offset.0 + data.len() as u64)));
            }
            Event::Gap { missed, resume } => {
                assert_eq!(Some(missed), before);
                assert!(resume > missed);
                assert_eq!(after, Some(resume));
            }
            Event::Attached { start, .. } => match before {
                None => assert_eq!(after, Some(start)),
                Some(b) => assert!(start <= b && after == before),
            },
            _ => assert_eq!(after, before),
        }
    }
}

/// The plain-text filter: the same text whether the output comes at once
/// or cut anywhere (here: byte by byte, and in reads of 5), and never
/// more bytes than came in.
pub fn plain(output: &[u8]) {
    let whole = crate::plain::plain(output);
    assert!(whole.len() <= output.len());
    for step in [1, 5] {
        let (mut p, mut out) = (Plain::new(), Vec::new());
        for chunk in output.chunks(step) {
            p.feed(chunk, &mut out);
        }
        p.finish(&mut out);
        assert_eq!(out, whole, "reads of {step}");
    }
    let cut = crate::plain::whole_prefix(output);
    let mut joined = crate::plain::plain(&output[..cut]);
    joined.extend(crate::plain::plain(&output[cut..]));
    assert_eq!(joined, whole, "pages cut at a whole prefix ({cut})");
}

/// Targets and IDs a peer names: parsing never panics, an ID that parses
/// prints as the text it came from (up to case), and a target resolves only to one
/// of the candidates.
pub fn target(text: &[u8]) {
    let t = String::from_utf8_lossy(text);
    if let Ok(id) = t.parse::<SessionId>() {
        assert_eq!(id.to_string(), t.to_ascii_lowercase(), "one text per ID");
    }
    if let Ok(id) = t.parse::<NodeId>() {
        assert_eq!(id.to_string(), t.to_ascii_lowercase(), "one text per ID");
    }
    let _ = crate::ids::validate_prefix(&t);
    let _ = crate::resolve::looks_like_id(&t);
    let _ = crate::keys::encode(&t);
    let ids: Vec<SessionId> = (0u8..4)
        .map(|i| SessionId([i / 2, 0xcd, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, i]))
        .collect();
    let names = [Some("web"), Some("web"), None, Some("db")];
    let nodes = ["n1", "n2", "n1", "n2"];
    let candidates: Vec<Candidate> = (0..4)
        .map(|i| Candidate {
            id: ids[i],
            name: names[i],
            node: nodes[i],
        })
        .collect();
    if let Ok(id) = resolve_target(&t, candidates.iter().copied()) {
        assert!(ids.contains(&id), "{t:?} resolved to a stranger {id}");
    }
}
