//! The node daemon: owns the state dir, starts and re-adopts keepers, and
//! serves clients over QUIC.
//!
//! # Protocol flow (one QUIC bidirectional stream per request)
//! 1. client: `Hello`, `Request`; node: `Hello`, then the answer.
//! 2. `Attach` on a running session: the node opens the keeper's socket,
//!    sends it the same request and splices the two streams; the keeper
//!    answers and checks every frame. On an ended session the node replays
//!    the ring file itself.
//! 3. Everything else: one answer, then the stream closes.
//!
//! The daemon holds no session state that it cannot rebuild from the state
//! dir: after a crash, a new daemon scans `sessions/`, reconnects to every
//! live keeper and reads the exit records of the sessions that ended while
//! it was down.

use crate::config::NodeConfig;
use tether_net::conn::{accept_request, FrameReader, FrameWriter, StreamError};
use tether_net::gossip::{GossipHandle, GossipSettings};
use tether_net::tls::fleet::{self, FleetRole, FleetTls};
use tether_net::tls::local::{self as identity, NodeIdentity};

use crate::ring::{Ring, MAX_RING_SIZE, MIN_RING_SIZE};
use crate::store::{self, ExitRecord, KeeperRecord, NodeRuntime, SessionMeta, SessionPaths};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_net::metrics::{self, Counted, Counters, Exposition, Render};
use tether_proto::frame::{encode_output_header, MAX_OUTPUT_CHUNK};
use tether_proto::gossip::{NodeRecord, Role, SessionRecord};
use tether_proto::{
    AttachSpec, CreateSpec, ErrorKind, NodeId, Offset, Principal, Reply, Request, SessionId,
    SessionInfo, SessionState, StartAt,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tracing::{debug, error, info, instrument, warn};

const AGENT: &str = concat!("tether-node/", env!("CARGO_PKG_VERSION"));
/// How long a new keeper may take to report ready.
const KEEPER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon waits for a keeper's socket to answer.
const KEEPER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest accepted session name.
pub const MAX_NAME_LEN: usize = 64;

/// What the daemon knows of a session's life.
#[derive(Debug, Clone)]
enum Life {
    Running,
    Exited(ExitRecord),
    Lost,
}

struct Entry {
    meta: SessionMeta,
    paths: SessionPaths,
    life: watch::Sender<Life>,
    /// Clients attached through this daemon now.
    clients: std::sync::atomic::AtomicU32,
}

/// A running node daemon.
pub struct Node {
    state_dir: PathBuf,
    cfg: NodeConfig,
    node_id: NodeId,
    sessions: Mutex<BTreeMap<SessionId, Arc<Entry>>>,
    create_lock: tokio::sync::Mutex<()>,
    /// Fingerprint of the local client's certificate: full rights.
    owner: tether_net::tls::Fingerprint,
    /// Woken on every change that gossip should announce.
    changed: tokio::sync::Notify,
    /// Splice and byte counters, for metrics.
    counters: Arc<Counters>,
    /// Relays this node holds tunnels to.
    tunnels: Mutex<std::collections::BTreeSet<String>>,
}

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

/// A failure answered to the client as `Reply::Error`.
#[derive(Debug)]
struct Refusal(ErrorKind, String);

impl<E: Into<anyhow::Error>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Refusal(ErrorKind::Internal, format!("{:#}", e.into()))
    }
}

fn refuse<T>(kind: ErrorKind, msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(kind, msg.into()))
}

/// Handle of a daemon started with [`start`].
pub struct NodeHandle {
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// The node's identity.
    pub node_id: NodeId,
    /// Gossip membership, when configured.
    pub gossip: Option<Arc<GossipHandle>>,
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
    state_dir: PathBuf,
    _lock: store::StateLock,
}

