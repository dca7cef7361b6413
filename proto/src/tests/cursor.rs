//! Tests of [`crate::cursor`].

use super::*;
use crate::ids::{NodeId, SessionId};
use crate::msg::SessionState;
use crate::output::test_ring::TestRing;
use crate::output::{Ending, OutputEncoder, RingRead};
use proptest::prelude::*;

fn info() -> SessionInfo {
    SessionInfo::new(SessionId([5; 16]), NodeId([6; 8]), SessionState::Running)
}

fn control(r: &Reply) -> Frame {
    Frame::Control(msg::encode(r))
}

fn attached(start: u64) -> Frame {
    control(&Reply::Attached {
        session: info(),
        start: Offset(start),
    })
}

fn output(offset: u64, data: &[u8]) -> Frame {
    Frame::Output {
        offset: Offset(offset),
        data: data.to_vec(),
    }
}

fn out_event(offset: u64, data: &[u8]) -> Event {
    Event::Output {
        offset: Offset(offset),
        data: data.to_vec(),
    }
}

#[test]
fn resumes_from_the_next_byte() {
    let mut c = OutputCursor::new(StartAt::End);
    assert_eq!((c.resume_at(), c.position()), (StartAt::End, None));
    assert_eq!(
        c.on_frame(attached(10)).unwrap(),
        Event::Attached {
            session: Box::new(info()),
            start: Offset(10)
        }
    );
    assert_eq!(c.resume_at(), StartAt::Offset(Offset(10)));
    assert_eq!(
        c.on_frame(output(10, b"abc")).unwrap(),
        out_event(10, b"abc")
    );
    assert_eq!(c.position(), Some(Offset(13)));
    assert_eq!(c.resume_at(), StartAt::Offset(Offset(13)));
}

#[test]
fn overlap_is_trimmed_and_old_frames_are_duplicates() {
    let mut c = OutputCursor::new(StartAt::Oldest);
    c.on_frame(attached(0)).unwrap();
    c.on_frame(output(0, b"hello")).unwrap();
    // A reattach that starts earlier than asked.
    assert!(matches!(
        c.on_frame(attached(2)).unwrap(),
        Event::Attached { .. }
    ));
    assert_eq!(c.on_frame(output(2, b"l")).unwrap(), Event::Duplicate);
    assert_eq!(
        c.on_frame(output(3, b"lo world")).unwrap(),
        out_event(5, b" world")
    );
    assert_eq!(c.on_frame(output(0, b"hello")).unwrap(), Event::Duplicate);
    assert_eq!(c.on_frame(output(11, b"")).unwrap(), Event::Duplicate);
    assert_eq!(c.position(), Some(Offset(11)));
}

#[test]
fn gaps_move_the_cursor_once() {
    let mut c = OutputCursor::new(StartAt::Offset(Offset(3)));
    c.on_frame(attached(3)).unwrap();
    let gap = |m, r| {
        control(&Reply::Gap {
            missed: Offset(m),
            resume: Offset(r),
        })
    };
    assert_eq!(
        c.on_frame(gap(3, 15)).unwrap(),
        Event::Gap {
            missed: Offset(3),
            resume: Offset(15)
        }
    );
    assert_eq!(c.on_frame(gap(3, 15)).unwrap(), Event::Duplicate);
    c.on_frame(output(15, b"xy")).unwrap();
    // A gap that starts in what was delivered reports only the rest.
    assert_eq!(
        c.on_frame(gap(16, 20)).unwrap(),
        Event::Gap {
            missed: Offset(17),
            resume: Offset(20)
        }
    );
}

