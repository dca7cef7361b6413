//! One session's output as a stream of events that survives the loss of
//! its connection: the attach of an interactive client and the tail of a
//! reader are the same [`OutputStream`], with or without input.
//!
//! # Protocol flow
//! 1. [`OutputStream::open`] sends `Request::Attach` on a connected
//!    [`Client`] and waits for `Attached`; its frames go to one
//!    [`OutputCursor`] for the life of the stream.
//! 2. [`OutputStream::next`] yields what the cursor makes of each frame:
//!    new output (each byte once, in order), gaps, and the end.
//! 3. When the transport breaks, the stream reports
//!    [`StreamEvent::Reconnecting`], waits as its [`Backoff`] says,
//!    connects again the way the client first did ([`Dial`]: the next
//!    relay of a fleet, or the local node, started anew if it must be) and
//!    attaches to the session's full ID from [`OutputCursor::resume_at`].
//!    The cursor trims whatever the node sends twice, so no byte is lost or
//!    doubled. Success is [`StreamEvent::Resumed`]; after the last attempt,
//!    [`ClientError::Connect`].
//! 4. Input typed and sizes set while the connection is down are kept and
//!    sent once it is back; input not yet written when the connection
//!    broke is dropped, never sent twice.
//!
//! [`OutputStream::next`] is cancel-safe: a caller may `select!` it
//! against its own input; a reconnect under way is kept, not restarted.

use crate::backoff::Backoff;
use crate::client::{Client, Stream};
use crate::dial::Dial;
use crate::error::ClientError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tether_proto::cursor::{EndKind, Event};
use tether_proto::{
    msg, AttachSpec, ErrorKind, Frame, Offset, OutputCursor, Reply, Request, SessionInfo,
    StreamControl, WinSize, MAX_FRAME_SIZE,
};
use tokio::io::AsyncWriteExt;

/// Input held while the connection is down, at most.
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// What happened on an [`OutputStream`].
#[derive(Debug)]
pub enum StreamEvent {
    /// Output never delivered before.
    Output {
        /// Offset of `data[0]` in the session's output.
        offset: Offset,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The screen as it is at `offset`, as escape codes that redraw it on
    /// a terminal of the session's size: the first event of an attach that
    /// asked for it ([`AttachSpec::snapshot`]); output follows from
    /// `offset`.
    Snapshot {
        /// The output offset it reflects.
        offset: Offset,
        /// The escape codes.
        data: Vec<u8>,
        /// Output bytes the node's emulator skipped (see
        /// [`tether_proto::ScreenState::skipped`]).
        skipped: u64,
    },
    /// Bytes `missed..resume` are gone from the ring and will not come.
    Gap {
        /// First byte lost.
        missed: Offset,
        /// First byte that will come.
        resume: Offset,
    },
    /// The connection broke (or the last attempt to restore it failed);
    /// the stream tries again after `delay`.
    Reconnecting {
        /// Why: the break, or the last attempt's failure.
        cause: ClientError,
        /// Whether the connection just broke (the first attempt since
        /// output last flowed), rather than an attempt having failed.
        new_outage: bool,
        /// Attempts so far in this outage, this one included.
        attempt: u32,
        /// Attempts allowed in one outage.
        max_attempts: u32,
        /// How long the stream waits before this attempt.
        delay: Duration,
        /// Where the output will resume.
        resume_at: Offset,
    },
    /// The stream is attached again; output goes on from `at`.
    Resumed {
        /// The next byte expected.
        at: Offset,
        /// The node or relay now connected.
        peer: SocketAddr,
    },
    /// The stream is over: the session exited or was lost, or a
    /// non-following stream reached its end.
    Ended(EndKind),
}

type Retry = Pin<Box<dyn Future<Output = Result<(Client, Stream, Frame), ClientError>> + Send>>;

enum Link {
    /// Attached: frames flow.
    Live(Stream),
    /// The transport broke; `retry` sleeps, reconnects and reattaches.
    Down {
        retry: Retry,
        /// The window size the retry asks for.
        size: Option<WinSize>,
    },
    /// Ended or failed: nothing more comes.
    Done,
}

/// A session's output from an offset, with input, resize and detach for an
/// interactive client, resumed by itself when the connection breaks; see
/// the [module documentation](self).
pub struct OutputStream {
    client: Option<Client>,
    /// `client` is a connection the stream made itself (to resume), not
    /// the caller's.
    own_client: bool,
    dial: Arc<Dial>,
    relay: usize,
    /// The request; `target` becomes the session's full ID once attached.
    spec: AttachSpec,
    cursor: OutputCursor,
    session: SessionInfo,
    link: Link,
    backoff: Backoff,
    /// Attempts so far in the current outage: back to 0 once output
    /// flows again after a resume, so a stream that lives for days is not
    /// worn out by its outages, and one that resumes but gets nothing
    /// (a flapping path) still gives up.
    attempts: u32,
    /// Encoded frames to send once the stream is live: input typed and
    /// sizes set while the connection was down.
    outbox: Vec<u8>,
    ended: Option<EndKind>,
}

impl std::fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.link {
            Link::Live(_) => "live",
            Link::Down { .. } => "reconnecting",
            Link::Done => "done",
        };
        f.debug_struct("OutputStream")
            .field("session", &self.session.id)
            .field("position", &self.cursor.position())
            .field("state", &state)
            .field("dial", &self.dial)
            .finish_non_exhaustive()
    }
}