impl NodeHandle {
    /// Stops serving. Keepers and their sessions go on.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"node stopping");
        self.task.abort();
        if let Some(g) = &self.gossip {
            g.stop();
        }
        let _ = std::fs::remove_file(store::runtime_path(&self.state_dir));
        // Let peers learn of the close; do not wait out idle timeouts.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Takes the state dir, re-adopts its sessions and starts serving.
pub async fn start(state_dir: &Path, cfg: NodeConfig) -> anyhow::Result<NodeHandle> {
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
    // A state dir we cannot write fails here, before any client is told
    // that this node is ready.
    store::write_atomic(&state_dir.join(".probe"), b"ok")
        .context("the state dir is not writable")?;
    let _ = std::fs::remove_file(state_dir.join(".probe"));
    let id = NodeIdentity::load_or_create(state_dir)?;
    let fleet = match &cfg.tls_dir {
        Some(d) => Some(FleetTls::load(d)?),
        None => None,
    };
    // In a fleet, the node serves its fleet certificate and its ID derives
    // from that key; alone, from its own self-signed one.
    let (node_id, fingerprint, server_cfg) = match &fleet {
        Some(f) => (
            NodeId::from_public_key(&f.public_key()?),
            f.fingerprint(),
            fleet::accept_config(f, vec![id.client.fingerprint()], |r| {
                matches!(r, FleetRole::Relay | FleetRole::Client { .. })
            })?,
        ),
        None => (
            id.node_id,
            id.node.fingerprint(),
            identity::server_config(&id)?,
        ),
    };
    let node = Arc::new(Node {
        state_dir: state_dir.to_path_buf(),
        cfg,
        node_id,
        sessions: Mutex::new(BTreeMap::new()),
        create_lock: tokio::sync::Mutex::new(()),
        owner: id.client.fingerprint(),
        changed: tokio::sync::Notify::new(),
        counters: Arc::new(Counters::default()),
        tunnels: Mutex::new(std::collections::BTreeSet::new()),
    });
    let t0 = std::time::Instant::now();
    let adopted = node.clone().adopt_all().await?;
    info!(
        sessions = adopted,
        ms = t0.elapsed().as_millis() as u64,
        "state dir scanned"
    );
    node.prune();

    let endpoint = tether_net::endpoint::make_endpoint(node.cfg.listen, Some(server_cfg))?;
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
            let settings = GossipSettings {
                member_id: node_id.to_string(),
                cluster_id: g.cluster_id.clone(),
                listen: g.listen,
                advertise: g.advertise.unwrap_or(g.listen),
                seeds: g.seeds.clone(),
                interval: g.interval(),
                secret: g.secret()?,
            };
            let h = Arc::new(GossipHandle::start(settings, &record).await?);
            info!(node = %node_id, %name, gossip = %g.listen, "joined the cluster");
            tokio::spawn(gossip_sync(node.clone(), h.clone()));
            Some((h, record))
        }
        None => None,
    };
    // Tunnels: outbound connections to relays, for a node that cannot
    // accept inbound ones.
    if !node.cfg.relays.is_empty() {
        let Some(f) = &fleet else {
            bail!("`relays` needs fleet credentials: set tls_dir in the config");
        };
        let dial = fleet::relay_dial_config(f)?;
        for addr in node.cfg.relays.clone() {
            tokio::spawn(keep_tunnel(
                node.clone(),
                endpoint.clone(),
                dial.clone(),
                addr,
                gossip.clone(),
            ));
        }
    }
    let gossip = gossip.map(|(h, _)| h);
    if let Some(addr) = node.cfg.metrics_listen {
        let (n, g) = (node.clone(), gossip.clone());
        let render: Render = Arc::new(move || {
            let (n, g) = (n.clone(), g.clone());
            Box::pin(async move { n.metrics(g.as_deref()) })
        });
        metrics::serve(addr, render).await?;
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
    let ep = endpoint.clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(err) = node.serve_connection(incoming).await {
                    debug!(%err, "connection ended");
                }
            });
        }
    });
    Ok(NodeHandle {
        addr,
        node_id,
        gossip,
        endpoint,
        task,
        state_dir: state_dir.to_path_buf(),
        _lock: lock,
    })
}

impl Node {
    async fn adopt_all(self: Arc<Self>) -> anyhow::Result<usize> {
        let dir = store::sessions_dir(&self.state_dir);
        store::create_private_dir(&dir)?;
        let mut set = tokio::task::JoinSet::new();
        for ent in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let ent = ent?;
            let Some(id) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<SessionId>().ok())
            else {
                continue;
            };
            let node = self.clone();
            set.spawn(async move { node.adopt(id).await });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            if r? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-adopts one session found in the state dir.
    async fn adopt(self: Arc<Self>, id: SessionId) -> bool {
        let paths = SessionPaths::new(&self.state_dir, id);
        let meta: SessionMeta = match store::read_json(&paths.meta()) {
            Ok(Some(m)) => m,
            Ok(None) => {
                warn!(session = %id, "no meta.json; skipping (a creation that did not finish?)");
                return false;
            }
            Err(err) => {
                error!(session = %id, err = format!("{err:#}"), "skipping session");
                return false;
            }
        };
        let life = match store::read_json::<ExitRecord>(&paths.exit()) {
            Ok(Some(rec)) => Life::Exited(rec),
            _ => match watch_keeper(&paths).await {
                Ok(conn) => {
                    let entry = self.insert(meta, paths, Life::Running);
                    tokio::spawn(keep_watching(self.clone(), entry, conn));
                    return true;
                }
                Err(err) => {
                    debug!(session = %id, %err, "keeper not reachable");
                    Life::Lost
                }
            },
        };
        self.insert(meta, paths, life);
        true
    }