#[test]
fn endings_refusals_and_other_replies() {
    let mut c = OutputCursor::new(StartAt::Oldest);
    let status = ExitStatus {
        code: None,
        signal: Some(9),
    };
    let cases = [
        (
            Reply::End { offset: Offset(4) },
            Event::Ended(EndKind::End { offset: Offset(4) }),
        ),
        (
            Reply::Exited {
                end: Offset(4),
                status,
            },
            Event::Ended(EndKind::Exited {
                end: Offset(4),
                status,
            }),
        ),
        (
            Reply::Lost { end: Offset(4) },
            Event::Ended(EndKind::Lost { end: Offset(4) }),
        ),
        (
            Reply::error(ErrorKind::NotFound, "no session matches 'x'"),
            Event::Refused {
                kind: ErrorKind::NotFound,
                message: "no session matches 'x'".into(),
            },
        ),
        (Reply::Ok, Event::Other(Box::new(Reply::Ok))),
    ];
    for (reply, event) in cases {
        assert_eq!(c.on_frame(control(&reply)).unwrap(), event);
    }
}

#[test]
fn invalid_frames_are_errors() {
    let mut c = OutputCursor::new(StartAt::Oldest);
    assert!(matches!(
        c.on_frame(output(0, b"x")),
        Err(CursorError::NotAttached(Offset(0)))
    ));
    let gap = control(&Reply::Gap {
        missed: Offset(0),
        resume: Offset(1),
    });
    assert!(matches!(c.on_frame(gap), Err(CursorError::NotAttached(_))));
    c.on_frame(attached(5)).unwrap();
    let e = c.on_frame(output(7, b"x")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("output out of order: expected offset 5, got 7"),
        "{e}"
    );
    assert!(matches!(
        c.on_frame(attached(6)),
        Err(CursorError::OutOfOrder { .. })
    ));
    let gap = control(&Reply::Gap {
        missed: Offset(6),
        resume: Offset(9),
    });
    assert!(matches!(
        c.on_frame(gap),
        Err(CursorError::OutOfOrder { .. })
    ));
    assert!(matches!(
        c.on_frame(Frame::Input(vec![1])),
        Err(CursorError::Input)
    ));
    assert!(matches!(
        c.on_frame(Frame::Control(vec![0xc1])),
        Err(CursorError::Decode(_))
    ));
    // None of these moved the cursor.
    assert_eq!(c.position(), Some(Offset(5)));
}

/// One step of the simulation.
#[derive(Debug, Clone)]
enum Op {
    /// The session writes output into the ring.
    Append(Vec<u8>),
    /// The server encodes with this budget and sends.
    Pump(usize),
    /// This many bytes in flight reach the client.
    Deliver(usize),
    /// This many bytes in flight reach the client, the rest is lost
    /// (maybe mid-frame), and the client reattaches.
    Reconnect(usize),
    /// As `Reconnect`, but the new stream starts this many bytes
    /// before the client's position (a client resuming from an older
    /// saved offset, a node whose ring file ends earlier).
    Rewind(usize, u64),
    /// The client gets the last frame again.
    Duplicate,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Append),
        3 => (0usize..300).prop_map(Op::Pump),
        3 => (0usize..400).prop_map(Op::Deliver),
        1 => (0usize..400).prop_map(Op::Reconnect),
        1 => (0usize..400, 0u64..100).prop_map(|(n, back)| Op::Rewind(n, back)),
        1 => Just(Op::Duplicate),
    ]
}

fn arb_start() -> impl Strategy<Value = StartAt> {
    prop_oneof![
        Just(StartAt::Oldest),
        Just(StartAt::End),
        (0u64..300).prop_map(|o| StartAt::Offset(Offset(o))),
    ]
}

/// A session, a server, a lossy connection and a client.
struct Sim {
    ring: TestRing,
    /// Every byte the session ever wrote.
    all: Vec<u8>,
    enc: OutputEncoder,
    /// Bytes sent and not yet received.
    wire: Vec<u8>,
    /// Bytes received, not yet a whole frame.
    partial: Vec<u8>,
    cursor: OutputCursor,
    last: Option<Frame>,
    /// The gaps the server sent: bytes already overwritten then.
    sent_gaps: Vec<(Offset, Offset)>,
    /// The client's view: next byte, gaps, whether it ended.
    at: Option<Offset>,
    gaps: Vec<(Offset, Offset)>,
    ended: bool,
}

