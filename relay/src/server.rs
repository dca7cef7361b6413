//! The relay server: accept clients, resolve, dial the owner, splice.
//!
//! The fleet CA's revocation list comes with the credentials, is kept
//! current from the tls_dir and gossip ([`revoke::spread`]); a CRL that
//! revokes a peer cuts its connections: accepted ones (clients, tunnels,
//! relays) through [`revoke::Revocations::guard`], dialed ones to nodes
//! by `cut_revoked_dialed`.

use crate::config::RelayConfig;
use crate::locate::{self, Misses};
use crate::pool::Pool;
use crate::resolve::RouteError;
use crate::view::FleetView;
use anyhow::bail;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tether_net::conn::{
    accept_request, reply_and_close, splice, FrameReader, FrameWriter, StreamError,
};
use tether_net::endpoint::QuicSocket;
use tether_net::gossip::GossipHandle;
use tether_net::limits::Admission;
use tether_net::metrics::{self, Counted, Counters, Render};
use tether_net::tasks::Tasks;
use tether_net::tls::fleet::{self, FleetRole, FleetTls};
use tether_net::tls::revoke;
use tether_net::tls::Fingerprint;
use tether_proto::gossip::{NodeRecord, Role};
use tether_proto::{ErrorKind, Principal, Reply, Request, Route};
use tracing::{debug, info, instrument, warn};

pub(crate) const AGENT: &str = concat!("tether-relay/", env!("CARGO_PKG_VERSION"));
/// How often the relay notes which members the failure detector deems dead.
const LIVENESS_POLL: Duration = Duration::from_millis(50);
/// Largest frame a relay reads itself: a hello, a route, a list request.
const ROUTING_FRAME_MAX: usize = 64 * 1024;
/// How long a node's tunnel waits for gossip to announce the node.
const TUNNEL_RECORD_WAIT: Duration = Duration::from_secs(5);
/// QUIC close code of a refused tunnel.
const TUNNEL_REFUSED: u32 = 0x7401;
/// How long [`RelayHandle::shutdown`] lets splices drain.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(1);

/// Who opened a connection to the relay.
#[derive(Debug, Clone)]
enum Peer {
    /// A client, by its certificate.
    Client(Principal),
    /// Another relay forwarding for a client it names in each hello.
    Relay(String),
}

/// A running relay's shared state.
pub(crate) struct Relay {
    /// Splice and byte counters, for metrics.
    pub(crate) counters: Arc<Counters>,
    /// Tunnels from nodes behind NAT, by node name: a node may keep
    /// several to spread its streams (see [`crate::pool`]).
    pub(crate) tunnels: Mutex<HashMap<String, Pool>>,
    pub(crate) cfg: RelayConfig,
    pub(crate) tls: FleetTls,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) gossip: Arc<GossipHandle>,
    pub(crate) dead_since: Mutex<HashMap<String, SystemTime>>,
    /// Bumped whenever `dead_since` changes: part of the view's key.
    pub(crate) dead_epoch: AtomicU64,
    /// The indexed view of the fleet, with the gossip generation and
    /// `dead_epoch` it was built at.
    pub(crate) view: Mutex<Option<(u64, u64, Arc<FleetView>)>>,
    /// Targets no node had, a moment ago ([`crate::locate`]).
    pub(crate) misses: Mutex<Misses>,
    /// Locate streams open at once, over every request.
    pub(crate) locating: Arc<tokio::sync::Semaphore>,
    /// Connections this relay dialed, by member (a node's ID, or
    /// `relay:NAME`).
    pub(crate) conns: tokio::sync::Mutex<HashMap<String, Pool>>,
    pub(crate) tasks: Tasks,
    /// Connections per identity and address, streams and bytes per
    /// connection.
    pub(crate) admission: Arc<Admission>,
}

/// A running relay. Dropping it stops every task of the relay.
pub struct RelayHandle {
    /// Address clients connect to.
    pub addr: SocketAddr,
    /// Gossip membership (for its counters).
    pub gossip: Arc<GossipHandle>,
    endpoint: quinn::Endpoint,
    tasks: Tasks,
}

