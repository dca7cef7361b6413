//! The server side of an output stream: how a session's ring becomes
//! `Output` and `Gap` frames, and which reply closes the stream. The keeper
//! (live sessions) and the daemon (replaying an ended session's ring file)
//! both run this one [`OutputEncoder`]; the client side is
//! [`crate::cursor::OutputCursor`].
//!
//! # Protocol flow
//! 1. The client sends `Request::Attach(spec)`.
//! 2. The server makes an encoder with [`OutputEncoder::new`]`(spec.start,
//!    spec.follow, &ring)` and answers [`OutputEncoder::attached`]: the
//!    `Attached` reply whose `start` is the first offset it will send. A
//!    start past the ring's end is brought back to the end; a start older
//!    than the ring is kept, so that the client is told of the gap.
//! 3. While the ring has bytes for it, the server calls
//!    [`OutputEncoder::encode`] and writes what it appended: `Output`
//!    frames (offset, bytes) that follow each other without holes, and,
//!    whenever the cursor is older than the ring's oldest byte (the client
//!    fell behind, or asked for bytes already overwritten), a
//!    `Gap { missed, resume }` notice first.
//! 4. Once `encode` has nothing left, the server asks
//!    [`OutputEncoder::closing`] with how the session ended, if it did:
//!    - `End { offset }`: a non-following stream reached the ring's end as
//!      it was when the stream opened;
//!    - `Exited { end, status }` / `Lost { end }`: the session ended and
//!      every byte up to its end was sent;
//!    - nothing: keep the stream open, wait for more output (or the end).
//!
//! The encoder holds no bytes and no lock: it reads from a [`RingRead`]
//! borrowed for each call, so a server takes its ring lock only around
//! `encode` and writes the result after releasing it.

use crate::frame::{self, Frame, MAX_OUTPUT_CHUNK};
use crate::ids::Offset;
use crate::msg::{self, ExitStatus, Reply, SessionInfo, StartAt};

/// Read access to a session's ring buffer: the last bytes of its output,
/// indexed by absolute offset.
pub trait RingRead {
    /// Offset of the oldest byte still held.
    fn start(&self) -> Offset;
    /// Offset one past the newest byte.
    fn end(&self) -> Offset;
    /// Contiguous bytes from `from` on, at most `max`. Called with
    /// `start() <= from <= end()`; may return fewer bytes than available
    /// (at the ring's wrap point, say), and nothing only when
    /// `from == end()`.
    fn read_at(&self, from: Offset, max: usize) -> &[u8];
}

/// The first offset a stream sends, for a requested `start`: the ring's
/// start for [`StartAt::Oldest`], its end for [`StartAt::End`], and the
/// offset asked for brought back to the end if past it. An offset older
/// than the ring's start is kept: the encoder then opens with a `Gap`.
pub fn start_offset(start: StartAt, ring_start: Offset, ring_end: Offset) -> Offset {
    match start {
        StartAt::Oldest => ring_start,
        StartAt::End => ring_end,
        StartAt::Offset(o) => o.min(ring_end),
    }
}

/// How a session ended, for [`OutputEncoder::closing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its process exited, and its output ends at `end`.
    Exited {
        /// Offset one past the last byte of output. It must not be past
        /// the ring's end, or the stream never closes: a ring file whose
        /// writer died may hold less than the exit record says, so give the
        /// smaller of the two.
        end: Offset,
        /// How it exited.
        status: ExitStatus,
    },
    /// Its keeper vanished; what the ring holds ends at `end` (the ring's
    /// end).
    Lost {
        /// Offset one past the last recorded byte.
        end: Offset,
    },
}

impl Ending {
    /// Offset one past the session's last byte of output.
    pub fn end(&self) -> Offset {
        match self {
            Ending::Exited { end, .. } | Ending::Lost { end } => *end,
        }
    }
}

/// Turns a ring into the frames of one output stream. See the
/// [module documentation](self) for the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEncoder {
    /// First offset of the stream, as announced in `Attached`.
    start: Offset,
    /// Next offset to send.
    cursor: Offset,
    /// Where a non-following stream stops.
    stop_at: Option<Offset>,
}

impl OutputEncoder {
    /// An encoder for a stream starting at `start` (see [`start_offset`]).
    /// A stream that does not `follow` stops at the ring's end as it is
    /// now.
    pub fn new(start: StartAt, follow: bool, ring: &impl RingRead) -> Self {
        let end = ring.end();
        let first = start_offset(start, ring.start(), end);
        OutputEncoder {
            start: first,
            cursor: first,
            stop_at: (!follow).then_some(end),
        }
    }

    /// The first offset of the stream: `start` of the `Attached` reply.
    pub fn start(&self) -> Offset {
        self.start
    }

