//! Serving peers: each QUIC connection (inbound, or a tunnel this node
//! opened to a relay) and each stream on it.
//!
//! # Protocol flow (one QUIC bidirectional stream per request)
//! 1. peer: `Hello`, `Request`; node: `Hello`, then the answer.
//! 2. `Route` (from a relay carrying a client's stream, or from anyone):
//!    the node answers `Routed` and accepts a TLS 1.3 session over the
//!    rest of the stream ([`tether_net::tls::e2e`]); inside it, the client
//!    says `Hello` and its request again, and is the identity its own
//!    certificate names. The relay only carries the bytes.
//! 3. `Attach` on a running session: the node opens the keeper's socket,
//!    sends it the same request and splices the two streams; the keeper
//!    answers and checks every frame. On an ended session the node replays
//!    the ring file itself ([`super::replay`]).
//! 4. Everything else: one answer, then the stream closes.
//!
//! The state dir's owner may also come over the daemon's unix socket
//! (`node.sock`, the local fast path): one connection per request, the
//! same frames as a QUIC stream, the peer's uid checked by the kernel's
//! credentials instead of a key. A local client sends most of what
//! concerns a running session straight to its keeper; here it creates,
//! lists, locates names, and reaches ended sessions.
//!
//! Who may do what is decided here, once per stream, from certificates
//! only: the state dir's owner (the local client key) may do anything; a
//! fleet client acts as its certificate says, whether it came straight or
//! through relays; a relay may only route and locate, never act.

use super::access::Caller;
use super::replay::replay_ended;
use super::sessions::Refusal;
use super::{Node, AGENT};
use std::net::SocketAddr;
use std::sync::Arc;
use tether_net::conn::{
    accept_request, reply_and_close, splice, FrameReader, FrameWriter, StreamError,
};
use tether_net::metrics::Counted;
use tether_net::tls::e2e;
use tether_net::tls::fleet::{self, FleetPeer, FleetRole};
use tether_proto::{AttachSpec, ErrorKind, KeeperRequest, Principal, Reply, Request, Route};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, instrument, warn};

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
enum Access {
    /// The state dir's owner (the local client key).
    Owner,
    /// A fleet client, by its certificate.
    Client(Principal),
    /// A relay: it may carry clients' streams, not act.
    Relay(String),
}

impl Access {
    fn of_peer(p: FleetPeer) -> Access {
        match p.role {
            FleetRole::Relay => Access::Relay(p.name),
            FleetRole::Client { read_only } => Access::Client(Principal {
                name: p.name,
                read_only,
                admin: false,
            }),
            FleetRole::Admin => Access::Client(Principal {
                name: p.name,
                read_only: false,
                admin: true,
            }),
            // The acceptors admit no other role; should one pass, it gets
            // the least.
            FleetRole::Node => Access::Client(Principal {
                name: p.name,
                read_only: true,
                admin: false,
            }),
        }
    }
}

impl Access {
    /// Who acts, for the access rules; a relay never acts (refused before).
    fn caller(&self) -> Caller {
        match self {
            Access::Owner => Caller::Local,
            Access::Client(p) => Caller::Client(p.clone()),
            Access::Relay(r) => Caller::Client(Principal {
                name: format!("relay:{r}"),
                read_only: true,
                admin: false,
            }),
        }
    }

    /// The name its connections are counted under.
    fn identity(&self) -> String {
        match self {
            Access::Owner => "the local owner".into(),
            Access::Client(p) => format!("client {}", p.name),
            Access::Relay(r) => format!("relay {r}"),
        }
    }
}

/// Answers a stream beyond its connection's limit with the reason.
async fn refuse_stream(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    why: &str,
) -> Result<(), StreamError> {
    let mut wr = FrameWriter::new(send);
    let mut rd = FrameReader::new(recv).with_max_frame(4096);
    wr.hello(AGENT).await?;
    reply_and_close(&mut rd, &mut wr, &Reply::error(ErrorKind::Limit, why)).await
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Owner => f.write_str("local owner"),
            Access::Client(p) if p.admin => write!(f, "admin {}", p.name),
            Access::Client(p) if p.read_only => write!(f, "client {} (read-only)", p.name),
            Access::Client(p) => write!(f, "client {}", p.name),
            Access::Relay(r) => write!(f, "relay {r}"),
        }
    }
}