    fn insert(&self, meta: SessionMeta, paths: SessionPaths, life: Life) -> Arc<Entry> {
        let (tx, _) = watch::channel(life);
        let e = Arc::new(Entry {
            meta,
            paths,
            life: tx,
            clients: std::sync::atomic::AtomicU32::new(0),
        });
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(e.meta.id, e.clone());
        self.changed.notify_one();
        e
    }

    /// The metrics text.
    fn metrics(&self, g: Option<&GossipHandle>) -> String {
        let (mut running, mut exited, mut lost) = (0, 0, 0);
        for e in self.sessions.lock().expect("sessions lock").values() {
            match &*e.life.borrow() {
                Life::Running => running += 1,
                Life::Exited(_) => exited += 1,
                Life::Lost => lost += 1,
            }
        }
        let mut x = Exposition::default();
        x.labelled(
            "tether_sessions",
            "gauge",
            "Sessions of this node, by state.",
            &[
                ("state", "running", running),
                ("state", "exited", exited),
                ("state", "lost", lost),
            ],
        );
        x.metric(
            "tether_attached_clients",
            "gauge",
            "Clients attached now (attach and tail streams).",
            self.counters
                .splices_active
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        x.counters(&self.counters);
        x.metric(
            "tether_tunnels_up",
            "gauge",
            "Relays this node holds a tunnel to.",
            self.tunnels.lock().expect("tunnels lock").len() as u64,
        );
        if let Some(g) = g {
            x.gossip(&g.stats);
        }
        x.finish()
    }

    fn name(&self) -> String {
        self.cfg
            .name
            .clone()
            .unwrap_or_else(|| self.node_id.to_string())
    }

    /// Removes the oldest ended sessions beyond the retention limit.
    fn prune(&self) {
        let mut ended: Vec<(u64, SessionId, PathBuf)> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter_map(|e| match &*e.life.borrow() {
                Life::Running => None,
                Life::Exited(r) => Some((r.exited_at_ms, e.meta.id, e.paths.dir.clone())),
                Life::Lost => Some((e.meta.created_at_ms, e.meta.id, e.paths.dir.clone())),
            })
            .collect();
        if ended.len() <= self.cfg.retain_exited {
            return;
        }
        ended.sort();
        let excess = ended.len() - self.cfg.retain_exited;
        for (_, id, dir) in ended.into_iter().take(excess) {
            info!(session = %id, "retention limit reached; removing");
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                warn!(session = %id, %err, "cannot remove");
                continue;
            }
            self.sessions.lock().expect("sessions lock").remove(&id);
            self.changed.notify_one();
        }
    }

    async fn serve_connection(self: Arc<Self>, incoming: quinn::Incoming) -> anyhow::Result<()> {
        let conn = incoming.await?;
        self.serve_conn(conn).await
    }