    /// The `Attached` reply that opens the stream.
    pub fn attached(&self, session: SessionInfo) -> Reply {
        Reply::Attached {
            session,
            start: self.start,
        }
    }

    /// The next offset to send: everything before it was sent or reported
    /// as a gap.
    pub fn position(&self) -> Offset {
        self.cursor
    }

    /// Where a non-following stream stops; `None` when it follows.
    pub fn stop_at(&self) -> Option<Offset> {
        self.stop_at
    }

    /// Appends to `out` the wire bytes of what `ring` holds for the stream
    /// from its position on (up to the stop of a non-following stream),
    /// until at least `budget` bytes of output were appended or nothing is
    /// left. Returns how many bytes of output (not counting frame headers
    /// and gap notices) were appended: at most `budget +
    /// MAX_OUTPUT_CHUNK - 1`.
    ///
    /// A `Gap` notice comes first whenever the position is older than the
    /// ring's start; `Output` frames carry at most [`MAX_OUTPUT_CHUNK`]
    /// bytes each, copied once, straight from the ring into `out`.
    pub fn encode(&mut self, ring: &impl RingRead, budget: usize, out: &mut Vec<u8>) -> usize {
        let mut sent = 0;
        loop {
            let (ring_start, ring_end) = (ring.start(), ring.end());
            let open = self.stop_at.is_none_or(|s| self.cursor < s);
            if self.cursor < ring_start && open {
                // The bytes from the cursor to the ring's start are gone;
                // a stream that stops before the start only loses its rest.
                let resume = self.stop_at.map_or(ring_start, |s| s.min(ring_start));
                let gap = Reply::Gap {
                    missed: self.cursor,
                    resume,
                };
                Frame::Control(msg::encode(&gap)).encode_into(out);
                self.cursor = resume;
            }
            let limit = self.stop_at.map_or(ring_end, |s| s.min(ring_end));
            if sent >= budget || self.cursor >= limit {
                return sent;
            }
            let left = usize::try_from(limit.0 - self.cursor.0).unwrap_or(usize::MAX);
            let want = MAX_OUTPUT_CHUNK.min(left);
            let bytes = ring.read_at(self.cursor, want);
            // A ring that hands out more than asked must not make frames
            // larger than the limit, nor run past the stop.
            let bytes = &bytes[..bytes.len().min(want)];
            if bytes.is_empty() {
                return sent;
            }
            frame::encode_output_header(out, self.cursor, bytes.len());
            out.extend_from_slice(bytes);
            self.cursor = Offset(self.cursor.0 + bytes.len() as u64);
            sent += bytes.len();
        }
    }

    /// The reply that closes the stream, if it is time, given how the
    /// session ended (`None` while it runs). Ask once [`encode`] has
    /// nothing left:
    /// - `End { offset }` once a non-following stream reached its stop
    ///   (even if the session ended meanwhile);
    /// - `Exited` / `Lost` once the session ended and the position reached
    ///   the ending's end (the reply's `end` is the position: all that was
    ///   sent);
    /// - `None`: keep the stream open and wait for output or the end.
    ///
    /// [`encode`]: OutputEncoder::encode
    pub fn closing(&self, ending: Option<&Ending>) -> Option<Reply> {
        closing(self.cursor, self.stop_at, ending)
    }
}

/// The closing rule of [`OutputEncoder::closing`] for a stream whose next
/// offset is `cursor` and which stops at `stop_at` (a non-following one):
/// for servers that keep the position themselves (the keeper's
/// zero-copy follower).
pub fn closing(cursor: Offset, stop_at: Option<Offset>, ending: Option<&Ending>) -> Option<Reply> {
    if let Some(stop) = stop_at {
        if cursor >= stop {
            return Some(Reply::End { offset: cursor });
        }
    }
    let ending = ending?;
    if cursor < ending.end() {
        return None;
    }
    Some(match *ending {
        Ending::Exited { status, .. } => Reply::Exited {
            end: cursor,
            status,
        },
        Ending::Lost { .. } => Reply::Lost { end: cursor },
    })
}

/// An in-memory ring for the tests of this crate.
#[cfg(test)]
pub(crate) mod test_ring {
    use super::RingRead;
    use crate::ids::Offset;

    /// A ring of `cap` bytes, as the node's, without the file.
    #[derive(Debug, Clone)]
    pub(crate) struct TestRing {
        buf: Vec<u8>,
        end: u64,
    }

    impl TestRing {
        pub(crate) fn new(cap: usize) -> Self {
            assert!(cap > 0);
            TestRing {
                buf: vec![0; cap],
                end: 0,
            }
        }

        pub(crate) fn append(&mut self, data: &[u8]) {
            let cap = self.buf.len() as u64;
            for &b in data {
                self.buf[(self.end % cap) as usize] = b;
                self.end += 1;
            }
        }
    }

