//! The node's lifecycle events: a broadcast bus that the request handlers
//! and the keepers' watch streams publish to, and the `Events` streams
//! that clients follow.
//!
//! # Flow
//! 1. The daemon publishes `created` and `removed` itself; it learns the
//!    rest from each keeper's `Watch` stream: a new `Session` whenever the
//!    clients attached, the window size or the waiting for input change
//!    ([`changes`] turns two of them into events), and the stream's end
//!    (`exited`, `lost`).
//! 2. A client asks `Events`; the node answers `Ok`, then an `Event` reply
//!    per event of the sessions the client may see (one session's, with a
//!    target), until the client closes the stream.
//! 3. A subscriber that falls [`BACKLOG`] events behind gets one `lagged`
//!    event saying how many it missed, and goes on: a slow reader never
//!    holds the bus back.

use super::access::Caller;
use super::entry::Entry;
use super::sessions::Refusal;
use super::Node;
use std::sync::Arc;
use tether_net::conn::{FrameReader, FrameWriter, StreamError};
use tether_proto::{Event, EventKind, Reply, SessionInfo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;

/// Events a subscriber may fall behind before it misses some.
pub(crate) const BACKLOG: usize = 1024;

/// An event, with the session it concerns (to decide who may see it).
#[derive(Clone)]
pub(crate) struct Published {
    event: Event,
    entry: Option<Arc<Entry>>,
}

/// The node's event bus.
pub(crate) struct Bus {
    tx: broadcast::Sender<Published>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

/// The events that telling `before` and then `after` of a session means.
pub(crate) fn changes(before: &SessionInfo, after: &SessionInfo) -> Vec<EventKind> {
    let mut out = Vec::new();
    if after.clients > before.clients {
        out.push(EventKind::Attached);
    }
    if after.clients < before.clients {
        out.push(EventKind::Detached);
    }
    if after.size != before.size {
        out.push(EventKind::Resized);
    }
    if after.awaiting_input && !before.awaiting_input {
        out.push(EventKind::AwaitingInput);
    }
    out
}

impl Node {
    /// Publishes `kind` about session `e`, as of `info` when given (else
    /// as the daemon knows it).
    pub(crate) fn publish(&self, kind: EventKind, e: &Arc<Entry>, info: Option<&SessionInfo>) {
        if self.events.tx.receiver_count() == 0 {
            return;
        }
        let fallback;
        let info = match info {
            Some(i) => i,
            None => {
                fallback = e.static_info();
                &fallback
            }
        };
        let mut ev = Event::new(kind, crate::store::now_ms(), self.name());
        ev.session = Some(e.meta.id);
        ev.name = e.meta.name.clone();
        ev.offset = Some(info.end_offset);
        match kind {
            EventKind::Attached | EventKind::Detached => ev.clients = Some(info.clients),
            EventKind::Resized => ev.size = Some(info.size),
            EventKind::Exited => ev.exit = info.exit,
            _ => {}
        }
        let _ = self.events.tx.send(Published {
            event: ev,
            entry: Some(e.clone()),
        });
    }

    /// Serves an `Events` stream: `Ok`, then the events `who` may see (of
    /// session `target` only, when given) until the client closes it.
    pub(crate) async fn follow_events<R, W>(
        &self,
        target: Option<String>,
        who: &Caller,
        mut rd: FrameReader<R>,
        mut wr: FrameWriter<W>,
    ) -> Result<(), StreamError>
    where
        R: AsyncRead + Send + Unpin,
        W: AsyncWrite + Send + Unpin,
    {
        let only = match target.as_deref().map(|t| self.resolve_as(who, t)) {
            Some(Err(Refusal(kind, message))) => {
                return tether_net::conn::reply_and_close(
                    &mut rd,
                    &mut wr,
                    &Reply::Error { kind, message },
                )
                .await;
            }
            Some(Ok(e)) => Some(e.meta.id),
            None => None,
        };
        let mut rx = self.events.tx.subscribe();
        wr.control(&Reply::Ok).await?;
        loop {
            let ev = tokio::select! {
                r = rx.recv() => r,
                // Anything from the client, or its leaving, ends the stream.
                _ = rd.next() => break,
            };
            let event = match ev {
                Ok(p) => {
                    let mine = match &p.entry {
                        Some(e) => who.sees(e) && only.is_none_or(|id| id == e.meta.id),
                        None => only.is_none(),
                    };
                    if !mine {
                        continue;
                    }
                    p.event
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let mut ev = Event::new(EventKind::Lagged, crate::store::now_ms(), self.name());
                    ev.missed = Some(n);
                    ev
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            wr.control(&Reply::Event { event }).await?;
        }
        let _ = wr.get_mut().shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::{NodeId, SessionId, SessionState, WinSize};

    #[test]
    fn changes_become_events() {
        let a = SessionInfo::new(SessionId([1; 16]), NodeId([2; 8]), SessionState::Running);
        let mut b = a.clone();
        assert!(changes(&a, &b).is_empty());
        b.clients = 1;
        b.size = WinSize {
            cols: 100,
            rows: 30,
        };
        b.awaiting_input = true;
        assert_eq!(
            changes(&a, &b),
            [
                EventKind::Attached,
                EventKind::Resized,
                EventKind::AwaitingInput
            ]
        );
        assert_eq!(changes(&b, &a), [EventKind::Detached, EventKind::Resized]);
    }
}
