//! The client side of an output stream: which bytes of the frames a node
//! sends are new, and where to resume after a reconnect. Every client (the
//! CLI's attach and tail, the client library, a browser bridge) feeds its
//! frames to one [`OutputCursor`]; the server side is
//! [`crate::output::OutputEncoder`].
//!
//! # Protocol flow
//! 1. The client makes a cursor with [`OutputCursor::new`]`(start)` and
//!    sends `Request::Attach` with `start:` [`OutputCursor::resume_at`].
//! 2. It passes every frame the node sends to [`OutputCursor::on_frame`],
//!    which answers an [`Event`]:
//!    - `Attached`: the stream is open; output follows from `start`;
//!    - `Output`: bytes to show, each byte once and in order;
//!    - `Gap`: bytes `missed..resume` are gone from the ring and will never
//!      come;
//!    - `Ended`: the stream is over (`End`, `Exited`, `Lost`);
//!    - `Refused`: the node answered `Error`; `Other`: any other reply;
//!    - `Duplicate`: a frame that brings nothing new.
//! 3. When the connection breaks, the client opens a new stream with
//!    `start:` [`OutputCursor::resume_at`] (the next byte it expects) and
//!    feeds its frames to the same cursor. The node may start before that
//!    byte (its ring ends earlier than the client thought, say): what the
//!    client already has is trimmed off, so nothing is shown twice.
//!
//! A frame that can only come from a broken or hostile peer (output past
//! the next expected byte without a `Gap`, output before `Attached`, an
//! `Input` frame, an undecodable control message, output that would end
//! past 2^64) is a [`CursorError`],
//! kept apart from the events of a normal stream.

use crate::frame::Frame;
use crate::ids::Offset;
use crate::msg::{self, ErrorKind, ExitStatus, Reply, SessionInfo, StartAt};

/// How an output stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// A non-following tail reached the end it started with.
    End {
        /// End of what was sent.
        offset: Offset,
    },
    /// The session's process exited; all its output was sent.
    Exited {
        /// End of its output.
        end: Offset,
        /// How it exited.
        status: ExitStatus,
    },
    /// The session's keeper vanished; all its recorded output was sent.
    Lost {
        /// End of the recorded output.
        end: Offset,
    },
}

/// What a frame from the node means to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node accepted the attach: output follows.
    Attached {
        /// The session.
        session: Box<SessionInfo>,
        /// The first offset the node will send, as it said. On a
        /// reattach it may be before [`OutputCursor::position`]; the
        /// overlap is trimmed.
        start: Offset,
    },
    /// Output never delivered before, starting at the cursor's position.
    Output {
        /// Offset of `data[0]`.
        offset: Offset,
        /// The new bytes.
        data: Vec<u8>,
    },
    /// Bytes from `missed` (the cursor's position) to `resume` are no
    /// longer in the ring and will not come.
    Gap {
        /// First byte lost.
        missed: Offset,
        /// First byte that will come.
        resume: Offset,
    },
    /// The stream is over.
    Ended(EndKind),
    /// The node refused the request (`Reply::Error`).
    Refused {
        /// Kind of failure.
        kind: ErrorKind,
        /// What happened and what to do, for the user.
        message: String,
    },
    /// A frame that brings nothing new: output or a gap the client
    /// already had (a duplicate, or the overlap of a reattach).
    Duplicate,
    /// Any other reply, for the caller to judge (boxed: replies are large,
    /// output events are many).
    Other(Box<Reply>),
}