    impl RingRead for TestRing {
        fn start(&self) -> Offset {
            Offset(self.end.saturating_sub(self.buf.len() as u64))
        }

        fn end(&self) -> Offset {
            Offset(self.end)
        }

        fn read_at(&self, from: Offset, max: usize) -> &[u8] {
            assert!(
                self.start() <= from && from <= self.end(),
                "read_at({from})"
            );
            let cap = self.buf.len();
            let pos = (from.0 % cap as u64) as usize;
            let avail = (self.end - from.0) as usize;
            let len = avail.min(cap - pos).min(max);
            &self.buf[pos..pos + len]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ring::TestRing;
    use super::*;
    use proptest::prelude::*;

    /// Decodes a whole buffer of frames.
    fn frames(mut wire: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some((f, used)) = Frame::decode(wire).unwrap() {
            out.push(f);
            wire = &wire[used..];
        }
        assert!(wire.is_empty(), "a partial frame was left");
        out
    }

    fn gap(missed: u64, resume: u64) -> Frame {
        Frame::Control(msg::encode(&Reply::Gap {
            missed: Offset(missed),
            resume: Offset(resume),
        }))
    }

    fn output(offset: u64, data: &[u8]) -> Frame {
        Frame::Output {
            offset: Offset(offset),
            data: data.to_vec(),
        }
    }

    fn ring_with(cap: usize, data: &[u8]) -> TestRing {
        let mut r = TestRing::new(cap);
        r.append(data);
        r
    }

    #[test]
    fn start_offsets() {
        let (s, e) = (Offset(10), Offset(20));
        assert_eq!(start_offset(StartAt::Oldest, s, e), s);
        assert_eq!(start_offset(StartAt::End, s, e), e);
        assert_eq!(start_offset(StartAt::Offset(Offset(15)), s, e), Offset(15));
        assert_eq!(start_offset(StartAt::Offset(Offset(99)), s, e), e);
        // Too old is kept, so the encoder reports the gap.
        assert_eq!(start_offset(StartAt::Offset(Offset(3)), s, e), Offset(3));
    }

    #[test]
    fn too_old_start_opens_with_a_gap() {
        let data: Vec<u8> = (0..25).collect();
        let ring = ring_with(10, &data);
        let mut enc = OutputEncoder::new(StartAt::Offset(Offset(3)), true, &ring);
        assert_eq!(enc.start(), Offset(3));
        let mut out = Vec::new();
        assert_eq!(enc.encode(&ring, usize::MAX, &mut out), 10);
        // The ring wraps at 20: two frames.
        assert_eq!(
            frames(&out),
            vec![
                gap(3, 15),
                output(15, &data[15..20]),
                output(20, &data[20..])
            ]
        );
        assert_eq!(enc.position(), Offset(25));
        assert_eq!(enc.closing(None), None, "a following stream stays open");
    }

    #[test]
    fn wire_bytes_are_the_frames_encoding() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let ring = ring_with(300_000, &data);
        let mut enc = OutputEncoder::new(StartAt::Oldest, true, &ring);
        let mut out = Vec::new();
        assert_eq!(enc.encode(&ring, usize::MAX, &mut out), data.len());
        let mut expected = Vec::new();
        for (i, chunk) in data.chunks(MAX_OUTPUT_CHUNK).enumerate() {
            output((i * MAX_OUTPUT_CHUNK) as u64, chunk).encode_into(&mut expected);
        }
        assert!(out == expected, "output frames of at most MAX_OUTPUT_CHUNK");
    }

    #[test]
    fn budget_bounds_a_batch() {
        let data = vec![7u8; 3 * MAX_OUTPUT_CHUNK + 5];
        let ring = ring_with(data.len(), &data);
        let mut enc = OutputEncoder::new(StartAt::Oldest, true, &ring);
        let mut out = Vec::new();
        assert_eq!(enc.encode(&ring, 1, &mut out), MAX_OUTPUT_CHUNK);
        assert_eq!(
            enc.encode(&ring, MAX_OUTPUT_CHUNK + 1, &mut out),
            2 * MAX_OUTPUT_CHUNK
        );
        assert_eq!(enc.encode(&ring, 1000, &mut out), 5);
        assert_eq!(enc.encode(&ring, 1000, &mut out), 0);
        // A zero budget sends nothing.
        let mut enc = OutputEncoder::new(StartAt::Oldest, true, &ring);
        assert_eq!(enc.encode(&ring, 0, &mut out), 0);
        assert_eq!(enc.position(), Offset(0));
    }

