//! The node daemon: owns the state dir, starts and re-adopts keepers, and
//! serves clients over QUIC. One file per job:
//!
//! - [`NodeBuilder`] (here): taking the state dir, choosing TLS, the
//!   endpoint, and the settings tests and drills change (keeper command,
//!   sockets, timeouts);
//! - `sessions`: the session table, a pure structure;
//! - `entry`: one session and what its files say;
//! - `serve`: connections, streams, access control, attach;
//! - `requests`: the requests answered with one reply (create among them);
//! - `keepers`: starting, re-adopting, watching and asking keepers;
//! - `replay`: streaming an ended session's ring file;
//! - `fleet_sync`: gossip of the sessions, tunnels to relays;
//! - `stats`: the metrics text.
//!
//! In a fleet, the CA's revocation list comes with the credentials
//! (`tls_dir/crl.pem`), is kept current from the tls_dir and gossip
//! ([`tether_net::tls::revoke::spread`]), and every accepted connection is
//! served under its guard: cut when a CRL revokes its peer.
//!
//! The daemon holds no session state that it cannot rebuild from the state
//! dir: after a crash, a new daemon scans `sessions/`, reconnects to every
//! live keeper and reads the exit records of the sessions that ended while
//! it was down.
//!
//! Every task it spawns belongs to its [`NodeHandle`] ([`Tasks`]):
//! dropping the handle stops them, [`NodeHandle::shutdown`] waits for them.

mod access;
mod entry;
mod events;
mod fleet_sync;
mod keepers;
mod replay;
mod requests;
mod serve;
mod sessions;
mod stats;

pub use keepers::KeeperCommand;
pub use requests::MAX_NAME_LEN;
pub use tether_net::endpoint::QuicSocket;

use crate::config::NodeConfig;
use crate::store::{self, NodeRuntime};
use anyhow::{bail, Context};
use entry::Entry;
use sessions::SessionTable;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_net::gossip::GossipHandle;
use tether_net::limits::Admission;
use tether_net::metrics::{self, Counters, Render};
use tether_net::tasks::Tasks;
use tether_net::tls::e2e;
use tether_net::tls::fleet::{self, FleetRole, FleetTls};
use tether_net::tls::local::{self as identity, NodeIdentity};
use tether_net::tls::revoke;
use tether_net::tls::Fingerprint;
use tether_proto::gossip::{NodeRecord, Role};
use tether_proto::NodeId;
use tracing::{info, warn};

const AGENT: &str = concat!("tether-node/", env!("CARGO_PKG_VERSION"));
/// How often a fleet node without gossip looks for a new `crl.pem`.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// Bytes an output stream encodes per write, at most (plus one chunk).
const WRITE_BATCH: usize = 256 * 1024;

/// Every timeout of a node, in one place.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a new keeper may take to report ready. Default 10 s.
    pub keeper_start: Duration,
    /// How long a keeper's socket may take to answer. Default 3 s.
    pub keeper_connect: Duration,
    /// How long a tunnel dial to a relay may take. Default 5 s.
    pub tunnel_dial: Duration,
    /// First wait before a tunnel is dialed again. Default 100 ms.
    pub tunnel_backoff_min: Duration,
    /// Longest wait between tunnel dials. Default 5 s.
    pub tunnel_backoff_max: Duration,
    /// How long [`NodeHandle::shutdown`] waits for tasks and peers. Default 1 s.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            keeper_start: Duration::from_secs(10),
            keeper_connect: Duration::from_secs(3),
            tunnel_dial: Duration::from_secs(5),
            tunnel_backoff_min: Duration::from_millis(100),
            tunnel_backoff_max: Duration::from_secs(5),
            shutdown: Duration::from_secs(1),
        }
    }
}

/// Settings of a node daemon beyond its config file: what tests and the
/// chaos harness change to run a node in-process behind sockets they
/// control.
pub struct NodeBuilder {
    state_dir: PathBuf,
    cfg: NodeConfig,
    keeper: KeeperCommand,
    quic: QuicSocket,
    gossip_socket: Option<std::net::UdpSocket>,
    timeouts: Timeouts,
}