impl RelayHandle {
    /// Stops accepting, lets splices drain (at most a second), closes every
    /// connection and leaves the cluster.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"relay stopping");
        self.tasks.drain(SHUTDOWN_DEADLINE).await;
        self.gossip.shutdown().await;
        let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, self.endpoint.wait_idle()).await;
    }

    /// Resolves when the relay stops by itself (one of its loops failed),
    /// with the reason.
    pub async fn failed(&self) -> String {
        self.tasks.stopped("relay").await
    }

    /// Tasks of the relay alive now.
    pub fn tasks_alive(&self) -> usize {
        self.tasks.len()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.tasks.cancel();
        self.endpoint.close(0u32.into(), b"relay stopping");
        self.gossip.stop();
    }
}

/// Settings of a relay beyond its config file: the sockets a test or the
/// chaos harness holds, to run a relay in-process.
pub struct RelayBuilder {
    cfg: RelayConfig,
    quic: QuicSocket,
    gossip_socket: Option<std::net::UdpSocket>,
}

impl RelayBuilder {
    /// A relay with `cfg`, its sockets bound from the config.
    pub fn new(cfg: RelayConfig) -> RelayBuilder {
        RelayBuilder {
            cfg,
            quic: QuicSocket::FromConfig,
            gossip_socket: None,
        }
    }

    /// The QUIC endpoint's socket.
    pub fn quic_socket(mut self, s: QuicSocket) -> Self {
        self.quic = s;
        self
    }

    /// The gossip transport's socket, instead of binding `[gossip] listen`.
    pub fn gossip_socket(mut self, s: std::net::UdpSocket) -> Self {
        self.gossip_socket = Some(s);
        self
    }

    /// Starts the relay.
    pub async fn start(self) -> anyhow::Result<RelayHandle> {
        start_with(self).await
    }
}

/// Starts a relay with its sockets bound from the config.
pub async fn start(cfg: RelayConfig) -> anyhow::Result<RelayHandle> {
    RelayBuilder::new(cfg).start().await
}

async fn start_with(b: RelayBuilder) -> anyhow::Result<RelayHandle> {
    let cfg = b.cfg;
    let tls = FleetTls::load(&cfg.tls_dir)?;
    if tls.me.role != FleetRole::Relay || tls.me.name != cfg.name {
        bail!(
            "the certificate in {} is for {}, not relay {}; issue one with `tether ca issue CA_DIR --relay {}`",
            cfg.tls_dir.display(),
            tls.me,
            cfg.name,
            cfg.name
        );
    }
    // Clients, nodes opening tunnels, and relays forwarding to them.
    let server = fleet::accept_config(&tls, vec![], |_| true)?;
    let reset = tether_net::endpoint::endpoint_config(tls.key.secret_der());
    let endpoint = b.quic.endpoint(cfg.listen, Some(server), reset)?;
    let addr = endpoint.local_addr()?;
    let record = NodeRecord {
        id: cfg.name.clone(),
        name: cfg.name.clone(),
        role: Role::Relay,
        quic: Some(cfg.advertise.unwrap_or(addr).to_string()),
        fp: tls.fingerprint().to_string(),
        ver: env!("CARGO_PKG_VERSION").to_string(),
        relays: Vec::new(),
    };
    let mut settings = cfg.gossip.settings(format!("relay:{}", cfg.name))?;
    settings.socket = b.gossip_socket;
    let gossip = Arc::new(GossipHandle::start(settings, &record).await?);
    let tasks = Tasks::new();
    let cfg_limits = cfg.limits.clone();
    let relay = Arc::new(Relay {
        cfg,
        tls,
        endpoint: endpoint.clone(),
        gossip: gossip.clone(),
        dead_since: Mutex::new(HashMap::new()),
        dead_epoch: AtomicU64::new(0),
        view: Mutex::new(None),
        misses: Mutex::new(Misses::default()),
        locating: Arc::new(tokio::sync::Semaphore::new(locate::IN_FLIGHT)),
        conns: tokio::sync::Mutex::new(HashMap::new()),
        tunnels: Mutex::new(HashMap::new()),
        counters: Arc::new(Counters::default()),
        tasks: tasks.clone(),
        admission: Admission::new(cfg_limits),
    });
    if let Some(addr) = relay.cfg.metrics_listen {
        let r = relay.clone();
        let render: Render = Arc::new(move || {
            let r = r.clone();
            Box::pin(async move {
                let mut x = metrics::Exposition::default();
                x.revocations(&r.tls.revocations);
                r.metrics().await + &x.finish()
            })
        });
        let listener = metrics::bind(addr).await?;
        tasks.supervise(
            "metrics",
            metrics::serve_on(listener, render, tasks.clone()),
        );
    }
    tasks.supervise("liveness", watch_liveness(relay.clone()));
    let every = relay.cfg.gossip.interval();
    let rev = relay.tls.revocations.clone();
    tasks.supervise(
        "revocations",
        revoke::spread(rev, Some(gossip.clone()), every),
    );
    tasks.supervise("revoked dialed", cut_revoked_dialed(relay.clone()));
    let r = relay.clone();
    tasks.supervise("accept", async move {
        while let Some(incoming) = r.endpoint.accept().await {
            let r2 = r.clone();
            r.tasks.spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(err) => {
                        debug!(%err, "handshake failed");
                        return;
                    }
                };
                // Cut when a CRL revokes the peer (a client, a node's
                // tunnel, a relay).
                let served = r2.clone().serve_connection(conn.clone());
                if let Err(err) = r2.tls.revocations.guard(&conn, served).await {
                    debug!(%err, "connection ended");
                }
            });
        }
        bail!("the QUIC endpoint closed")
    });
    info!(name = %relay.cfg.name, %addr, "relay ready");
    Ok(RelayHandle {
        addr,
        gossip,
        endpoint,
        tasks,
    })
}