impl Node {
    /// Serves the streams a peer opens on a connection.
    pub(crate) async fn serve_conn(self: Arc<Self>, conn: quinn::Connection) -> anyhow::Result<()> {
        let peer = conn.remote_address();
        let access = self.access_of(&conn);
        debug!(%peer, %access, "connection");
        let owner = matches!(access, Access::Owner);
        let Some(permit) = self
            .admission
            .admit_or_close(&access.identity(), owner, &conn)
        else {
            return Ok(());
        };
        // A relay's connection carries every stream of its clients.
        let conn_limits = match access {
            Access::Relay(_) => permit
                .conn
                .clone()
                .for_relay(&conn, self.cfg.limits.streams_per_relay_connection),
            _ => permit.conn.clone(),
        };
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let node = self.clone();
            let access = access.clone();
            let limits = conn_limits.clone();
            // Taken in the order the streams arrive.
            let stream = limits.stream();
            self.tasks.spawn(async move {
                let res = match stream {
                    Ok(_stream) => {
                        let rd = FrameReader::new(recv).with_budget(limits.budget.clone());
                        node.serve_stream(rd, FrameWriter::new(send), peer, access)
                            .await
                    }
                    Err(why) => refuse_stream(send, recv, &why).await,
                };
                if let Err(err) = res {
                    debug!(%err, %peer, "stream ended");
                }
            });
        }
    }

    /// Serves the local owner's connections on the daemon's unix socket
    /// until the listener fails.
    pub(crate) async fn serve_local(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(err) => {
                    // Out of descriptors, most likely: wait, do not spin.
                    warn!(%err, "accepting on the unix socket failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !tether_net::runtime::peer_is_me(&stream) {
                warn!(peer = ?stream.peer_cred().ok(), "refused a unix connection of another user");
                continue;
            }
            let node = self.clone();
            // Partial frames of all of the owner's connections share one
            // budget: a runaway local script cannot balloon the daemon.
            let budget = self.admission.identity_budget(&Access::Owner.identity());
            self.tasks.spawn(async move {
                let (r, w) = stream.into_split();
                let mut rd = FrameReader::new(r).with_budget(budget);
                let mut wr = FrameWriter::new(w);
                let timeout = node.cfg.limits.hello_timeout();
                let res = match accept_request(&mut rd, &mut wr, AGENT, timeout, |_| Ok(())).await {
                    Ok(((), req)) => node.serve_request(req, &Access::Owner, rd, wr).await,
                    Err(e) => Err(e),
                };
                if let Err(err) = res {
                    debug!(%err, "local connection ended");
                }
            });
        }
    }

    fn access_of(&self, conn: &quinn::Connection) -> Access {
        let pinned = tether_net::tls::peer_fingerprint(conn);
        if pinned == Some(self.owner) {
            return Access::Owner;
        }
        match fleet::peer_of_connection(conn) {
            Some(p) => Access::of_peer(p),
            // Unreachable: the acceptor admits only pinned keys and fleet
            // roles. Should it happen, grant the least.
            None => Access::Client(Principal {
                name: "unknown".into(),
                read_only: true,
                admin: false,
            }),
        }
    }

    #[instrument(skip_all, fields(peer = %peer))]
    async fn serve_stream(
        self: Arc<Self>,
        mut rd: FrameReader<quinn::RecvStream>,
        mut wr: FrameWriter<quinn::SendStream>,
        peer: SocketAddr,
        access: Access,
    ) -> Result<(), StreamError> {
        let timeout = self.cfg.limits.hello_timeout();
        let ((), req) = match accept_request(&mut rd, &mut wr, AGENT, timeout, |_| Ok(())).await {
            Ok(r) => r,
            Err(e) => {
                self.admission.stats.count_failed_open(&e);
                warn!(err = %e, who = %access, "bad request");
                return Err(e);
            }
        };
        match (req, &access) {
            (Request::Route(route), _) => self.route(route, rd, wr, &access).await,
            (Request::Locate { target }, Access::Relay(_)) => {
                let reply = match self.resolve(&target) {
                    Ok(e) => Reply::Located { id: e.meta.id },
                    Err(Refusal(kind, message)) => Reply::Error { kind, message },
                };
                reply_and_close(&mut rd, &mut wr, &reply).await
            }
            (req, Access::Relay(r)) => {
                warn!(relay = %r, ?req, "a relay tried to act instead of forwarding");
                let no = Reply::error(
                    ErrorKind::Forbidden,
                    format!(
                        "relay {r} may only carry a client's stream to this node (Route) or \
                         locate a session; a client speaks for itself, end to end"
                    ),
                );
                reply_and_close(&mut rd, &mut wr, &no).await
            }
            (req, _) => self.serve_request(req, &access, rd, wr).await,
        }
    }

    /// Accepts the client's TLS session over a routed stream and serves the
    /// request inside it, as the client its certificate names.
    async fn route<R, W>(
        self: Arc<Self>,
        route: Route,
        mut rd: FrameReader<R>,
        mut wr: FrameWriter<W>,
        carrier: &Access,
    ) -> Result<(), StreamError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let me = self.name();
        let refuse = |kind, message: String| Reply::Error { kind, message };
        let no = match (&route, &self.e2e) {
            (_, None) => Some(refuse(
                ErrorKind::BadRequest,
                format!(
                    "node {me} has no fleet certificate, so no stream can be routed to it; \
                     give it tls_dir in its config"
                ),
            )),
            (Route::Node { name: Some(n) }, _) if *n != me => Some(refuse(
                ErrorKind::NotFound,
                format!("this is node {me}, not {n}"),
            )),
            _ => None,
        };
        if let Some(no) = no {
            return reply_and_close(&mut rd, &mut wr, &no).await;
        }
        let acceptor = self.e2e.as_ref().expect("checked above");
        wr.control(&Reply::Routed {
            node: me,
            fp: self.fingerprint.to_string(),
        })
        .await?;
        let (r, ahead) = rd.into_parts();
        let w = wr.into_inner();
        let handshake = e2e::accept(e2e::prefixed(ahead, r), w, acceptor);
        let timeout = self.cfg.limits.hello_timeout();
        let (ir, iw, peer) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(err = %e, via = %carrier, "end-to-end TLS refused");
                return Err(StreamError::Refused(e.to_string()));
            }
            Err(_) => {
                return Err(StreamError::TimedOut(timeout));
            }
        };
        let access = Access::of_peer(peer);
        let budget = self.admission.identity_budget(&access.identity());
        let mut rd = FrameReader::new(ir).with_budget(budget);
        let mut wr = FrameWriter::new(iw);
        let ((), req) = accept_request(&mut rd, &mut wr, AGENT, timeout, |_| Ok(())).await?;
        match req {
            Request::Route(_) | Request::Locate { .. } => {
                let no = Reply::error(
                    ErrorKind::BadRequest,
                    "a routed stream already reaches its node; send the request itself",
                );
                reply_and_close(&mut rd, &mut wr, &no).await
            }
            req => self.serve_request(req, &access, rd, wr).await,
        }
    }

    /// Answers one request of `access`, on a stream straight from the peer
    /// or inside a routed TLS session.
    async fn serve_request<R, W>(
        self: Arc<Self>,
        req: Request,
        access: &Access,
        mut rd: FrameReader<R>,
        mut wr: FrameWriter<W>,
    ) -> Result<(), StreamError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        info!(who = %access, request = req.verb(), target = req.target().unwrap_or(""), "request");
        let who = access.caller();
        let read_only = matches!(access, Access::Client(p) if p.read_only);
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
                let no = Reply::error(
                    ErrorKind::ReadOnly,
                    format!("{access} can list, tail and watch, not create, type, kill or remove"),
                );
                return reply_and_close(&mut rd, &mut wr, &no).await;
            }
            other => other,
        };
        if let Request::Attach(spec) = req {
            return self.attach(spec, &who, rd, wr).await;
        }
        if let Request::Events { target } = req {
            return self.follow_events(target, &who, rd, wr).await;
        }
        let reply = self
            .answer(req, &who)
            .await
            .unwrap_or_else(|Refusal(kind, message)| Reply::Error { kind, message });
        reply_and_close(&mut rd, &mut wr, &reply).await
    }

    async fn attach<R, W>(
        self: Arc<Self>,
        mut spec: AttachSpec,
        who: &Caller,
        mut rd: FrameReader<R>,
        mut wr: FrameWriter<W>,
    ) -> Result<(), StreamError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let e = match self.resolve_as(who, &spec.target) {
            Ok(e) => e,
            Err(Refusal(kind, message)) => {
                return reply_and_close(&mut rd, &mut wr, &Reply::Error { kind, message }).await;
            }
        };
        spec.target = e.meta.id.to_string();
        // One it may only watch: a read-only share.
        spec.read_only |= !who.may_write(&e);
        if e.is_running() {
            match self.connect_keeper(&e.paths).await {
                Ok((krd, mut kwr)) => {
                    let spec_follows = spec.follow;
                    kwr.control(&KeeperRequest::Attach(spec)).await?;
                    let _live = self.counters.splice();
                    // A one-shot read is not an attach.
                    let _attached = spec_follows.then(|| e.attached());
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
        let _ = wr.get_mut().shutdown().await;
        Ok(())
    }
}