    /// Serves the streams a peer opens on a connection, inbound or a
    /// tunnel this node opened to a relay.
    async fn serve_conn(self: Arc<Self>, conn: quinn::Connection) -> anyhow::Result<()> {
        let peer = conn.remote_address();
        let access = self.access_of(&conn);
        debug!(%peer, ?access, "connection");
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let node = self.clone();
            let access = access.clone();
            tokio::spawn(async move {
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
        match fleet::peer_of_connection(conn) {
            Some(p) => match p.role {
                FleetRole::Relay => Access::Relay(p.name),
                FleetRole::Client { read_only } => Access::Client(Principal {
                    name: p.name,
                    read_only,
                }),
                // The acceptor admits no other role.
                FleetRole::Node => Access::Client(Principal {
                    name: p.name,
                    read_only: true,
                }),
            },
            // Unreachable: the acceptor admits only pinned keys and fleet
            // roles. Should it happen, grant the least.
            None => Access::Client(Principal {
                name: "unknown".into(),
                read_only: true,
            }),
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
                wr.control(&Reply::error(
                    ErrorKind::ReadOnly,
                    format!("client {who} is read-only: it can list, tail and watch, not create, type, kill or remove"),
                ))
                .await?;
                let _ = wr.get_mut().finish();
                return Ok(());
            }
            other => other,
        };
        let res = match req {
            Request::Attach(spec) => return self.attach(spec, rd, wr).await,
            Request::Wait { target } => self.wait(&target).await,
            other => self.answer(other).await,
        };
        let reply = res.unwrap_or_else(|Refusal(kind, message)| Reply::Error { kind, message });
        wr.control(&reply).await?;
        let _ = wr.get_mut().finish();
        // Keep the stream until the client has read the reply.
        let _ = rd.next().await;
        Ok(())
    }

    async fn answer(self: &Arc<Self>, req: Request) -> Result<Reply, Refusal> {
        match req {
            Request::List => {
                // From the daemon's own state and the ring headers, without
                // asking every keeper: `info` gives one session's live
                // figures.
                let entries: Vec<Arc<Entry>> = self
                    .sessions
                    .lock()
                    .expect("sessions lock")
                    .values()
                    .cloned()
                    .collect();
                let mut sessions: Vec<SessionInfo> =
                    entries.iter().map(|e| static_info(e)).collect();
                sessions.sort_by_key(|s| (s.created_at_ms, s.id));
                Ok(Reply::Sessions { sessions })
            }
            Request::Nodes => Ok(Reply::Nodes {
                nodes: vec![tether_proto::MemberInfo {
                    name: self.name(),
                    id: self.node_id.to_string(),
                    role: "node".into(),
                    live: true,
                    quic: self.cfg.advertised().map(|a| a.to_string()),
                    sessions: self.sessions.lock().expect("sessions lock").len() as u32,
                    dead_since_ms: None,
                }],
            }),
            Request::Info { target } => {
                let e = self.resolve(&target)?;
                Ok(Reply::Session {
                    session: info(&e).await,
                })
            }
            Request::Create(spec) => self.create(spec).await,
            Request::Send { target, data } => {
                let e = self.resolve_running(&target, "send input to")?;
                keeper_call(
                    &e,
                    Request::Send {
                        target: e.meta.id.to_string(),
                        data,
                    },
                )
                .await
            }
            Request::Kill { target, signal } => {
                let e = self.resolve_running(&target, "signal")?;
                keeper_call(
                    &e,
                    Request::Kill {
                        target: e.meta.id.to_string(),
                        signal,
                    },
                )
                .await
            }
            Request::Remove { target } => {
                let e = self.resolve(&target)?;
                if matches!(*e.life.borrow(), Life::Running) {
                    return refuse(
                        ErrorKind::BadRequest,
                        format!(
                            "session {} is still running; stop it with `tether kill {}` first",
                            e.label(),
                            e.meta.id.short()
                        ),
                    );
                }
                std::fs::remove_dir_all(&e.paths.dir)
                    .with_context(|| format!("removing {}", e.paths.dir.display()))?;
                self.sessions
                    .lock()
                    .expect("sessions lock")
                    .remove(&e.meta.id);
                self.changed.notify_one();
                info!(session = %e.meta.id, "removed");
                Ok(Reply::Ok)
            }
            other => refuse(
                ErrorKind::BadRequest,
                format!("{other:?} is not a request a node answers"),
            ),
        }
    }

    /// Finds a session by ID, unique ID prefix, or name.
    fn resolve(&self, target: &str) -> Result<Arc<Entry>, Refusal> {
        let sessions = self.sessions.lock().expect("sessions lock");
        if let Ok(id) = target.parse::<SessionId>() {
            if let Some(e) = sessions.get(&id) {
                return Ok(e.clone());
            }
        }
        if let Some(e) = sessions
            .values()
            .find(|e| e.meta.name.as_deref() == Some(target))
        {
            return Ok(e.clone());
        }
        let lower = target.to_ascii_lowercase();
        let matches: Vec<&Arc<Entry>> =
            if lower.is_empty() || tether_proto::ids::validate_prefix(&lower).is_err() {
                Vec::new()
            } else {
                sessions
                    .values()
                    .filter(|e| e.meta.id.to_string().starts_with(&lower))
                    .collect()
            };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => refuse(
                ErrorKind::NotFound,
                format!("no session matches '{target}'; `tether ls` lists the sessions"),
            ),
            many => refuse(
                ErrorKind::Ambiguous,
                format!(
                    "'{target}' matches {} sessions ({}); give more characters of the ID",
                    many.len(),
                    many.iter()
                        .take(5)
                        .map(|e| e.meta.id.short())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    fn resolve_running(&self, target: &str, verb: &str) -> Result<Arc<Entry>, Refusal> {
        let e = self.resolve(target)?;
        let life = e.life.borrow().clone();
        match life {
            Life::Running => Ok(e),
            Life::Exited(r) => refuse(
                ErrorKind::BadRequest,
                format!(
                    "cannot {verb} session {}: it exited (code {})",
                    e.label(),
                    r.status.shell_code()
                ),
            ),
            Life::Lost => refuse(
                ErrorKind::BadRequest,
                format!(
                    "cannot {verb} session {}: its keeper is gone (lost); its output is still \
                     readable with `tether tail`",
                    e.label()
                ),
            ),
        }
    }

    async fn create(self: &Arc<Self>, spec: CreateSpec) -> Result<Reply, Refusal> {
        let _guard = self.create_lock.lock().await;
        if let Some(name) = &spec.name {
            validate_name(name)?;
            let taken = self
                .sessions
                .lock()
                .expect("sessions lock")
                .values()
                .find(|e| e.meta.name.as_deref() == Some(name))
                .map(|e| (e.meta.id, e.life.borrow().clone()));
            if let Some((id, life)) = taken {
                let state = match life {
                    Life::Running => "running",
                    Life::Exited(_) => "exited",
                    Life::Lost => "lost",
                };
                return refuse(
                    ErrorKind::NameTaken,
                    format!(
                        "the name '{name}' is taken by session {} ({state}); pick another name{}",
                        id.short(),
                        if state == "running" {
                            String::new()
                        } else {
                            format!(" or free it with `tether rm {name}`")
                        }
                    ),
                );
            }
        }
        let ring_size = spec.ring_size.unwrap_or(self.cfg.ring_size);
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&ring_size) {
            return refuse(
                ErrorKind::BadRequest,
                format!("ring size {ring_size} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes"),
            );
        }
        let cwd = match spec.cwd {
            Some(c) => c,
            None => std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        };
        if !Path::new(&cwd).is_dir() {
            return refuse(
                ErrorKind::BadRequest,
                format!("working directory {cwd} does not exist; pass an existing --cwd"),
            );
        }
        let command = if spec.command.is_empty() {
            self.cfg.shell()
        } else {
            spec.command
        };
        let id = SessionId::generate(self.node_id);
        let paths = SessionPaths::new(&self.state_dir, id);
        let meta = SessionMeta {
            id,
            name: spec.name,
            node: self.node_id,
            command,
            launcher: self.cfg.launcher.clone(),
            cwd,
            env: spec.env,
            created_at_ms: store::now_ms(),
            ring_size,
            size: spec.size.unwrap_or_default(),
        };
        store::create_private_dir(&paths.dir)?;
        if let Err(e) = store::write_json(&paths.meta(), &meta) {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e.into());
        }
        if let Err(e) = spawn_keeper(&self.state_dir, &paths, id).await {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return refuse(ErrorKind::BadRequest, format!("{e:#}"));
        }
        let entry = match watch_keeper(&paths).await {
            Ok(conn) => {
                let entry = self.insert(meta, paths, Life::Running);
                tokio::spawn(keep_watching(self.clone(), entry.clone(), conn));
                entry
            }
            // A process that ends at once may take its keeper with it
            // before we connect; its exit record tells.
            Err(err) => match store::read_json::<ExitRecord>(&paths.exit()) {
                Ok(Some(rec)) => {
                    let e = self.insert(meta, paths, Life::Exited(rec));
                    self.prune();
                    e
                }
                _ => {
                    warn!(session = %id, %err, "new keeper vanished");
                    self.insert(meta, paths, Life::Lost)
                }
            },
        };
        info!(session = %id, name = ?entry.meta.name, command = ?entry.meta.command, "created");
        Ok(Reply::Session {
            session: info(&entry).await,
        })
    }

    async fn wait(&self, target: &str) -> Result<Reply, Refusal> {
        let e = self.resolve(target)?;
        let mut rx = e.life.subscribe();
        let life = rx
            .wait_for(|l| !matches!(l, Life::Running))
            .await
            .map_err(anyhow::Error::from)?
            .clone();
        Ok(match life {
            Life::Exited(r) => Reply::Exited {
                end: r.end,
                status: r.status,
            },
            _ => Reply::Lost {
                end: static_ring(&e).1,
            },
        })
    }

    async fn attach(
        self: Arc<Self>,
        mut spec: AttachSpec,
        rd: Reader,
        mut wr: Writer,
    ) -> Result<(), StreamError> {
        let e = match self.resolve(&spec.target) {
            Ok(e) => e,
            Err(Refusal(kind, message)) => {
                wr.control(&Reply::Error { kind, message }).await?;
                let _ = wr.get_mut().finish();
                return Ok(());
            }
        };
        spec.target = e.meta.id.to_string();
        if matches!(*e.life.borrow(), Life::Running) {
            match connect_keeper(&e.paths).await {
                Ok((krd, mut kwr)) => {
                    kwr.control(&Request::Attach(spec)).await?;
                    let _live = self.counters.splice();
                    e.clients.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _attached = ClientCount(&e.clients);
                    let out = Counted::new(wr.into_inner(), self.counters.clone(), true);
                    let inn = Counted::new(kwr.into_inner(), self.counters.clone(), false);
                    tether_net::conn::splice(rd, out, krd, inn).await?;
                    return Ok(());
                }
                Err(err) => {
                    debug!(%err, "keeper gone during attach; replaying the ring file");
                }
            }
        }
        replay_ended(&e, &spec, &mut wr).await?;
        let _ = wr.get_mut().finish();
        let _ = rd;
        Ok(())
    }
}

impl Entry {
    fn label(&self) -> String {
        match &self.meta.name {
            Some(n) => format!("{n} ({})", self.meta.id.short()),
            None => self.meta.id.short(),
        }
    }
}

fn validate_name(name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        refuse(
            ErrorKind::BadRequest,
            format!(
                "'{name}' is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        )
    }
}

/// Start of the ring and end of output of an ended session, from its files.
fn static_ring(e: &Entry) -> (Offset, Offset) {
    match Ring::open(&e.paths.ring()) {
        Ok(r) => (r.start(), r.end()),
        Err(_) => match &*e.life.borrow() {
            Life::Exited(r) => (r.end, r.end),
            _ => (Offset(0), Offset(0)),
        },
    }
}

/// A session's info: from its keeper while it runs, else from its files.
async fn info(e: &Entry) -> SessionInfo {
    if matches!(*e.life.borrow(), Life::Running) {
        if let Ok(Ok(s)) =
            tokio::time::timeout(KEEPER_CONNECT_TIMEOUT, keeper_status(&e.paths)).await
        {
            return s;
        }
    }
    static_info(e)
}

fn static_info(e: &Entry) -> SessionInfo {
    let life = e.life.borrow().clone();
    let (start, end) = crate::ring::peek(&e.paths.ring()).unwrap_or_else(|| static_ring(e));
    let (state, exit, exited_at) = match &life {
        Life::Running => (SessionState::Running, None, None),
        Life::Exited(r) => (SessionState::Exited, Some(r.status), Some(r.exited_at_ms)),
        Life::Lost => (SessionState::Lost, None, None),
    };
    let pid = store::read_json::<KeeperRecord>(&e.paths.keeper())
        .ok()
        .flatten()
        .filter(|_| state == SessionState::Running)
        .map(|k| k.pid);
    SessionInfo {
        id: e.meta.id,
        name: e.meta.name.clone(),
        node: e.meta.node,
        command: e.meta.command.clone(),
        cwd: e.meta.cwd.clone(),
        created_at_ms: e.meta.created_at_ms,
        state,
        exit,
        exited_at_ms: exited_at,
        size: e.meta.size,
        start_offset: start,
        end_offset: end,
        ring_size: e.meta.ring_size,
        clients: e.clients.load(std::sync::atomic::Ordering::Relaxed),
        pid,
        node_name: None,
        unreachable: None,
    }
}

type KeeperConn = (
    FrameReader<tokio::net::unix::OwnedReadHalf>,
    FrameWriter<tokio::net::unix::OwnedWriteHalf>,
);

async fn connect_keeper(paths: &SessionPaths) -> Result<KeeperConn, StreamError> {
    let s = tokio::time::timeout(KEEPER_CONNECT_TIMEOUT, UnixStream::connect(paths.socket()))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "keeper does not answer")
        })??;
    let (r, w) = s.into_split();
    let mut rd = FrameReader::new(r);
    let mut wr = FrameWriter::new(w);
    wr.hello(AGENT).await?;
    rd.hello().await?;
    Ok((rd, wr))
}