impl OutputStream {
    /// Attaches on `client` as `spec` says and waits for the node to
    /// accept. A failure here is returned as it is, not retried.
    pub async fn open(client: Client, spec: AttachSpec) -> Result<OutputStream, ClientError> {
        let mut cursor = OutputCursor::new(spec.start);
        let (stream, first) = handshake(&client, &spec).await?;
        let session = match cursor.on_frame(first)? {
            Event::Attached { session, .. } => *session,
            other => return Err(not_attached(other)),
        };
        let dial = Arc::new(client.dial().clone());
        Ok(OutputStream {
            relay: client.relay_index(),
            client: Some(client),
            own_client: false,
            dial,
            // A reattach resumes from its offset: no second snapshot.
            spec: AttachSpec {
                target: session.id.to_string(),
                snapshot: None,
                ..spec
            },
            cursor,
            session,
            link: Link::Live(stream),
            backoff: Backoff::default(),
            attempts: 0,
            outbox: Vec::new(),
            ended: None,
        })
    }

    /// Uses `backoff` for the reconnects to come.
    pub fn with_backoff(mut self, backoff: Backoff) -> OutputStream {
        self.backoff = backoff;
        self
    }

    /// The session, as the node described it at the last (re)attach.
    pub fn session(&self) -> &SessionInfo {
        &self.session
    }

    /// The next byte expected: where a new stream would resume.
    pub fn position(&self) -> Offset {
        self.cursor.position().unwrap_or_default()
    }

    /// How this stream connects, and connects again.
    pub fn dial(&self) -> &Dial {
        &self.dial
    }

    /// Whether bytes of the next frame were already received: a caller
    /// that batches its writes may wait with its flush.
    pub fn has_buffered(&self) -> bool {
        matches!(&self.link, Link::Live((rd, _)) if !rd.buffered().is_empty())
    }

    /// The next event. After [`StreamEvent::Ended`] it returns the same
    /// end again; after an error, an error. Cancel-safe.
    pub async fn next(&mut self) -> Result<StreamEvent, ClientError> {
        loop {
            match &mut self.link {
                Link::Live((_, wr)) if !self.outbox.is_empty() => {
                    // What was typed while the connection was down; one
                    // cancel-safe write at a time.
                    match wr.get_mut().write(&self.outbox).await {
                        Ok(n) => {
                            self.outbox.drain(..n);
                        }
                        Err(e) => return self.broke(e.into()),
                    }
                    // A TLS session holds the record until flushed.
                    if let Err(e) = wr.get_mut().flush().await {
                        return self.broke(e.into());
                    }
                }
                Link::Live((rd, _)) => match rd.next().await {
                    Ok(Some(frame)) => {
                        if let Some(ev) = self.on_frame(frame)? {
                            return Ok(ev);
                        }
                    }
                    Ok(None) => {
                        return self.broke(ClientError::broken("the stream closed before its end"))
                    }
                    Err(e) => return self.broke(e.into()),
                },
                Link::Down { retry, size } => {
                    let size = *size;
                    let res = retry.await;
                    return match res {
                        Ok((client, stream, first)) => self.resumed(client, stream, first, size),
                        Err(e) => self.broke(e),
                    };
                }
                Link::Done => {
                    return match self.ended {
                        Some(end) => Ok(StreamEvent::Ended(end)),
                        None => Err(ClientError::Config(
                            "this stream has failed; open a new one".into(),
                        )),
                    }
                }
            }
        }
    }