/// Closes the cached connections this relay dialed (to nodes, to relays
/// holding tunnels) whose peer a newly applied CRL revokes.
async fn cut_revoked_dialed(r: Arc<Relay>) -> anyhow::Result<()> {
    let mut changes = r.tls.revocations.subscribe();
    while changes.changed().await.is_ok() {
        let rev = &r.tls.revocations;
        r.conns
            .lock()
            .await
            .retain(|_, pool| pool.cut(|c| rev.cut_if_revoked(c)));
    }
    // The relay holds the sender: not reached while it runs.
    std::future::pending().await
}

/// Notes when each node was first seen dead, for error messages. Looks
/// again only when gossip's member list changed.
async fn watch_liveness(r: Arc<Relay>) -> anyhow::Result<()> {
    let mut seen = None;
    loop {
        let members = r.gossip.members().await;
        if seen != Some(members.generation) {
            seen = Some(members.generation);
            let mut dead = r.dead_since.lock().expect("lock");
            let before = dead.len();
            let mut changed = false;
            for m in members.iter() {
                if m.live {
                    changed |= dead.remove(&m.member_id).is_some();
                } else if !dead.contains_key(&m.member_id) {
                    dead.insert(m.member_id.clone(), SystemTime::now());
                }
            }
            if changed || dead.len() != before {
                r.dead_epoch.fetch_add(1, Ordering::Release);
            }
        }
        tokio::time::sleep(LIVENESS_POLL).await;
    }
}