async fn keeper_status(paths: &SessionPaths) -> Result<SessionInfo, StreamError> {
    let (mut rd, mut wr) = connect_keeper(paths).await?;
    wr.control(&Request::Status).await?;
    match rd.control::<Reply>().await? {
        Reply::Session { session } => Ok(session),
        _ => Err(StreamError::Unexpected("reply")),
    }
}

/// Opens the stream on which a keeper reports its process's exit.
async fn watch_keeper(paths: &SessionPaths) -> Result<KeeperConn, StreamError> {
    let (mut rd, mut wr) = connect_keeper(paths).await?;
    wr.control(&Request::Status).await?;
    match rd.control::<Reply>().await? {
        Reply::Session { .. } => Ok((rd, wr)),
        _ => Err(StreamError::Unexpected("reply")),
    }
}

/// Waits on a keeper's status stream for the exit, or the keeper's death.
async fn keep_watching(node: Arc<Node>, e: Arc<Entry>, conn: KeeperConn) {
    let (mut rd, _wr) = conn;
    let r = rd.control::<Reply>().await;
    let life = match store::read_json::<ExitRecord>(&e.paths.exit()) {
        Ok(Some(rec)) => Life::Exited(rec),
        _ => match r {
            Ok(Reply::Exited { end, status }) => Life::Exited(ExitRecord {
                status,
                end,
                exited_at_ms: store::now_ms(),
            }),
            _ => Life::Lost,
        },
    };
    match &life {
        Life::Exited(r) => {
            info!(session = %e.meta.id, code = ?r.status.code, signal = ?r.status.signal, "session exited")
        }
        _ => warn!(session = %e.meta.id, "keeper vanished; session lost"),
    }
    e.life.send_replace(life);
    node.changed.notify_one();
    node.prune();
}