impl Sim {
    fn new(cap: usize, start: StartAt) -> Sim {
        let ring = TestRing::new(cap);
        let cursor = OutputCursor::new(start);
        let mut sim = Sim {
            enc: OutputEncoder::new(start, true, &ring),
            ring,
            all: Vec::new(),
            wire: Vec::new(),
            partial: Vec::new(),
            cursor,
            last: None,
            sent_gaps: Vec::new(),
            at: None,
            gaps: Vec::new(),
            ended: false,
        };
        sim.connect(0);
        sim
    }

    /// A new stream from where the client stands, or `back` bytes
    /// before.
    fn connect(&mut self, back: u64) {
        let from = match self.cursor.resume_at() {
            StartAt::Offset(o) => StartAt::Offset(Offset(o.0.saturating_sub(back))),
            other => other,
        };
        self.enc = OutputEncoder::new(from, true, &self.ring);
        control(&self.enc.attached(info())).encode_into(&mut self.wire);
    }

    fn append(&mut self, data: &[u8]) {
        self.ring.append(data);
        self.all.extend_from_slice(data);
    }

    fn pump(&mut self, budget: usize) -> usize {
        let mut fresh = Vec::new();
        let sent = self.enc.encode(&self.ring, budget, &mut fresh);
        assert!(sent < budget.max(1) + crate::frame::MAX_OUTPUT_CHUNK);
        let mut rest = &fresh[..];
        while let Some((f, used)) = Frame::decode(rest).unwrap() {
            rest = &rest[used..];
            match f {
                Frame::Output { data, .. } => {
                    assert!(!data.is_empty());
                    assert!(data.len() <= crate::frame::MAX_OUTPUT_CHUNK);
                }
                Frame::Control(b) => match msg::decode::<Reply>(&b).unwrap() {
                    Reply::Gap { missed, resume } => {
                        // Sent only for bytes the ring no longer holds,
                        // and for all of them up to what it holds.
                        assert!(missed < resume);
                        assert_eq!(resume, self.ring.start());
                        self.sent_gaps.push((missed, resume));
                    }
                    other => panic!("encode sent {other:?}"),
                },
                Frame::Input(_) => panic!("encode sent input"),
            }
        }
        assert!(rest.is_empty(), "encode appends whole frames");
        self.wire.extend_from_slice(&fresh);
        sent
    }

    fn deliver(&mut self, n: usize) {
        let n = n.min(self.wire.len());
        self.partial.extend(self.wire.drain(..n));
        while let Some((f, used)) = Frame::decode(&self.partial).unwrap() {
            self.partial.drain(..used);
            self.last = Some(f.clone());
            self.feed(f);
        }
    }

    fn reconnect(&mut self, n: usize, back: u64) {
        self.deliver(n);
        self.wire.clear();
        self.partial.clear();
        self.connect(back);
    }

    fn duplicate(&mut self) {
        let Some(f) = self.last.clone() else { return };
        // Only the Attached reply means something again (a reattach
        // says it too); old output and gaps bring nothing.
        let is_attached = match &f {
            Frame::Control(b) => {
                matches!(msg::decode::<Reply>(b), Ok(Reply::Attached { .. }))
            }
            _ => false,
        };
        let ev = self.cursor.on_frame(f).expect("a duplicate is valid");
        if is_attached {
            assert!(matches!(ev, Event::Attached { .. }), "{ev:?}");
        } else {
            assert_eq!(ev, Event::Duplicate);
        }
        assert_eq!(self.cursor.position(), self.at);
    }