    /// What a frame of a live stream means; `None` for one that brings
    /// nothing new.
    fn on_frame(&mut self, frame: Frame) -> Result<Option<StreamEvent>, ClientError> {
        let ev = match self.cursor.on_frame(frame) {
            Ok(ev) => ev,
            Err(e) => return Err(self.fail(e.into())),
        };
        Ok(Some(match ev {
            Event::Output { offset, data } => {
                self.attempts = 0;
                StreamEvent::Output { offset, data }
            }
            Event::Gap { missed, resume } => StreamEvent::Gap { missed, resume },
            Event::Ended(end) => {
                // Dropping the stream finishes it.
                self.link = Link::Done;
                self.ended = Some(end);
                StreamEvent::Ended(end)
            }
            Event::Refused { kind, message } => {
                return Err(self.fail(ClientError::Refused { kind, message }))
            }
            Event::Other(reply) => match *reply {
                Reply::Snapshot {
                    offset,
                    data,
                    skipped,
                } if Some(offset) == self.cursor.position() => StreamEvent::Snapshot {
                    offset,
                    data,
                    skipped,
                },
                _ => return Ok(None),
            },
            Event::Attached { .. } | Event::Duplicate => return Ok(None),
        }))
    }

    /// The stream cannot go on: `e` is final.
    fn fail(&mut self, e: ClientError) -> ClientError {
        self.link = Link::Done;
        e
    }

    /// The transport broke, or an attempt to restore it failed with `e`:
    /// schedule the next attempt, or give up.
    fn broke(&mut self, e: ClientError) -> Result<StreamEvent, ClientError> {
        if !e.is_resumable() {
            return Err(self.fail(e));
        }
        let new_outage = matches!(self.link, Link::Live(_));
        if new_outage {
            // Maybe partly written: what is left would start mid-frame on
            // the next stream. Input goes at most once.
            self.outbox.clear();
        }
        self.attempts += 1;
        tracing::debug!(
            session = %self.session.id,
            attempt = self.attempts,
            err = %e,
            "stream broke; reconnecting"
        );
        let Some(delay) = self.backoff.delay(self.attempts) else {
            let e = self.gave_up(e);
            return Err(self.fail(e));
        };
        let resume_at = self.position();
        let spec = AttachSpec {
            start: self.cursor.resume_at(),
            ..self.spec.clone()
        };
        let size = spec.size;
        let first = if self.dial.is_fleet() {
            self.relay + 1
        } else {
            0
        };
        self.link = Link::Down {
            retry: retry(self.dial.clone(), first, spec, delay),
            size,
        };
        Ok(StreamEvent::Reconnecting {
            cause: e,
            new_outage,
            attempt: self.attempts,
            max_attempts: self.backoff.max_attempts,
            delay,
            resume_at,
        })
    }

    fn gave_up(&self, last: ClientError) -> ClientError {
        let what = if self.dial.is_fleet() {
            "any relay"
        } else {
            "the node daemon"
        };
        let n = self.attempts - 1;
        match last {
            ClientError::Connect { reason, hint } => ClientError::connect(
                format!("could not reach {what} again in {n} attempts ({reason})"),
                hint,
            ),
            ClientError::Refused {
                kind: ErrorKind::Unavailable,
                message,
            } => ClientError::connect(
                format!("the session's node stayed unreachable through {n} attempts ({message})"),
                "check that the node runs and that the relays reach it, then attach again",
            ),
            other => ClientError::connect(
                format!("could not reach {what} again in {n} attempts ({other})"),
                "check that it runs, then attach again",
            ),
        }
    }

    /// A retry connected and the node answered with `first`. No await
    /// here: the retry's result must not be lost to a cancelled `next`.
    fn resumed(
        &mut self,
        client: Client,
        stream: Stream,
        first: Frame,
        size: Option<WinSize>,
    ) -> Result<StreamEvent, ClientError> {
        let session = match self.cursor.on_frame(first) {
            Ok(Event::Attached { session, .. }) => *session,
            Ok(other) => return Err(self.fail(not_attached(other))),
            Err(e) => return Err(self.fail(e.into())),
        };
        // A size set while the connection was down goes after what was
        // typed meanwhile (already in the outbox).
        if let Some(now) = self.spec.size {
            if !self.spec.read_only && size != Some(now) {
                Frame::Control(msg::encode(&StreamControl::Resize(now)))
                    .encode_into(&mut self.outbox);
            }
        }
        self.relay = client.relay_index();
        let peer = client.peer;
        // The old connection is dead: dropping it is all there is to do.
        self.client = Some(client);
        self.own_client = true;
        self.session = session;
        self.link = Link::Live(stream);
        Ok(StreamEvent::Resumed {
            at: self.position(),
            peer,
        })
    }