async fn keeper_call(e: &Entry, req: Request) -> Result<Reply, Refusal> {
    let (mut rd, mut wr) = connect_keeper(&e.paths).await.map_err(|err| {
        Refusal(
            ErrorKind::Internal,
            format!("keeper of {} unreachable: {err}", e.label()),
        )
    })?;
    wr.control(&req).await.map_err(anyhow::Error::from)?;
    Ok(rd.control::<Reply>().await.map_err(anyhow::Error::from)?)
}

async fn spawn_keeper(state_dir: &Path, paths: &SessionPaths, id: SessionId) -> anyhow::Result<()> {
    // The small `tether-keeper` beside this binary when there is one (it
    // carries a fraction of the memory), else this binary's hidden verb.
    // After an upgrade replaced the binary on disk, the path names the new
    // one; if it was removed, /proc/self/exe still runs this daemon's own.
    let me = match std::env::current_exe() {
        Ok(p) if p.exists() => p,
        _ => PathBuf::from("/proc/self/exe"),
    };
    let small = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tether-keeper")))
        .filter(|p| p.exists());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log())
        .with_context(|| format!("opening {}", paths.log().display()))?;
    let mut cmd = match small {
        Some(k) => tokio::process::Command::new(k),
        None => {
            let mut c = tokio::process::Command::new(me);
            c.arg("keeper");
            c
        }
    };
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("--session")
        .arg(id.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe. The keeper leaves the daemon's
    // session and process group, so a signal to the daemon's group (Ctrl-C
    // in its terminal, systemd stopping it) does not reach the keeper.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the keeper")?;
    let stdout = child.stdout.take().context("keeper stdout")?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        KEEPER_START_TIMEOUT,
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    // Reap the keeper when it ends, as long as this daemon lives.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    match read {
        Err(_) => bail!(
            "the keeper did not start within {KEEPER_START_TIMEOUT:?}; see {}",
            paths.log().display()
        ),
        Ok(Err(e)) => Err(e).context("reading the keeper's first line"),
        Ok(Ok(_)) if line.starts_with("ready") => Ok(()),
        Ok(Ok(_)) => {
            let msg = line.trim().strip_prefix("error: ").unwrap_or(line.trim());
            if msg.is_empty() {
                bail!("the keeper exited at start; see {}", paths.log().display());
            }
            bail!("{msg}")
        }
    }
}

