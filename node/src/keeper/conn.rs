//! One connection to the keeper's socket: reading frames, answering the
//! request, streaming output to an attached client, closing.
//!
//! # Stages
//! `Hello` → `Request` → one of
//! - `Status`: `Session` sent; `Exited` when the process ends, or the
//!   stream closes as soon as the peer sends anything or leaves;
//! - `Wait`: `Exited` when the process ends;
//! - `Sending`: the input is queued for the PTY; `Ok` once it is written;
//! - `Attached`: output streams (see [`super::out`]), input, `Resize` and
//!   `Detach` arrive;
//!
//! and last `Closing`: what is pending is flushed, then the stream is shut
//! down and closed.
//!
//! Frames of an attached client wait while earlier input is still queued
//! for the PTY (a program that does not read its input): that client is
//! not read, and its own socket holds what it types, as the kernel's PTY
//! buffer holds it for a local terminal. Other connections go on.

use super::log::{debug, warning};
use super::out::{Flow, Follower};
use super::{sys, Core};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use tether_net::conn::{error_reply, StreamError};
use tether_proto::{
    msg, ErrorKind, Frame, Hello, KeeperRequest, Reply, Sizing, StartAt, StreamControl, WinSize,
    PROTOCOL_VERSION,
};

/// The agent name in the keeper's hello.
const AGENT: &str = concat!("tether-keeper/", env!("CARGO_PKG_VERSION"));
/// Bytes asked of the socket per read, at least.
const READ_CHUNK: usize = 4 * 1024;

enum Stage {
    Hello,
    Request,
    /// The daemon's stream; with `Some`, a `Watch`, holding the count of
    /// changes last sent.
    Status(Option<u64>),
    Wait,
    /// Waiting for the PTY to take the input up to this count.
    Sending(u64),
    Attached {
        out: Follower,
        read_only: bool,
        /// The client's window, as it last said.
        size: Option<WinSize>,
        sizing: Sizing,
        /// Counted among the clients attached: it follows the output (a
        /// one-shot read, `tether read` or `tail`, is not an attach).
        counted: bool,
    },
    Closing,
}

/// A connection.
pub struct Conn {
    sock: UnixStream,
    /// Unique among the keeper's connections.
    id: u64,
    /// Bytes read, not yet decoded from `rpos` on.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Bytes to send before anything else.
    wbuf: Vec<u8>,
    stage: Stage,
    /// The peer closed its side (or the socket failed).
    eof: bool,
    /// Wait until the socket can take more.
    blocked: bool,
    /// The socket failed: drop it without a word.
    dead: bool,
    /// Output is left for the next round (the socket can take it).
    pub more: bool,
}