impl Relay {
    async fn serve_connection(self: Arc<Self>, conn: quinn::Connection) -> anyhow::Result<()> {
        let peer = conn.remote_address();
        let who = match fleet::peer_of_connection(&conn) {
            Some(p) => match p.role {
                FleetRole::Client { read_only } => Peer::Client(Principal {
                    name: p.name,
                    read_only,
                    admin: false,
                }),
                FleetRole::Admin => Peer::Client(Principal {
                    name: p.name,
                    read_only: false,
                    admin: true,
                }),
                FleetRole::Relay => Peer::Relay(p.name),
                FleetRole::Node => return self.hold_tunnel(p.name, conn).await,
            },
            None => bail!("a peer without a fleet certificate"),
        };
        debug!(%peer, ?who, "connected");
        let identity = match &who {
            Peer::Client(p) => format!("client {}", p.name),
            Peer::Relay(r) => format!("relay {r}"),
        };
        let Some(permit) = self.admission.admit_or_close(&identity, false, &conn) else {
            return Ok(());
        };
        // Another relay's connection carries every stream of its clients.
        let conn_limits = match &who {
            Peer::Relay(_) => permit
                .conn
                .clone()
                .for_relay(&conn, self.cfg.limits.streams_per_relay_connection),
            Peer::Client(_) => permit.conn.clone(),
        };
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let r = self.clone();
            let who = who.clone();
            let limits = conn_limits.clone();
            // Taken in the order the streams arrive.
            let stream = limits.stream();
            self.tasks.spawn(async move {
                let mut wr = FrameWriter::new(send);
                // What a relay reads itself (hello, route, list) is small;
                // what it splices is not framed by it.
                let mut rd = FrameReader::new(recv)
                    .with_budget(limits.budget.clone())
                    .with_max_frame(ROUTING_FRAME_MAX);
                let res = match stream {
                    Ok(_stream) => r.serve_stream(rd, wr, who, peer).await,
                    Err(why) => {
                        async {
                            wr.hello(AGENT).await?;
                            let no = Reply::error(ErrorKind::Limit, why);
                            reply_and_close(&mut rd, &mut wr, &no).await
                        }
                        .await
                    }
                };
                if let Err(err) = res {
                    debug!(%err, "stream ended");
                }
            });
        }
    }

    /// Keeps a node's tunnel until it closes, if the node's certificate is
    /// the one gossip announces for that name: a second certificate issued
    /// for the same name does not get to answer for the node.
    async fn hold_tunnel(&self, node: String, conn: quinn::Connection) -> anyhow::Result<()> {
        let presented = tether_net::tls::peer_fingerprint(&conn);
        // A node dials its relays as it joins: give gossip a moment to
        // carry its record here.
        let deadline = tokio::time::Instant::now() + TUNNEL_RECORD_WAIT;
        let announced = loop {
            let fp = self
                .gossip
                .members()
                .await
                .iter()
                .filter_map(|m| m.record.as_ref())
                .find(|r| r.role == Role::Node && r.name == node)
                .and_then(|r| r.fp.parse::<Fingerprint>().ok());
            if fp.is_some() || tokio::time::Instant::now() >= deadline {
                break fp;
            }
            tokio::time::sleep(LIVENESS_POLL).await;
        };
        if announced.is_none() || announced != presented {
            let why = match announced {
                None => "gossip announces no node of that name",
                Some(_) => "its certificate is not the one gossip announces for that node",
            };
            warn!(%node, peer = %conn.remote_address(), why, "tunnel refused");
            conn.close(
                TUNNEL_REFUSED.into(),
                format!("tunnel for node {node} refused: {why}").as_bytes(),
            );
            return Ok(());
        }
        // A tunnel carries output, not keystrokes.
        conn.set_receive_window(tether_net::endpoint::TUNNEL_RECEIVE_WINDOW.into());
        // A node keeps a few (see `crate::pool`); the newest are used, so
        // that a restarted node's tunnels replace the ones its old process
        // left open until they time out.
        self.tunnels
            .lock()
            .expect("tunnels lock")
            .entry(node.clone())
            .or_insert_with(Pool::tunnels)
            .add_newest(conn.clone());
        info!(%node, peer = %conn.remote_address(), "tunnel up");
        let reason = conn.closed().await;
        let mut t = self.tunnels.lock().expect("tunnels lock");
        if t.get_mut(&node).is_some_and(|pool| pool.remove(&conn)) {
            t.remove(&node);
        }
        info!(%node, %reason, "tunnel down");
        Ok(())
    }

    #[instrument(skip_all, fields(peer = %peer))]
    async fn serve_stream(
        self: Arc<Self>,
        mut rd: FrameReader<quinn::RecvStream>,
        mut wr: FrameWriter<quinn::SendStream>,
        who: Peer,
        peer: SocketAddr,
    ) -> Result<(), StreamError> {
        let timeout = self.cfg.limits.hello_timeout();
        let ((), req) = match accept_request(&mut rd, &mut wr, AGENT, timeout, |_| Ok(())).await {
            Ok(r) => r,
            Err(e) => {
                self.admission.stats.count_failed_open(&e);
                return Err(e);
            }
        };
        let reply = match (req, &who) {
            (Request::Route(route), _) => return self.route(route, rd, wr, &who).await,
            (Request::Nodes, Peer::Client(_)) => Reply::Nodes {
                nodes: self.view().await.members.clone(),
            },
            (Request::List, Peer::Client(p)) => Reply::Sessions {
                sessions: self.directory(p, &*self.view().await),
            },
            (req, Peer::Client(p)) => Reply::error(
                ErrorKind::BadRequest,
                format!(
                    "client {}: a relay carries `{}` to the node only inside an end-to-end \
                     session (`route`); this client is older than the relay, upgrade it",
                    p.name,
                    req.verb()
                ),
            ),
            (req, Peer::Relay(r)) => Reply::error(
                ErrorKind::Forbidden,
                format!(
                    "relay {r}: a relay may only route a stream, not `{}`",
                    req.verb()
                ),
            ),
        };
        reply_and_close(&mut rd, &mut wr, &reply).await
    }

    /// Carries a client's stream to a node: finds the node, opens a routed
    /// stream to it (directly, through its tunnel, or through the relay
    /// that holds its tunnel), tells the client which node answered and
    /// with which fingerprint, and splices. What follows is TLS between
    /// the client and the node: this relay sees neither side's bytes.
    async fn route(
        self: Arc<Self>,
        route: Route,
        mut rd: FrameReader<quinn::RecvStream>,
        mut wr: FrameWriter<quinn::SendStream>,
        who: &Peer,
    ) -> Result<(), StreamError> {
        // A forwarding relay's stream is not forwarded again.
        let forwarded = matches!(who, Peer::Relay(_));
        let view = self.view().await;
        let picked = match &route {
            Route::Node { name } => view.node_for_create(name.as_deref()),
            Route::Session { target } => match view.resolve_session(target) {
                // A name or prefix that gossip does not know yet (a
                // session created a moment ago): ask live nodes, within
                // bounds. A short name is one too.
                Err(e) if !forwarded && e.unmatched().is_some() => {
                    let t = e.unmatched().unwrap_or_default().to_string();
                    self.locate(&t, &view, e).await
                }
                other => other.map_err(RouteError::from),
            }
            .map(|(i, _)| i),
        };
        let i = match picked {
            Ok(i) => i,
            Err(e) => {
                let no = Reply::error(e.kind(), e.to_string());
                return reply_and_close(&mut rd, &mut wr, &no).await;
            }
        };
        let node = &view.nodes[i];
        let to_node = Route::Node {
            name: Some(node.name.clone()),
        };
        let (mut nrd, nwr, lease) = match self
            .open_to(node, &Request::Route(to_node), forwarded)
            .await
        {
            Ok(s) => s,
            Err(msg) => {
                warn!(node = %node.name, %msg, "cannot reach the owner");
                let no = Reply::error(ErrorKind::Unavailable, msg);
                return reply_and_close(&mut rd, &mut wr, &no).await;
            }
        };
        match nrd.control::<Reply>().await {
            Ok(Reply::Routed { node: name, .. }) if name == node.name => {}
            Ok(no @ Reply::Error { .. }) => return reply_and_close(&mut rd, &mut wr, &no).await,
            other => {
                let msg = self.unreachable(node, &format!("it answered the route with {other:?}"));
                warn!(node = %node.name, %msg, "cannot route");
                let no = Reply::error(ErrorKind::Unavailable, msg);
                return reply_and_close(&mut rd, &mut wr, &no).await;
            }
        }
        // The fingerprint gossip announced, not the one the stream claims:
        // the client pins the node by what the fleet said of it.
        wr.control(&Reply::Routed {
            node: node.name.clone(),
            fp: node.fp.clone(),
        })
        .await?;
        debug!(node = %node.name, ?route, "routed");
        let _live = self.counters.splice();
        let out = Counted::new(wr.into_inner(), self.counters.clone(), true);
        let inn = Counted::new(nwr.into_inner(), self.counters.clone(), false);
        splice(rd, out, nrd, inn).await?;
        // The stream's place on its pooled connection is freed here.
        drop(lease);
        Ok(())
    }
}