    #[test]
    fn tail_without_follow_stops_where_it_started() {
        let mut ring = ring_with(100, b"hello");
        let mut enc = OutputEncoder::new(StartAt::Oldest, false, &ring);
        assert_eq!(enc.stop_at(), Some(Offset(5)));
        ring.append(b" world");
        let mut out = Vec::new();
        enc.encode(&ring, usize::MAX, &mut out);
        assert_eq!(frames(&out), vec![output(0, b"hello")]);
        let exited = Ending::Exited {
            end: Offset(11),
            status: ExitStatus::default(),
        };
        assert_eq!(
            enc.closing(Some(&exited)),
            Some(Reply::End { offset: Offset(5) }),
            "End wins over Exited"
        );
        // From the end: nothing to send, End at once.
        let enc = OutputEncoder::new(StartAt::End, false, &ring);
        assert_eq!(enc.closing(None), Some(Reply::End { offset: Offset(11) }));
    }

    #[test]
    fn tail_whose_stop_was_overwritten_reports_the_gap_to_its_stop() {
        let mut ring = ring_with(4, b"abcdef");
        let mut enc = OutputEncoder::new(StartAt::Oldest, false, &ring);
        assert_eq!((enc.start(), enc.stop_at()), (Offset(2), Some(Offset(6))));
        ring.append(b"ghijklmn");
        let mut out = Vec::new();
        assert_eq!(enc.encode(&ring, usize::MAX, &mut out), 0);
        assert_eq!(frames(&out), vec![gap(2, 6)]);
        assert_eq!(enc.closing(None), Some(Reply::End { offset: Offset(6) }));
    }

    #[test]
    fn the_ending_closes_once_everything_was_sent() {
        let ring = ring_with(8, b"0123456789");
        let status = ExitStatus {
            code: Some(3),
            signal: None,
        };
        let exited = Ending::Exited {
            end: Offset(10),
            status,
        };
        let mut enc = OutputEncoder::new(StartAt::Offset(Offset(5)), true, &ring);
        assert_eq!(enc.closing(Some(&exited)), None, "5 bytes still to send");
        let mut out = Vec::new();
        enc.encode(&ring, 2, &mut out);
        assert_eq!(enc.closing(Some(&exited)), None);
        enc.encode(&ring, usize::MAX, &mut out);
        assert_eq!(
            enc.closing(Some(&exited)),
            Some(Reply::Exited {
                end: Offset(10),
                status
            })
        );
        assert_eq!(
            enc.closing(Some(&Ending::Lost { end: Offset(10) })),
            Some(Reply::Lost { end: Offset(10) })
        );
        assert_eq!(enc.closing(None), None);
    }

    #[test]
    fn attached_announces_the_start() {
        let ring = ring_with(8, b"0123456789");
        let enc = OutputEncoder::new(StartAt::Oldest, true, &ring);
        let info = SessionInfo::new(
            crate::SessionId([1; 16]),
            crate::NodeId([2; 8]),
            crate::SessionState::Running,
        );
        assert_eq!(
            enc.attached(info.clone()),
            Reply::Attached {
                session: info,
                start: Offset(2)
            }
        );
    }

    proptest! {
        /// A non-following stream sends exactly the bytes from its start to
        /// the end seen when it opened (less what was overwritten, as
        /// gaps), then `End`, however the ring grows meanwhile.
        #[test]
        fn tail_sends_its_range(
            cap in 1usize..64,
            before in proptest::collection::vec(any::<u8>(), 0..100),
            start in 0u64..120,
            steps in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..20), 0usize..30), 0..20),
        ) {
            let mut all = before.clone();
            let mut ring = ring_with(cap, &before);
            let mut enc = OutputEncoder::new(StartAt::Offset(Offset(start)), false, &ring);
            let stop = enc.stop_at().unwrap();
            prop_assert_eq!(stop, Offset(before.len() as u64));
            let mut out = Vec::new();
            for (data, budget) in steps {
                ring.append(&data);
                all.extend_from_slice(&data);
                enc.encode(&ring, budget, &mut out);
            }
            enc.encode(&ring, usize::MAX, &mut out);
            prop_assert_eq!(enc.closing(None), Some(Reply::End { offset: stop }));
            let mut at = enc.start();
            for f in frames(&out) {
                match f {
                    Frame::Output { offset, data } => {
                        prop_assert_eq!(offset, at);
                        prop_assert_eq!(&data[..], &all[at.0 as usize..at.0 as usize + data.len()]);
                        at = Offset(at.0 + data.len() as u64);
                    }
                    Frame::Control(b) => match msg::decode::<Reply>(&b).unwrap() {
                        Reply::Gap { missed, resume } => {
                            prop_assert_eq!(missed, at);
                            prop_assert!(resume > missed);
                            at = resume;
                        }
                        other => prop_assert!(false, "unexpected {:?}", other),
                    },
                    Frame::Input(_) => prop_assert!(false, "input frame"),
                }
            }
            prop_assert_eq!(at, stop);
        }
    }
}