impl NodeBuilder {
    /// A node on `state_dir` with `cfg`, keepers started from beside this
    /// binary, sockets bound from the config, default timeouts.
    pub fn new(state_dir: &Path, cfg: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            state_dir: state_dir.to_path_buf(),
            cfg,
            keeper: KeeperCommand::beside_current_exe(),
            quic: QuicSocket::FromConfig,
            gossip_socket: None,
            timeouts: Timeouts::default(),
        }
    }

    /// How keepers are started.
    pub fn keeper(mut self, k: KeeperCommand) -> Self {
        self.keeper = k;
        self
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

    /// Every timeout.
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// Takes the state dir, re-adopts its sessions and starts serving.
    pub async fn start(self) -> anyhow::Result<NodeHandle> {
        start_with(self).await
    }
}

/// A running node daemon's shared state.
pub(crate) struct Node {
    state_dir: PathBuf,
    cfg: NodeConfig,
    node_id: NodeId,
    sessions: Mutex<SessionTable>,
    create_lock: tokio::sync::Mutex<()>,
    /// Fingerprint of the local client's certificate: full rights.
    owner: Fingerprint,
    /// Fingerprint of the certificate this node serves.
    fingerprint: Fingerprint,
    /// Accepts clients' TLS sessions routed through relays (in a fleet).
    e2e: Option<e2e::Acceptor>,
    /// Connections per identity and address, streams and bytes per
    /// connection.
    admission: Arc<Admission>,
    /// Woken on every change that gossip should announce.
    changed: tokio::sync::Notify,
    /// Splice and byte counters, for metrics.
    counters: Arc<Counters>,
    /// Creations refused by a limit of the config, for metrics.
    refusals: stats::Refusals,
    /// Relays this node holds tunnels to.
    tunnels: fleet_sync::Tunnels,
    keeper: KeeperCommand,
    timeouts: Timeouts,
    tasks: Tasks,
    /// Lifecycle events, for `tether events`.
    events: events::Bus,
}

/// Handle of a running daemon. Dropping it stops every task of the node;
/// keepers and their sessions go on.
pub struct NodeHandle {
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// The node's identity.
    pub node_id: NodeId,
    /// Gossip membership, when configured.
    pub gossip: Option<Arc<GossipHandle>>,
    endpoint: quinn::Endpoint,
    tasks: Tasks,
    timeouts: Timeouts,
    state_dir: PathBuf,
    _lock: store::StateLock,
}

impl NodeHandle {
    /// Resolves when the node stops by itself (one of its loops failed),
    /// with the reason.
    pub async fn failed(&self) -> String {
        self.tasks.stopped("node").await
    }

    /// Tasks of the node alive now.
    pub fn tasks_alive(&self) -> usize {
        self.tasks.len()
    }

    /// Stops serving and waits (to the shutdown timeout) for every task and
    /// for peers to learn of the close. Keepers and sessions go on.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"node stopping");
        self.tasks.drain(self.timeouts.shutdown).await;
        if let Some(g) = &self.gossip {
            g.shutdown().await;
        }
        let _ = std::fs::remove_file(store::runtime_path(&self.state_dir));
        let _ = std::fs::remove_file(store::socket_path(&self.state_dir));
        // Let peers learn of the close; do not wait out idle timeouts.
        let _ = tokio::time::timeout(self.timeouts.shutdown, self.endpoint.wait_idle()).await;
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.tasks.cancel();
        self.endpoint.close(0u32.into(), b"node stopping");
        if let Some(g) = &self.gossip {
            g.stop();
        }
    }
}

/// Takes the state dir, re-adopts its sessions and starts serving, with
/// the default settings.
pub async fn start(state_dir: &Path, cfg: NodeConfig) -> anyhow::Result<NodeHandle> {
    NodeBuilder::new(state_dir, cfg).start().await
}