/// Replays an ended session's ring file to a client.
async fn replay_ended(e: &Entry, spec: &AttachSpec, wr: &mut Writer) -> Result<(), StreamError> {
    let life = match store::read_json::<ExitRecord>(&e.paths.exit()) {
        Ok(Some(r)) => Life::Exited(r),
        _ => Life::Lost,
    };
    if !matches!(*e.life.borrow(), Life::Exited(_)) {
        e.life.send_replace(life.clone());
    }
    let ring = Ring::open(&e.paths.ring()).ok();
    let (rstart, rend) = ring
        .as_ref()
        .map(|r| (r.start(), r.end()))
        .unwrap_or_default();
    let start = match spec.start {
        StartAt::Oldest => rstart,
        StartAt::End => rend,
        StartAt::Offset(o) => o.min(rend),
    };
    wr.control(&Reply::Attached {
        session: static_info(e),
        start,
    })
    .await?;
    let mut cursor = start;
    if let Some(r) = &ring {
        let mut buf = Vec::new();
        loop {
            let (plan, bytes) = r.read(cursor, MAX_OUTPUT_CHUNK);
            if let Some(resume) = plan.gap_to {
                wr.control(&Reply::Gap {
                    missed: cursor,
                    resume: Offset(resume),
                })
                .await?;
                cursor = Offset(resume);
            }
            if bytes.is_empty() {
                break;
            }
            buf.clear();
            encode_output_header(&mut buf, cursor, bytes.len());
            buf.extend_from_slice(bytes);
            wr.send_raw(&buf).await?;
            cursor = Offset(cursor.0 + bytes.len() as u64);
        }
    }
    let last = match life {
        Life::Exited(r) => Reply::Exited {
            end: cursor.max(r.end),
            status: r.status,
        },
        _ => Reply::Lost { end: cursor },
    };
    wr.control(&last).await?;
    Ok(())
}