    fn read_only(&self) -> Result<(), ClientError> {
        if self.spec.read_only {
            return Err(ClientError::refused(
                ErrorKind::ReadOnly,
                "this stream is read-only; attach without read-only to type or resize",
            ));
        }
        Ok(())
    }

    /// Types `bytes` into the session. While the connection is down they
    /// wait (up to 64 KiB) and go once it is back. An error means these
    /// bytes were not sent; a broken connection is reported (and
    /// restored) by [`next`](Self::next). Not cancel-safe: call it from
    /// the handler of a `select!`, not as one of its branches.
    pub async fn input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.read_only()?;
        match &mut self.link {
            Link::Live((_, wr)) if self.outbox.is_empty() => {
                for chunk in bytes.chunks(MAX_FRAME_SIZE / 2) {
                    wr.send(&Frame::Input(chunk.to_vec())).await?;
                }
                Ok(())
            }
            // Behind what waits, in order; `next` sends it.
            Link::Live(_) | Link::Down { .. }
                if self.outbox.len() + bytes.len() <= MAX_PENDING_INPUT =>
            {
                for chunk in bytes.chunks(MAX_FRAME_SIZE / 2) {
                    Frame::Input(chunk.to_vec()).encode_into(&mut self.outbox);
                }
                Ok(())
            }
            Link::Live(_) | Link::Down { .. } => Err(ClientError::broken(
                "the connection is down and 64 KiB of input already wait; this input was not sent",
            )),
            Link::Done => Err(ClientError::broken("the stream is over; input not sent")),
        }
    }

    /// Sets the session's window size (now, or once the connection is
    /// back). Not cancel-safe, as [`input`](Self::input).
    pub async fn resize(&mut self, size: WinSize) -> Result<(), ClientError> {
        self.read_only()?;
        self.spec.size = Some(size);
        match &mut self.link {
            Link::Live((_, wr)) if self.outbox.is_empty() => {
                wr.control(&StreamControl::Resize(size)).await?
            }
            Link::Live(_) => Frame::Control(msg::encode(&StreamControl::Resize(size)))
                .encode_into(&mut self.outbox),
            // Sent with the reattach, or after it.
            Link::Down { .. } | Link::Done => {}
        }
        Ok(())
    }

    /// Leaves the session running and closes the stream.
    pub async fn detach(mut self) {
        if let Link::Live((_, wr)) = &mut self.link {
            let typed = wr.send_raw(&self.outbox).await;
            if typed.is_ok() && wr.control(&StreamControl::Detach).await.is_ok() {
                let _ = wr.get_mut().shutdown().await;
            }
        }
        self.close().await;
    }

    /// Closes the stream, and its connection only if the stream made that
    /// connection itself (to resume): the connection it was opened on is
    /// the caller's, shared by the caller's other requests, and stays
    /// open. For a caller that goes on using its [`Client`].
    pub async fn end(mut self) {
        if let Link::Live((_, wr)) = &mut self.link {
            let _ = wr.get_mut().shutdown().await;
        }
        self.link = Link::Done;
        if let Some(c) = self.client.take().filter(|_| self.own_client) {
            c.close().await;
        }
    }

    /// Closes the stream and its connection (a clone of the [`Client`] it
    /// was opened on is closed too): for a caller that is done.
    pub async fn close(mut self) {
        if let Link::Live((_, wr)) = &mut self.link {
            let _ = wr.get_mut().shutdown().await;
        }
        self.link = Link::Done;
        if let Some(c) = self.client.take() {
            c.close().await;
        }
    }
}

/// Sends the attach and reads the node's first frame.
async fn handshake(client: &Client, spec: &AttachSpec) -> Result<(Stream, Frame), ClientError> {
    let (mut rd, wr) = client.open(&Request::Attach(spec.clone())).await?;
    match rd.next().await? {
        Some(first) => Ok(((rd, wr), first)),
        None => Err(ClientError::broken(
            "the stream closed before the node answered the attach",
        )),
    }
}

/// After `delay`, connects as `dial` says and attaches as `spec` says.
fn retry(dial: Arc<Dial>, first: usize, spec: AttachSpec, delay: Duration) -> Retry {
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        let client = dial.connect(first).await?;
        let (stream, frame) = handshake(&client, &spec).await?;
        Ok((client, stream, frame))
    })
}

/// The first event of an attach was not `Attached`.
fn not_attached(ev: Event) -> ClientError {
    match ev {
        Event::Refused { kind, message } => ClientError::Refused { kind, message },
        Event::Other(reply) => ClientError::Unexpected(reply),
        other => ClientError::Protocol(
            format!("the node answered the attach with {other:?}, not Attached").into(),
        ),
    }
}