/// A frame no well-behaved node sends: the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Output, a gap or a reattach began past the next byte expected:
    /// the bytes in between were lost without a `Gap` notice.
    #[error(
        "output out of order: expected offset {expected}, got {got}; \
         reattach to get the missing bytes"
    )]
    OutOfOrder {
        /// The next byte the client expected.
        expected: Offset,
        /// Where the frame began.
        got: Offset,
    },
    /// Output or a gap came before the `Attached` reply.
    #[error(
        "the node sent output (offset {0}) before answering the attach; \
         it does not follow the tether protocol"
    )]
    NotAttached(Offset),
    /// The node sent an `Input` frame; only clients send input.
    #[error("the node sent an input frame; only clients send input")]
    Input,
    /// Output that would end past the largest offset there is.
    #[error(
        "the node sent output from offset {0} that would end past 2^64 bytes; \
         it does not follow the tether protocol"
    )]
    Overflow(Offset),
    /// A control frame could not be decoded as a reply.
    #[error(
        "cannot decode the node's reply: {0}; are the node and this client of compatible versions?"
    )]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Where a client stands in a session's output, across reconnects. See
/// the [module documentation](self) for the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCursor {
    /// Where the client asked to start.
    start: StartAt,
    /// The next byte expected, once attached: every byte before it was
    /// delivered or reported as a gap.
    next: Option<Offset>,
}

impl OutputCursor {
    /// A cursor for a stream that starts at `start`.
    pub fn new(start: StartAt) -> Self {
        OutputCursor { start, next: None }
    }

    /// Where a (re)attach should start: the original start until a node
    /// answered `Attached`, then the next byte expected.
    pub fn resume_at(&self) -> StartAt {
        self.next.map_or(self.start, StartAt::Offset)
    }

    /// The next byte expected, once attached.
    pub fn position(&self) -> Option<Offset> {
        self.next
    }

    /// What `frame`, the next one from the node, means; see [`Event`].
    pub fn on_frame(&mut self, frame: Frame) -> Result<Event, CursorError> {
        match frame {
            Frame::Output { offset, data } => self.on_output(offset, data),
            Frame::Input(_) => Err(CursorError::Input),
            Frame::Control(bytes) => self.on_reply(msg::decode(&bytes)?),
        }
    }

    fn on_output(&mut self, offset: Offset, mut data: Vec<u8>) -> Result<Event, CursorError> {
        let next = self.next.ok_or(CursorError::NotAttached(offset))?;
        if offset > next {
            return Err(CursorError::OutOfOrder {
                expected: next,
                got: offset,
            });
        }
        let old = usize::try_from(next.0 - offset.0).unwrap_or(usize::MAX);
        if old >= data.len() {
            return Ok(Event::Duplicate);
        }
        data.drain(..old);
        let end = next
            .0
            .checked_add(data.len() as u64)
            .ok_or(CursorError::Overflow(next))?;
        self.next = Some(Offset(end));
        Ok(Event::Output { offset: next, data })
    }

    fn on_reply(&mut self, reply: Reply) -> Result<Event, CursorError> {
        Ok(match reply {
            Reply::Attached { session, start } => {
                match self.next {
                    None => self.next = Some(start),
                    Some(next) if start > next => {
                        return Err(CursorError::OutOfOrder {
                            expected: next,
                            got: start,
                        })
                    }
                    Some(_) => {}
                }
                Event::Attached {
                    session: Box::new(session),
                    start,
                }
            }
            Reply::Gap { missed, resume } => {
                let next = self.next.ok_or(CursorError::NotAttached(missed))?;
                if missed > next {
                    return Err(CursorError::OutOfOrder {
                        expected: next,
                        got: missed,
                    });
                }
                if resume <= next {
                    return Ok(Event::Duplicate);
                }
                self.next = Some(resume);
                Event::Gap {
                    missed: next,
                    resume,
                }
            }
            Reply::End { offset } => Event::Ended(EndKind::End { offset }),
            Reply::Exited { end, status } => Event::Ended(EndKind::Exited { end, status }),
            Reply::Lost { end } => Event::Ended(EndKind::Lost { end }),
            Reply::Error { kind, message } => Event::Refused { kind, message },
            other => Event::Other(Box::new(other)),
        })
    }
}

#[cfg(test)]
#[path = "tests/cursor.rs"]
mod tests;