/// Keeps this node's gossip keys equal to its sessions.
async fn gossip_sync(node: Arc<Node>, g: Arc<GossipHandle>) {
    let mut announced: BTreeMap<SessionId, SessionRecord> = BTreeMap::new();
    loop {
        let now: BTreeMap<SessionId, SessionRecord> = node
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .map(|e| {
                let st = match &*e.life.borrow() {
                    Life::Running => "running",
                    Life::Exited(_) => "exited",
                    Life::Lost => "lost",
                };
                (
                    e.meta.id,
                    SessionRecord {
                        n: e.meta.name.clone(),
                        st: st.to_string(),
                        c: tether_proto::gossip::short_command(&e.meta.command),
                        t: e.meta.created_at_ms / 1000,
                    },
                )
            })
            .collect();
        for (id, rec) in &now {
            if announced.get(id) != Some(rec) {
                g.set_session(id, rec).await;
            }
        }
        for id in announced.keys() {
            if !now.contains_key(id) {
                g.remove_session(id).await;
            }
        }
        announced = now;
        tokio::select! {
            _ = node.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Keeps a tunnel to the relay at `addr`: an outbound QUIC connection on
/// which the relay opens the streams of its clients. Reconnects with
/// bounded backoff; announces the relays it is connected to in gossip.
async fn keep_tunnel(
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    dial: quinn::ClientConfig,
    addr: String,
    gossip: Option<(Arc<GossipHandle>, NodeRecord)>,
) {
    let announce = |up: &std::collections::BTreeSet<String>| {
        gossip.as_ref().map(|(h, rec)| {
            let mut rec = rec.clone();
            rec.relays = up.iter().cloned().collect();
            (h.clone(), rec)
        })
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let sa = tokio::net::lookup_host(&addr)
                .await?
                .next()
                .context("no address")?;
            let conn = endpoint
                .connect_with(dial.clone(), sa, "relay.tether")?
                .await?;
            Ok::<_, anyhow::Error>(conn)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(conn)) => {
                backoff = Duration::from_millis(100);
                let relay = fleet::peer_of_connection(&conn)
                    .map(|p| p.name)
                    .unwrap_or_else(|| addr.clone());
                info!(%relay, %addr, "tunnel up");
                let rec = {
                    let mut u = node.tunnels.lock().expect("tunnels lock");
                    u.insert(relay.clone());
                    announce(&u)
                };
                if let Some((h, rec)) = rec {
                    h.set_record(&rec).await;
                }
                let r = node.clone().serve_conn(conn).await;
                warn!(%relay, err = ?r.err().map(|e| e.to_string()), "tunnel down; reconnecting");
                let rec = {
                    let mut u = node.tunnels.lock().expect("tunnels lock");
                    u.remove(&relay);
                    announce(&u)
                };
                if let Some((h, rec)) = rec {
                    h.set_record(&rec).await;
                }
            }
            Ok(Err(err)) => debug!(%addr, err = %format!("{err:#}"), "tunnel dial failed"),
            Err(_) => debug!(%addr, "tunnel dial timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Counts a client attached through this daemon while it lives.
struct ClientCount<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
