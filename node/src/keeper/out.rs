//! An attached client's output: from the ring straight to its socket.
//!
//! The stream is the one [`tether_proto::output`] describes (`Output`
//! frames without holes, a `Gap` notice whenever the client's position is
//! older than the ring's oldest byte, `End` or `Exited` to close), but the
//! bytes are not copied into a buffer first: the frame headers and the
//! ring's slices go to the socket in one gathered `sendmsg`, so output is
//! copied once in the keeper, by the kernel, from the ring's pages into
//! the socket.
//!
//! A socket that takes only part of a frame has been promised the rest:
//! the rest is copied into the connection's pending buffer at once (the
//! ring may overwrite those bytes before the socket takes more), and the
//! position moves past the frame. A client that falls a whole ring behind
//! is told of the gap; the PTY is read whatever the clients do.

use crate::ring::Ring;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use tether_proto::frame::{self, Frame, MAX_OUTPUT_CHUNK};
use tether_proto::output::{start_offset, Ending};
use tether_proto::{msg, Offset, Reply, StartAt};

use super::sys;

/// Bytes of an output frame's header: the frame header and the offset.
const HEAD: usize = frame::HEADER_LEN + 8;
/// Frames gathered into one `sendmsg`, at most.
const FRAMES_PER_SEND: usize = 8;
/// Bytes of output sent to one client before the loop serves the others
/// (and the PTY) again.
pub const ROUND_BYTES: usize = 1024 * 1024;

/// Where one attached client's stream stands.
#[derive(Debug)]
pub struct Follower {
    /// Next offset to send.
    cursor: Offset,
    /// Where a non-following stream stops.
    stop_at: Option<Offset>,
}

/// What [`Follower::pump`] left to do.
#[derive(Debug)]
pub enum Flow {
    /// A notice went into the pending buffer: flush it, then pump again.
    Flush,
    /// The socket is full: wait until it can take more.
    Wait,
    /// This client had its share of the round: go on in the next one.
    More,
    /// Everything there is was sent; wait for more output.
    Idle,
    /// The stream is done: send this last reply and close.
    Close(Box<Reply>),
}

impl Follower {
    /// The next offset this stream sends.
    pub fn position(&self) -> Offset {
        self.cursor
    }

    /// A stream from `start` (see [`start_offset`]); one that does not
    /// `follow` stops at the ring's end as it is now. Returns the stream
    /// and its first offset, for the `Attached` reply.
    pub fn new(start: StartAt, follow: bool, ring: &Ring) -> (Follower, Offset) {
        let end = ring.end();
        let first = start_offset(start, ring.start(), end);
        let f = Follower {
            cursor: first,
            stop_at: (!follow).then_some(end),
        };
        (f, first)
    }

    /// Sends what the ring holds for this stream, up to [`ROUND_BYTES`],
    /// on socket `fd`; `pending` (empty on entry) takes notices and the
    /// unsent rest of a frame. `heads` is scratch space for frame headers.
    pub fn pump(
        &mut self,
        fd: RawFd,
        ring: &Ring,
        ending: Option<&Ending>,
        pending: &mut Vec<u8>,
        heads: &mut Vec<u8>,
    ) -> io::Result<Flow> {
        debug_assert!(pending.is_empty());
        let mut sent = 0;
        loop {
            let (start, end) = (ring.start(), ring.end());
            let open = self.stop_at.is_none_or(|s| self.cursor < s);
            if self.cursor < start && open {
                // The bytes from the cursor to the ring's start are gone;
                // a stream that stops before the start only loses its rest.
                let resume = self.stop_at.map_or(start, |s| s.min(start));
                let gap = Reply::Gap {
                    missed: self.cursor,
                    resume,
                };
                Frame::Control(msg::encode(&gap)).encode_into(pending);
                self.cursor = resume;
                return Ok(Flow::Flush);
            }
            let limit = self.stop_at.map_or(end, |s| s.min(end));
            if self.cursor >= limit {
                return Ok(match self.closing(ending) {
                    Some(r) => Flow::Close(Box::new(r)),
                    None => Flow::Idle,
                });
            }
            if sent >= ROUND_BYTES {
                return Ok(Flow::More);
            }
            // Frames of at most MAX_OUTPUT_CHUNK bytes, each a slice of
            // the ring (two at its wrap point).
            heads.clear();
            let mut slices: [&[u8]; FRAMES_PER_SEND] = [&[]; FRAMES_PER_SEND];
            let mut n = 0;
            let mut at = self.cursor;
            while n < FRAMES_PER_SEND && at < limit {
                let want = MAX_OUTPUT_CHUNK.min((limit.0 - at.0) as usize);
                let (_, bytes) = ring.read(at, want);
                if bytes.is_empty() {
                    break;
                }
                frame::encode_output_header(heads, at, bytes.len());
                slices[n] = bytes;
                at = Offset(at.0 + bytes.len() as u64);
                n += 1;
            }
            if n == 0 {
                return Ok(Flow::Idle);
            }
            debug_assert_eq!(heads.len(), n * HEAD);
            let mut iov: [IoSlice<'_>; 2 * FRAMES_PER_SEND] =
                [IoSlice::new(&[]); 2 * FRAMES_PER_SEND];
            for (i, s) in slices[..n].iter().enumerate() {
                iov[2 * i] = IoSlice::new(&heads[i * HEAD..(i + 1) * HEAD]);
                iov[2 * i + 1] = IoSlice::new(s);
            }
            let mut wrote = match sys::send(fd, &iov[..2 * n]) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Wait),
                Err(e) => return Err(e),
            };
            for (i, s) in slices[..n].iter().enumerate() {
                let head = &heads[i * HEAD..(i + 1) * HEAD];
                let whole = head.len() + s.len();
                if wrote == 0 {
                    return Ok(Flow::Wait);
                }
                self.cursor = Offset(self.cursor.0 + s.len() as u64);
                sent += s.len();
                if wrote < whole {
                    // Promised but not taken: keep the rest.
                    if wrote < head.len() {
                        pending.extend_from_slice(&head[wrote..]);
                        pending.extend_from_slice(s);
                    } else {
                        pending.extend_from_slice(&s[wrote - head.len()..]);
                    }
                    return Ok(Flow::Wait);
                }
                wrote -= whole;
            }
        }
    }

    /// The reply that closes the stream, once everything up to its stop or
    /// the session's end was sent: the protocol's own rule.
    fn closing(&self, ending: Option<&Ending>) -> Option<Reply> {
        tether_proto::output::closing(self.cursor, self.stop_at, ending)
    }
}