impl Conn {
    /// A connection just accepted (non-blocking).
    pub fn new(sock: UnixStream, id: u64) -> Conn {
        Conn {
            sock,
            id,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            stage: Stage::Hello,
            eof: false,
            blocked: false,
            dead: false,
            more: false,
        }
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    fn reads(&self, core: &Core) -> bool {
        !self.eof
            && match self.stage {
                Stage::Hello | Stage::Request | Stage::Status(_) | Stage::Wait => true,
                Stage::Attached { .. } => core.input_idle(),
                Stage::Sending(_) | Stage::Closing => false,
            }
    }

    /// The `poll` events this connection waits for (0: none; then it is
    /// left out of the poll, so a peer that hung up cannot spin the loop).
    pub fn events(&self, core: &Core) -> i16 {
        let mut ev = 0;
        if self.reads(core) {
            ev |= libc::POLLIN;
        }
        if self.blocked {
            ev |= libc::POLLOUT;
        }
        ev
    }

    /// Takes what `poll` reported.
    pub fn ready(&mut self, revents: i16, core: &Core) {
        let hup = revents & (libc::POLLHUP | libc::POLLERR) != 0;
        if revents & libc::POLLOUT != 0 || hup {
            self.blocked = false;
        }
        if (revents & libc::POLLIN != 0 || hup) && self.reads(core) {
            self.read();
        }
    }

    fn read(&mut self) {
        // What was decoded goes; a frame's first part stays.
        self.rbuf.drain(..self.rpos);
        self.rpos = 0;
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            // Up to 256 KiB per read for a client pasting a lot.
            let grow = self.rbuf.capacity().clamp(READ_CHUNK, 256 * 1024);
            self.rbuf.reserve(grow);
        }
        let len = self.rbuf.len();
        let spare = self.rbuf.spare_capacity_mut();
        // SAFETY: read(2) only writes into the spare capacity, whose
        // bytes count as initialized only up to what it reports.
        let buf = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) };
        match sys::read(self.fd(), buf) {
            Ok(0) => self.eof = true,
            // SAFETY: `n` bytes were written by the kernel.
            Ok(n) => unsafe { self.rbuf.set_len(len + n) },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                debug!("connection ended: {e}");
                self.eof = true;
                self.dead = true;
            }
        }
    }

    /// Decodes the next frame: `Ok(None)` at the peer's end of stream,
    /// `Err` for a broken stream, `None` when more bytes are needed.
    fn next_frame(&mut self) -> Option<Result<Option<Frame>, StreamError>> {
        match Frame::decode(&self.rbuf[self.rpos..]) {
            Ok(Some((f, used))) => {
                self.rpos += used;
                Some(Ok(Some(f)))
            }
            Ok(None) if self.eof => Some(if self.rpos == self.rbuf.len() {
                Ok(None)
            } else {
                Err(StreamError::Truncated)
            }),
            Ok(None) => {
                let attached = matches!(self.stage, Stage::Attached { .. });
                if self.rpos == self.rbuf.len() && (!attached || self.rbuf.capacity() > READ_CHUNK)
                {
                    // Nothing half-read: an idle connection keeps no
                    // buffer, an attached one a small one.
                    self.rbuf = Vec::new();
                    self.rpos = 0;
                }
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Moves the connection on as far as it can go now: frames received,
    /// pending bytes, output. Returns false once it is done with.
    pub fn drive(&mut self, core: &mut Core) -> bool {
        self.more = false;
        while !self.dead && self.reads_frames(core) {
            let Some(frame) = self.next_frame() else {
                break;
            };
            self.on_frame(frame, core);
        }
        if let Stage::Sending(until) = self.stage {
            if core.input_written() >= until {
                self.finish(core, Some(Reply::Ok));
            } else if core.input_idle() {
                // The PTY refused the input: no `Ok`.
                self.finish(core, None);
            }
        }
        if let Stage::Status(Some(sent)) = &mut self.stage {
            if *sent != core.changes {
                *sent = core.changes;
                push(
                    &mut self.wbuf,
                    &Reply::Session {
                        session: core.info(),
                    },
                );
            }
        }
        while !self.dead && !self.blocked {
            if !self.wbuf.is_empty() {
                match sys::send(self.fd(), &[io::IoSlice::new(&self.wbuf)]) {
                    Ok(n) if n == self.wbuf.len() => self.wbuf.clear(),
                    Ok(n) => {
                        self.wbuf.drain(..n);
                        self.blocked = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                    Err(_) => self.dead = true,
                }
                continue;
            }
            let ending = core.ending();
            match &mut self.stage {
                Stage::Attached { out, .. } => {
                    let fd = self.sock.as_raw_fd();
                    match out.pump(
                        fd,
                        &core.ring,
                        ending.as_ref(),
                        &mut self.wbuf,
                        &mut core.heads,
                    ) {
                        Ok(Flow::Flush) => {}
                        Ok(Flow::Wait) => self.blocked = true,
                        Ok(Flow::More) => {
                            self.more = true;
                            break;
                        }
                        Ok(Flow::Idle) => break,
                        Ok(Flow::Close(last)) => self.finish(core, Some(*last)),
                        Err(_) => self.dead = true,
                    }
                }
                Stage::Closing => {
                    let _ = self.sock.shutdown(std::net::Shutdown::Both);
                    self.dead = true;
                }
                _ => break,
            }
        }
        let attached = matches!(self.stage, Stage::Attached { .. });
        if self.wbuf.is_empty() && (!attached || self.wbuf.capacity() > 64 * 1024) {
            // An idle stream (the daemon's status stream) keeps no buffer.
            self.wbuf = Vec::new();
        }
        if self.dead {
            self.leave(core);
        }
        !self.dead
    }

    fn reads_frames(&self, core: &Core) -> bool {
        match self.stage {
            Stage::Hello | Stage::Request | Stage::Status(_) | Stage::Wait => true,
            Stage::Attached { .. } => core.input_idle(),
            Stage::Sending(_) | Stage::Closing => false,
        }
    }

    /// The session's process ended: answer those who wait for it.
    pub fn exited(&mut self, core: &mut Core) {
        if let (Stage::Status(_) | Stage::Wait, Some(e)) = (&self.stage, core.exit.as_ref()) {
            let last = Reply::Exited {
                end: e.end,
                status: e.status,
            };
            self.finish(core, Some(last));
        }
    }

    /// Queues `last` (if any) and closes after it.
    fn finish(&mut self, core: &mut Core, last: Option<Reply>) {
        if let Some(r) = last {
            push(&mut self.wbuf, &r);
        }
        self.leave(core);
        self.stage = Stage::Closing;
    }

    /// Leaves the attached clients' count, once.
    /// For an attached client, the next offset it will be sent.
    pub fn position(&self) -> Option<tether_proto::Offset> {
        match &self.stage {
            Stage::Attached { out, .. } => Some(out.position()),
            _ => None,
        }
    }

    fn leave(&mut self, core: &mut Core) {
        match self.stage {
            Stage::Attached { counted, .. } => {
                if counted {
                    core.clients -= 1;
                    core.client_left(self.id);
                    core.publish();
                }
                self.stage = Stage::Closing;
            }
            Stage::Status(Some(_)) => {
                core.watchers -= 1;
                self.stage = Stage::Closing;
            }
            _ => {}
        }
    }

    fn on_frame(&mut self, frame: Result<Option<Frame>, StreamError>, core: &mut Core) {
        match self.stage {
            Stage::Hello => {
                let hello = control::<Hello>(frame).and_then(|h| {
                    if h.version == PROTOCOL_VERSION {
                        Ok(h)
                    } else {
                        Err(StreamError::Version(h.version))
                    }
                });
                push(&mut self.wbuf, &Hello::current(AGENT));
                match hello {
                    Ok(_) => self.stage = Stage::Request,
                    Err(e) => self.refuse(core, &e),
                }
            }
            Stage::Request => match control::<KeeperRequest>(frame) {
                Ok(req) => self.request(req, core),
                Err(e) => self.refuse(core, &e),
            },
            // Anything from the peer, or its leaving, ends a status stream.
            Stage::Status(_) => self.finish(core, None),
            // A waiting peer has nothing to say; its leaving ends the wait.
            Stage::Wait => {
                if !matches!(frame, Ok(Some(_))) {
                    self.finish(core, None);
                }
            }
            Stage::Attached { .. } => self.attached(frame, core),
            Stage::Sending(_) | Stage::Closing => {}
        }
    }

    fn refuse(&mut self, core: &mut Core, e: &StreamError) {
        debug!("connection ended: {e}");
        self.finish(core, Some(error_reply(e)));
    }

    fn request(&mut self, req: KeeperRequest, core: &mut Core) {
        match req {
            KeeperRequest::Status | KeeperRequest::Watch => {
                push(
                    &mut self.wbuf,
                    &Reply::Session {
                        session: core.info(),
                    },
                );
                let watch = matches!(req, KeeperRequest::Watch);
                if watch {
                    core.watchers += 1;
                }
                self.stage = Stage::Status(watch.then_some(core.changes));
                self.exited(core);
            }
            KeeperRequest::Attach(spec) => {
                let counted = spec.follow;
                if counted {
                    core.clients += 1;
                    core.publish();
                }
                if let (true, false, Some(size)) = (counted, spec.read_only, spec.size) {
                    core.client_size(self.id, spec.sizing, size);
                }
                let snapshot = spec.snapshot.and_then(|want| core.snapshot(want.history));
                let from = snapshot
                    .as_ref()
                    .map_or(spec.start, |s| StartAt::Offset(s.0));
                let (out, start) = Follower::new(from, spec.follow, &core.ring);
                push(
                    &mut self.wbuf,
                    &Reply::Attached {
                        session: core.info(),
                        start,
                    },
                );
                if let Some((offset, data, skipped)) = snapshot {
                    push(
                        &mut self.wbuf,
                        &Reply::Snapshot {
                            offset,
                            data,
                            skipped,
                        },
                    );
                }
                self.stage = Stage::Attached {
                    out,
                    read_only: spec.read_only,
                    size: spec.size,
                    sizing: spec.sizing,
                    counted,
                };
            }
            KeeperRequest::Send { data, .. } => match core.input(&data) {
                Ok(until) => self.stage = Stage::Sending(until),
                Err(e) => {
                    debug!("connection ended: {e}");
                    self.finish(core, None);
                }
            },
            KeeperRequest::Kill { signal, .. } => {
                let reply = match super::kill(core.pid, signal) {
                    Ok(()) => Reply::Ok,
                    Err(e) => Reply::error(ErrorKind::BadRequest, e),
                };
                self.finish(core, Some(reply));
            }
            KeeperRequest::Wait { .. } => {
                self.stage = Stage::Wait;
                self.exited(core);
            }
            KeeperRequest::Screen { .. } => {
                let reply = match &core.screen {
                    Some(s) => fits(Reply::Screen {
                        screen: s.with(&core.ring, |e| e.state()),
                    }),
                    None => Reply::error(
                        ErrorKind::BadRequest,
                        "this session keeps no screen (created with --no-screen, or with \
                         `screen = false` in the node's config); read its output with \
                         `tether tail` or `tether read`",
                    ),
                };
                self.finish(core, Some(reply));
            }
            KeeperRequest::Probe => {
                let foreground = core.foreground();
                self.finish(core, Some(Reply::Probe { foreground }));
            }
        }
    }

    fn attached(&mut self, frame: Result<Option<Frame>, StreamError>, core: &mut Core) {
        let Stage::Attached {
            read_only,
            ref mut size,
            sizing,
            ..
        } = self.stage
        else {
            return;
        };
        let bad = |m: &str| Some(Reply::error(ErrorKind::BadRequest, m));
        let close = match frame {
            Ok(Some(Frame::Input(data))) => {
                if read_only {
                    Some(Reply::error(
                        ErrorKind::ReadOnly,
                        "this client attached read-only and cannot send input",
                    ))
                } else {
                    // The one typing is the one in front of the session.
                    if let (Some(s), Sizing::Latest) = (*size, sizing) {
                        if s != core.size {
                            core.client_size(self.id, sizing, s);
                        }
                    }
                    if let Err(err) = core.input(&data) {
                        warning!("writing input to the PTY failed: {err}");
                    }
                    return;
                }
            }
            Ok(Some(Frame::Control(b))) => match msg::decode::<StreamControl>(&b) {
                Ok(StreamControl::Resize(new)) => {
                    if !read_only {
                        *size = Some(new);
                        core.client_size(self.id, sizing, new);
                    }
                    return;
                }
                Ok(StreamControl::Detach) => None,
                Err(e) => bad(&format!(
                    "only resize and detach may be sent during an attach ({e})"
                )),
            },
            Ok(Some(Frame::Output { .. })) => bad("clients do not send output frames"),
            Ok(None) => None,
            Err(e) => Some(error_reply(&e)),
        };
        self.finish(core, close);
    }
}

/// The frame as a control message of type `T`.
fn control<T: serde::de::DeserializeOwned>(
    frame: Result<Option<Frame>, StreamError>,
) -> Result<T, StreamError> {
    match frame? {
        Some(Frame::Control(b)) => Ok(msg::decode(&b)?),
        Some(Frame::Output { .. }) => Err(StreamError::Unexpected("output")),
        Some(Frame::Input(_)) => Err(StreamError::Unexpected("input")),
        None => Err(StreamError::Closed),
    }
}

/// `reply`, if it fits in a frame; else an error that says so (a screen of
/// the largest size, full of four-byte characters, would not).
fn fits(reply: Reply) -> Reply {
    let len = msg::encode(&reply).len();
    if len + 16 <= tether_proto::MAX_FRAME_SIZE {
        return reply;
    }
    Reply::error(
        ErrorKind::Limit,
        format!(
            "the screen is {len} bytes as text, more than a frame holds; read the output with \
             `tether read` instead"
        ),
    )
}

/// Appends a control frame holding `m`.
fn push<T: serde::Serialize>(out: &mut Vec<u8>, m: &T) {
    Frame::Control(msg::encode(m)).encode_into(out);
}
