//! Serving peers: each QUIC connection (inbound, or a tunnel this node
//! opened to a relay) and each stream on it.
//!
//! # Protocol flow (one QUIC bidirectional stream per request)
//! 1. client: `Hello`, `Request`; node: `Hello`, then the answer.
//! 2. `Attach` on a running session: the node opens the keeper's socket,
//!    sends it the same request and splices the two streams; the keeper
//!    answers and checks every frame. On an ended session the node replays
//!    the ring file itself ([`super::replay`]).
//! 3. Everything else: one answer, then the stream closes.
//!
//! Who may do what is decided here, once per stream: the state dir's owner
//! (the local client key) may do anything; a fleet client acts as its
//! certificate says; a relay must name the client it forwards for.

use super::replay::replay_ended;
use super::sessions::Refusal;
use super::{Node, AGENT};
use std::net::SocketAddr;
use std::sync::Arc;
use tether_net::conn::{
    accept_request, reply_and_close, splice, FrameReader, FrameWriter, StreamError,
};
use tether_net::metrics::Counted;
use tether_net::tls::fleet::{self, FleetRole};
use tether_proto::{AttachSpec, ErrorKind, KeeperRequest, Principal, Reply, Request};
use tracing::{debug, instrument, warn};

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
enum Access {
    /// The state dir's owner (the local client key).
    Owner,
    /// A fleet client, by its certificate.
    Client(Principal),
    /// A relay, which names the client on every stream.
    Relay(String),
}

type Reader = FrameReader<quinn::RecvStream>;
type Writer = FrameWriter<quinn::SendStream>;

impl Node {
    /// Serves the streams a peer opens on a connection.
    pub(crate) async fn serve_conn(self: Arc<Self>, conn: quinn::Connection) -> anyhow::Result<()> {
        let peer = conn.remote_address();
        let access = self.access_of(&conn);
        debug!(%peer, ?access, "connection");
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let node = self.clone();
            let access = access.clone();
            self.tasks.spawn(async move {
                if let Err(err) = node.serve_stream(send, recv, peer, access).await {
                    debug!(%err, %peer, "stream ended");
                }
            });
        }
    }

    fn access_of(&self, conn: &quinn::Connection) -> Access {
        let pinned = conn
            .peer_identity()
            .and_then(|i| {
                i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|c| {
                c.first()
                    .map(|c| tether_net::tls::Fingerprint::of(c.as_ref()))
            });
        if pinned == Some(self.owner) {
            return Access::Owner;
        }
        let least = |name: String| {
            Access::Client(Principal {
                name,
                read_only: true,
            })
        };
        match fleet::peer_of_connection(conn) {
            Some(p) => match p.role {
                FleetRole::Relay => Access::Relay(p.name),
                FleetRole::Client { read_only } => Access::Client(Principal {
                    name: p.name,
                    read_only,
                }),
                // The acceptor admits no other role.
                FleetRole::Node => least(p.name),
            },
            // Unreachable: the acceptor admits only pinned keys and fleet
            // roles. Should it happen, grant the least.
            None => least("unknown".into()),
        }
    }

    #[instrument(skip_all, fields(peer = %peer))]
    async fn serve_stream(
        self: Arc<Self>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        peer: SocketAddr,
        access: Access,
    ) -> Result<(), StreamError> {
        let mut rd = FrameReader::new(recv);
        let mut wr = FrameWriter::new(send);
        // Who acts: the owner, a fleet client, or the client a relay names.
        let admit = |h: tether_proto::Hello| match (&access, h.on_behalf_of) {
            (Access::Owner, _) => Ok(None),
            (Access::Client(p), _) => Ok(Some(p.clone())),
            (Access::Relay(_), Some(p)) => Ok(Some(p)),
            (Access::Relay(r), None) => Err(StreamError::Refused(format!(
                "relay {r} did not name the client it forwards for"
            ))),
        };
        let (principal, req) = match accept_request(&mut rd, &mut wr, AGENT, admit).await {
            Ok(r) => r,
            Err(e) => {
                warn!(err = %e, "bad request");
                return Err(e);
            }
        };
        debug!(?req, ?principal, "request");
        let read_only = principal.as_ref().is_some_and(|p| p.read_only);
        let req = match req {
            Request::Attach(mut spec) => {
                spec.read_only |= read_only;
                Request::Attach(spec)
            }
            Request::Create(_)
            | Request::Send { .. }
            | Request::Kill { .. }
            | Request::Remove { .. }
                if read_only =>
            {
                let who = principal.map(|p| p.name).unwrap_or_default();
                let no = Reply::error(
                    ErrorKind::ReadOnly,
                    format!("client {who} is read-only: it can list, tail and watch, not create, type, kill or remove"),
                );
                return reply_and_close(&mut rd, &mut wr, &no).await;
            }
            other => other,
        };
        if let Request::Attach(spec) = req {
            return self.attach(spec, rd, wr).await;
        }
        let reply = self
            .answer(req)
            .await
            .unwrap_or_else(|Refusal(kind, message)| Reply::Error { kind, message });
        reply_and_close(&mut rd, &mut wr, &reply).await
    }

    async fn attach(
        self: Arc<Self>,
        mut spec: AttachSpec,
        mut rd: Reader,
        mut wr: Writer,
    ) -> Result<(), StreamError> {
        let e = match self.resolve(&spec.target) {
            Ok(e) => e,
            Err(Refusal(kind, message)) => {
                return reply_and_close(&mut rd, &mut wr, &Reply::Error { kind, message }).await;
            }
        };
        spec.target = e.meta.id.to_string();
        if e.is_running() {
            match self.connect_keeper(&e.paths).await {
                Ok((krd, mut kwr)) => {
                    kwr.control(&KeeperRequest::Attach(spec)).await?;
                    let _live = self.counters.splice();
                    let _attached = e.attached();
                    let out = Counted::new(wr.into_inner(), self.counters.clone(), true);
                    let inn = Counted::new(kwr.into_inner(), self.counters.clone(), false);
                    splice(rd, out, krd, inn).await?;
                    return Ok(());
                }
                Err(err) => {
                    debug!(%err, "keeper gone during attach; replaying the ring file");
                }
            }
        }
        replay_ended(&e, &spec, &mut wr).await?;
        let _ = wr.get_mut().finish();
        Ok(())
    }
}