async fn start_with(b: NodeBuilder) -> anyhow::Result<NodeHandle> {
    let state_dir = b.state_dir.as_path();
    store::create_private_dir(state_dir)?;
    let lock = match store::try_lock(state_dir)? {
        store::LockAttempt::Locked(l) => l,
        store::LockAttempt::Busy => {
            let who = store::read_json::<NodeRuntime>(&store::runtime_path(state_dir))
                .ok()
                .flatten()
                .map(|r| format!(" (pid {})", r.pid))
                .unwrap_or_default();
            bail!(
                "another tether node is already running on state dir {}{who}; stop it first, \
                 or pass another --state-dir",
                state_dir.display()
            );
        }
    };
    // A client that started this daemon made its log; only we read it.
    store::make_log_private(state_dir)?;
    // A state dir we cannot write fails here, before any client is told
    // that this node is ready.
    store::write_atomic(&state_dir.join(".probe"), b"ok")
        .context("the state dir is not writable")?;
    let _ = std::fs::remove_file(state_dir.join(".probe"));
    let id = NodeIdentity::load_or_create(state_dir)?;
    let fleet = match &b.cfg.tls_dir {
        Some(d) => Some(FleetTls::load(d)?),
        None => None,
    };
    // In a fleet, the node serves its fleet certificate and its ID derives
    // from that key; alone, from its own self-signed one.
    let (node_id, fingerprint, server_cfg, reset) = match &fleet {
        Some(f) => (
            NodeId::from_public_key(&f.public_key()?),
            f.fingerprint(),
            fleet::accept_config(f, vec![id.client.fingerprint()], |r| {
                matches!(r, FleetRole::Relay) || r.is_client()
            })?,
            tether_net::endpoint::endpoint_config(f.key.secret_der()),
        ),
        None => (
            id.node_id,
            id.node.fingerprint(),
            identity::server_config(&id)?,
            tether_net::endpoint::endpoint_config(id.node.key.secret_pkcs8_der()),
        ),
    };
    if !b.cfg.relays.is_empty() && fleet.is_none() {
        bail!("`relays` needs fleet credentials: set tls_dir in the config");
    }
    let tasks = Tasks::new();
    let admission = Admission::new(b.cfg.limits.clone());
    let node = Arc::new(Node {
        state_dir: state_dir.to_path_buf(),
        cfg: b.cfg,
        node_id,
        sessions: Mutex::new(SessionTable::default()),
        create_lock: tokio::sync::Mutex::new(()),
        owner: id.client.fingerprint(),
        fingerprint,
        e2e: fleet.as_ref().map(e2e::Acceptor::clients).transpose()?,
        admission,
        changed: tokio::sync::Notify::new(),
        counters: Arc::new(Counters::default()),
        refusals: Default::default(),
        tunnels: Default::default(),
        keeper: b.keeper,
        timeouts: b.timeouts,
        tasks: tasks.clone(),
        events: Default::default(),
    });
    let t0 = std::time::Instant::now();
    let adopted = node.adopt_all().await?;
    info!(
        sessions = adopted,
        ms = t0.elapsed().as_millis() as u64,
        "state dir scanned"
    );
    node.prune();

    let endpoint = b.quic.endpoint(node.cfg.listen, Some(server_cfg), reset)?;
    let addr = endpoint.local_addr()?;
    let gossip = match &node.cfg.gossip {
        Some(g) => {
            let name = node.name();
            let record = NodeRecord {
                id: node_id.to_string(),
                name: name.clone(),
                role: Role::Node,
                quic: node.cfg.advertised().map(|a| a.to_string()),
                fp: fingerprint.to_string(),
                ver: env!("CARGO_PKG_VERSION").to_string(),
                relays: Vec::new(),
            };
            let mut settings = g.settings(node_id.to_string())?;
            settings.socket = b.gossip_socket;
            let h = Arc::new(GossipHandle::start(settings, &record).await?);
            info!(node = %node_id, %name, gossip = %g.listen, "joined the cluster");
            tasks.supervise("gossip sync", node.clone().gossip_sync(h.clone()));
            Some((h, record))
        }
        None => None,
    };
    // The fleet CA's revocation list: a new crl.pem in the tls_dir, and
    // newer ones from gossip, put in force at once.
    if let Some(f) = &fleet {
        let every = node
            .cfg
            .gossip
            .as_ref()
            .map_or(REVOCATION_POLL, |g| g.interval());
        let g = gossip.as_ref().map(|(h, _)| h.clone());
        tasks.supervise(
            "revocations",
            revoke::spread(f.revocations.clone(), g, every),
        );
    }
    // Tunnels: outbound connections to relays, for a node that cannot
    // accept inbound ones.
    if let Some(f) = &fleet {
        let dial = fleet::relay_dial_config(f)?;
        for addr in node.cfg.relays.clone() {
            let work = node.clone().keep_tunnel(
                endpoint.clone(),
                dial.clone(),
                addr,
                gossip.clone(),
                f.revocations.clone(),
            );
            tasks.supervise("tunnel", work);
        }
    }
    let gossip = gossip.map(|(h, _)| h);
    let revocations = fleet.as_ref().map(|f| f.revocations.clone());
    if let Some(addr) = node.cfg.metrics_listen {
        let (n, g, rev) = (node.clone(), gossip.clone(), revocations.clone());
        let render: Render = Arc::new(move || {
            let (n, g) = (n.clone(), g.clone());
            let rev = rev.clone();
            Box::pin(async move {
                let mut text = n.metrics(g.as_deref());
                if let Some(r) = rev {
                    let mut x = metrics::Exposition::default();
                    x.revocations(&r);
                    text.push_str(&x.finish());
                }
                text
            })
        });
        let listener = metrics::bind(addr).await?;
        tasks.supervise(
            "metrics",
            metrics::serve_on(listener, render, tasks.clone()),
        );
    }
    store::write_json(
        &store::runtime_path(state_dir),
        &NodeRuntime {
            pid: std::process::id(),
            addr,
            node_id,
            fingerprint: fingerprint.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )?;
    // The local fast path: bound before node.json names this daemon, so a
    // client that finds the daemon finds its socket too.
    let local = tether_net::runtime::bind_private_socket(&store::socket_path(state_dir))?;
    let n = node.clone();
    tasks.supervise("local accept", async move {
        n.serve_local(local).await;
        anyhow::bail!("the unix socket closed")
    });
    let (ep, n) = (endpoint.clone(), node.clone());
    tasks.supervise("accept", async move {
        while let Some(incoming) = ep.accept().await {
            let (node, rev) = (n.clone(), revocations.clone());
            n.tasks.spawn(async move {
                match incoming.await {
                    Ok(conn) => {
                        // Cut when a CRL revokes the peer (a relay, a client).
                        let served = node.serve_conn(conn.clone());
                        let r = match &rev {
                            Some(rev) => rev.guard(&conn, served).await,
                            None => served.await,
                        };
                        if let Err(err) = r {
                            tracing::debug!(%err, "connection ended");
                        }
                    }
                    Err(err) => tracing::debug!(%err, "handshake failed"),
                }
            });
        }
        anyhow::bail!("the QUIC endpoint closed")
    });
    Ok(NodeHandle {
        addr,
        node_id,
        gossip,
        endpoint,
        tasks,
        timeouts: b.timeouts,
        state_dir: state_dir.to_path_buf(),
        _lock: lock,
    })
}

impl Node {
    fn insert(&self, e: Arc<Entry>) {
        self.sessions.lock().expect("sessions lock").insert(e);
        self.changed.notify_one();
    }

    fn name(&self) -> String {
        self.cfg
            .name
            .clone()
            .unwrap_or_else(|| self.node_id.to_string())
    }

    /// Removes the oldest ended sessions beyond the retention limit.
    fn prune(&self) {
        let doomed = self
            .sessions
            .lock()
            .expect("sessions lock")
            .to_prune(self.cfg.retain_exited);
        for (id, dir) in doomed {
            info!(session = %id, "retention limit reached; removing");
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                warn!(session = %id, %err, "cannot remove");
                continue;
            }
            self.sessions.lock().expect("sessions lock").remove(&id);
            self.changed.notify_one();
        }
    }
}