    /// The client's side: checks every event against the truth.
    fn feed(&mut self, f: Frame) {
        let ev = self.cursor.on_frame(f).expect("a valid stream");
        match ev {
            Event::Attached { start, .. } => match self.at {
                None => self.at = Some(start),
                Some(at) => assert!(start <= at),
            },
            Event::Output { offset, data } => {
                let at = self.at.expect("attached");
                assert_eq!(offset, at);
                let o = offset.0 as usize;
                assert_eq!(&data[..], &self.all[o..o + data.len()]);
                self.at = Some(Offset(at.0 + data.len() as u64));
            }
            Event::Gap { missed, resume } => {
                assert_eq!(Some(missed), self.at);
                assert!(missed < resume);
                assert!(
                    self.sent_gaps
                        .iter()
                        .any(|&(m, r)| m <= missed && resume <= r),
                    "gap {missed}..{resume} the server did not declare"
                );
                self.gaps.push((missed, resume));
                self.at = Some(resume);
            }
            Event::Ended(EndKind::Exited { end, .. }) => {
                assert_eq!(Some(end), self.at);
                self.ended = true;
            }
            Event::Duplicate => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(self.cursor.position(), self.at);
    }

    /// The session exits; the last stream runs to its end unharmed.
    fn finish(&mut self) {
        let ending = Ending::Exited {
            end: self.ring.end(),
            status: ExitStatus {
                code: Some(0),
                signal: None,
            },
        };
        for _ in 0..10_000 {
            self.deliver(usize::MAX);
            if self.ended {
                return;
            }
            let before = self.wire.len();
            if self.pump(97) == 0 && self.wire.len() == before {
                let reply = self.enc.closing(Some(&ending)).expect("drained: closes");
                control(&reply).encode_into(&mut self.wire);
            }
        }
        panic!("the stream never ended");
    }
}

fn run(cap: usize, start: StartAt, ops: Vec<Op>) -> Sim {
    let mut sim = Sim::new(cap, start);
    for op in ops {
        match op {
            Op::Append(d) => sim.append(&d),
            Op::Pump(b) => {
                sim.pump(b);
            }
            Op::Deliver(n) => sim.deliver(n),
            Op::Reconnect(n) => sim.reconnect(n, 0),
            Op::Rewind(n, back) => sim.reconnect(n, back),
            Op::Duplicate => sim.duplicate(),
        }
    }
    sim.finish();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever the ring size, the output, the pacing, the losses and
    /// the reconnects: the client gets every byte from where it
    /// started once and in order, except the declared gaps, which
    /// cover only bytes already overwritten when they were read.
    #[test]
    fn every_byte_once_in_order(
        cap in prop_oneof![1usize..64, 64usize..2048],
        start in arb_start(),
        ops in proptest::collection::vec(arb_op(), 0..80),
    ) {
        let sim = run(cap, start, ops);
        prop_assert!(sim.ended);
        prop_assert_eq!(sim.at, Some(Offset(sim.all.len() as u64)));
        // Gaps are disjoint and in order (checked as they came); none
        // is reported for bytes that were still in the ring.
        for w in sim.gaps.windows(2) {
            prop_assert!(w[0].1 <= w[1].0);
        }
        if cap >= sim.all.len() {
            let from_start = matches!(start, StartAt::Oldest)
                || matches!(start, StartAt::Offset(o) if o.0 == 0);
            if from_start {
                prop_assert!(sim.gaps.is_empty(), "a ring that never wrapped has no gaps");
            }
        }
    }
}

#[test]
fn a_slow_client_of_a_small_ring_sees_gaps_and_the_end() {
    let mut ops = Vec::new();
    for i in 0..20u8 {
        ops.push(Op::Append(vec![i; 7]));
        if i % 3 == 0 {
            ops.push(Op::Pump(5));
            ops.push(Op::Reconnect(11));
        }
    }
    let sim = run(8, StartAt::Oldest, ops);
    assert!(sim.ended);
    assert!(!sim.gaps.is_empty());
    assert_eq!(sim.at, Some(Offset(140)));
}
