//! The relay server: accept clients, resolve, dial the owner, splice.

use crate::config::RelayConfig;
use crate::resolve::{self, NodeView, ResolveError};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tether_net::conn::{accept_request, splice, FrameReader, FrameWriter, StreamError};
use tether_net::gossip::{GossipHandle, GossipSettings};
use tether_net::metrics::{self, Counted, Counters, Exposition, Render};
use tether_net::tls::fleet::{self, FleetRole, FleetTls};
use tether_proto::gossip::{NodeRecord, Role};
use tether_proto::{
    ErrorKind, Hello, NodeId, Offset, Principal, Reply, Request, SessionInfo, SessionState, WinSize,
};
use tracing::{debug, info, instrument, warn};

const AGENT: &str = concat!("tether-relay/", env!("CARGO_PKG_VERSION"));

/// Who opened a connection to the relay.
#[derive(Debug, Clone)]
enum Peer {
    /// A client, by its certificate.
    Client(Principal),
    /// Another relay forwarding for a client it names in each hello.
    Relay(String),
}

struct Relay {
    /// Splice and byte counters, for metrics.
    counters: Arc<Counters>,
    /// Tunnels from nodes behind NAT, by node name.
    tunnels: tokio::sync::Mutex<HashMap<String, quinn::Connection>>,
    cfg: RelayConfig,
    tls: FleetTls,
    endpoint: quinn::Endpoint,
    gossip: Arc<GossipHandle>,
    dead_since: Mutex<HashMap<String, SystemTime>>,
    conns: tokio::sync::Mutex<HashMap<String, quinn::Connection>>,
}

/// A running relay. Dropping it stops its tasks.
pub struct RelayHandle {
    /// Address clients connect to.
    pub addr: SocketAddr,
    /// Gossip membership (for its counters).
    pub gossip: Arc<GossipHandle>,
    endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RelayHandle {
    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"relay stopping");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        for t in &self.tasks {
            t.abort();
        }
        self.gossip.stop();
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a relay.
pub async fn start(cfg: RelayConfig) -> anyhow::Result<RelayHandle> {
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
    let endpoint = tether_net::endpoint::make_endpoint(cfg.listen, Some(server))?;
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
    let g = &cfg.gossip;
    let settings = GossipSettings {
        member_id: format!("relay:{}", cfg.name),
        cluster_id: g.cluster_id.clone(),
        listen: g.listen,
        advertise: g.advertise.unwrap_or(g.listen),
        seeds: g.seeds.clone(),
        interval: g.interval(),
        secret: g.secret()?,
    };
    let gossip = Arc::new(GossipHandle::start(settings, &record).await?);
    let relay = Arc::new(Relay {
        cfg,
        tls,
        endpoint: endpoint.clone(),
        gossip: gossip.clone(),
        dead_since: Mutex::new(HashMap::new()),
        conns: tokio::sync::Mutex::new(HashMap::new()),
        tunnels: tokio::sync::Mutex::new(HashMap::new()),
        counters: Arc::new(Counters::default()),
    });
    let mut tasks = Vec::new();
    if let Some(addr) = relay.cfg.metrics_listen {
        let r = relay.clone();
        let render: Render = Arc::new(move || {
            let r = r.clone();
            Box::pin(async move { r.metrics().await })
        });
        tasks.push(metrics::serve(addr, render).await?);
    }
    let watcher = tokio::spawn(watch_liveness(relay.clone()));
    let r = relay.clone();
    let acceptor = tokio::spawn(async move {
        while let Some(incoming) = r.endpoint.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                if let Err(err) = r.serve_connection(incoming).await {
                    debug!(%err, "connection ended");
                }
            });
        }
    });
    info!(name = %relay.cfg.name, %addr, "relay ready");
    Ok(RelayHandle {
        addr,
        gossip,
        endpoint,
        tasks: {
            tasks.push(watcher);
            tasks.push(acceptor);
            tasks
        },
    })
}

/// Notes when each node was first seen dead, for error messages.
async fn watch_liveness(r: Arc<Relay>) {
    loop {
        let members = r.gossip.members().await;
        {
            let mut dead = r.dead_since.lock().expect("lock");
            for m in members {
                if m.live {
                    dead.remove(&m.member_id);
                } else {
                    dead.entry(m.member_id).or_insert_with(SystemTime::now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error(kind: ErrorKind, msg: impl Into<String>) -> Reply {
    Reply::error(kind, msg)
}

impl Relay {
    async fn nodes(&self) -> Vec<NodeView> {
        let dead = self.dead_since.lock().expect("lock").clone();
        self.gossip
            .members()
            .await
            .into_iter()
            .filter_map(|m| {
                let rec = m.record?;
                (rec.role == Role::Node).then(|| NodeView {
                    id: rec.id,
                    name: rec.name,
                    quic: rec.quic,
                    fp: rec.fp,
                    live: m.live,
                    dead_since: dead.get(&m.member_id).copied(),
                    sessions: m.sessions,
                    relays: rec.relays,
                })
            })
            .collect()
    }

    async fn metrics(&self) -> String {
        let members = self.members().await;
        let count = |role: &str, live: bool| {
            members
                .iter()
                .filter(|m| m.role == role && m.live == live)
                .count() as u64
        };
        let mut x = Exposition::default();
        x.labelled(
            "tether_members",
            "gauge",
            "Fleet members seen through gossip, by role and liveness.",
            &[
                ("role", "node_live", count("node", true)),
                ("role", "node_dead", count("node", false)),
                ("role", "relay_live", count("relay", true)),
                ("role", "relay_dead", count("relay", false)),
            ],
        );
        x.metric(
            "tether_tunnels_held",
            "gauge",
            "Node tunnels this relay holds.",
            self.tunnels.lock().await.len() as u64,
        );
        x.counters(&self.counters);
        x.gossip(&self.gossip.stats);
        x.finish()
    }

    /// Asks every live node whether it has `target`; `None` when none has.
    async fn ask_nodes(
        self: &Arc<Self>,
        target: &str,
        nodes: &[NodeView],
        principal: &Principal,
    ) -> Option<Result<(usize, tether_proto::SessionId), ResolveError>> {
        let req = Request::Info {
            target: target.to_string(),
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.live) {
            let (relay, n, req, principal) =
                (self.clone(), n.clone(), req.clone(), principal.clone());
            set.spawn(async move {
                let (mut rd, _wr) = relay.open_to(&n, &principal, &req, false).await.ok()?;
                match rd.control::<Reply>().await.ok()? {
                    Reply::Session { session } => Some((i, session.id)),
                    _ => None,
                }
            });
        }
        let mut found: Vec<(usize, tether_proto::SessionId)> =
            set.join_all().await.into_iter().flatten().collect();
        found.sort();
        match found.as_slice() {
            [] => None,
            [one] => Some(Ok(*one)),
            many => Some(Err(ResolveError::Ambiguous(
                target.to_string(),
                many.iter()
                    .map(|(i, _)| format!("{target}@{}", nodes[*i].name))
                    .collect::<Vec<_>>()
                    .join(", "),
            ))),
        }
    }

    async fn members(&self) -> Vec<tether_proto::MemberInfo> {
        let dead = self.dead_since.lock().expect("lock").clone();
        let mut out: Vec<_> = self
            .gossip
            .members()
            .await
            .into_iter()
            .filter_map(|m| {
                let rec = m.record?;
                Some(tether_proto::MemberInfo {
                    name: rec.name,
                    id: rec.id,
                    role: match rec.role {
                        Role::Node => "node".into(),
                        Role::Relay => "relay".into(),
                    },
                    live: m.live,
                    quic: rec.quic,
                    sessions: m.sessions.len() as u32,
                    dead_since_ms: dead.get(&m.member_id).map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0)
                    }),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.role, &a.name).cmp(&(&b.role, &b.name)));
        out
    }

    async fn serve_connection(self: Arc<Self>, incoming: quinn::Incoming) -> anyhow::Result<()> {
        let conn = incoming.await?;
        let peer = conn.remote_address();
        let who = match fleet::peer_of_connection(&conn) {
            Some(p) => match p.role {
                FleetRole::Client { read_only } => Peer::Client(Principal {
                    name: p.name,
                    read_only,
                }),
                FleetRole::Relay => Peer::Relay(p.name),
                FleetRole::Node => return self.hold_tunnel(p.name, conn).await,
            },
            None => bail!("a peer without a fleet certificate"),
        };
        debug!(%peer, ?who, "connected");
        loop {
            let (send, recv) = conn.accept_bi().await?;
            let r = self.clone();
            let who = who.clone();
            tokio::spawn(async move {
                if let Err(err) = r.serve_stream(send, recv, who, peer).await {
                    debug!(%err, "stream ended");
                }
            });
        }
    }

    /// Keeps a node's tunnel until it closes.
    async fn hold_tunnel(&self, node: String, conn: quinn::Connection) -> anyhow::Result<()> {
        info!(%node, peer = %conn.remote_address(), "tunnel up");
        self.tunnels.lock().await.insert(node.clone(), conn.clone());
        let reason = conn.closed().await;
        let mut t = self.tunnels.lock().await;
        if t.get(&node)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            t.remove(&node);
        }
        info!(%node, %reason, "tunnel down");
        Ok(())
    }

    #[instrument(skip_all, fields(peer = %peer))]
    async fn serve_stream(
        self: Arc<Self>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        who: Peer,
        peer: SocketAddr,
    ) -> Result<(), StreamError> {
        let mut rd = FrameReader::new(recv);
        let mut wr = FrameWriter::new(send);
        // A forwarding relay names the client; it is not forwarded again.
        let admit = |h: Hello| match (&who, h.on_behalf_of) {
            (Peer::Client(p), _) => Ok((p.clone(), false)),
            (Peer::Relay(_), Some(p)) => Ok((p, true)),
            (Peer::Relay(r), None) => Err(StreamError::Refused(format!(
                "relay {r} did not name the client it forwards for"
            ))),
        };
        let ((principal, forwarded), req) = accept_request(&mut rd, &mut wr, AGENT, admit).await?;
        if let Request::Nodes = req {
            let reply = Reply::Nodes {
                nodes: self.members().await,
            };
            wr.control(&reply).await?;
            let _ = wr.get_mut().finish();
            let _ = rd.next().await;
            return Ok(());
        }
        let nodes = self.nodes().await;
        let original = req.clone();
        let routed = match req {
            Request::List => {
                let sessions = self.list(&principal, &nodes, forwarded).await;
                wr.control(&Reply::Sessions { sessions }).await?;
                let _ = wr.get_mut().finish();
                let _ = rd.next().await;
                return Ok(());
            }
            Request::Create(mut spec) => resolve::node_for_create(spec.node.as_deref(), &nodes)
                .map(|i| {
                    // Name the node for good: a relay this goes through
                    // resolves it again.
                    spec.node = Some(nodes[i].name.clone());
                    (i, Request::Create(spec))
                }),
            Request::Attach(mut spec) => {
                resolve::resolve_session(&spec.target, &nodes).map(|(i, id)| {
                    spec.target = id.to_string();
                    (i, Request::Attach(spec))
                })
            }
            Request::Info { target } => resolve::resolve_session(&target, &nodes).map(|(i, id)| {
                (
                    i,
                    Request::Info {
                        target: id.to_string(),
                    },
                )
            }),
            Request::Wait { target } => resolve::resolve_session(&target, &nodes).map(|(i, id)| {
                (
                    i,
                    Request::Wait {
                        target: id.to_string(),
                    },
                )
            }),
            Request::Remove { target } => {
                resolve::resolve_session(&target, &nodes).map(|(i, id)| {
                    (
                        i,
                        Request::Remove {
                            target: id.to_string(),
                        },
                    )
                })
            }
            Request::Send { target, data } => {
                resolve::resolve_session(&target, &nodes).map(|(i, id)| {
                    (
                        i,
                        Request::Send {
                            target: id.to_string(),
                            data,
                        },
                    )
                })
            }
            Request::Kill { target, signal } => {
                resolve::resolve_session(&target, &nodes).map(|(i, id)| {
                    (
                        i,
                        Request::Kill {
                            target: id.to_string(),
                            signal,
                        },
                    )
                })
            }
            other => {
                wr.control(&error(
                    ErrorKind::BadRequest,
                    format!("a relay does not answer {other:?}"),
                ))
                .await?;
                let _ = wr.get_mut().finish();
                return Ok(());
            }
        };
        // A name or prefix that gossip does not know yet (a session created
        // a moment ago): ask the live nodes themselves.
        let routed = match routed {
            Err(ResolveError::NotFound(t)) if !forwarded => {
                match self.ask_nodes(&t, &nodes, &principal).await {
                    Some(Ok((i, id))) => Ok((i, retarget(original, &id.to_string()))),
                    Some(Err(e)) => Err(e),
                    None => Err(ResolveError::NotFound(t)),
                }
            }
            other => other,
        };
        let (i, req) = match routed {
            Ok(r) => r,
            Err(e) => {
                let kind = match e {
                    ResolveError::Ambiguous(..) => ErrorKind::Ambiguous,
                    ResolveError::PickNode(_) => ErrorKind::BadRequest,
                    _ => ErrorKind::NotFound,
                };
                wr.control(&error(kind, e.to_string())).await?;
                let _ = wr.get_mut().finish();
                return Ok(());
            }
        };
        let node = &nodes[i];
        match self.open_to(node, &principal, &req, forwarded).await {
            Ok((nrd, nwr)) => {
                debug!(node = %node.name, ?req, "spliced");
                let _live = self.counters.splice();
                let out = Counted::new(wr.into_inner(), self.counters.clone(), true);
                let inn = Counted::new(nwr.into_inner(), self.counters.clone(), false);
                splice(rd, out, nrd, inn).await?;
            }
            Err(msg) => {
                warn!(node = %node.name, %msg, "cannot reach the owner");
                wr.control(&error(ErrorKind::Internal, msg)).await?;
                let _ = wr.get_mut().finish();
            }
        }
        Ok(())
    }

    fn unreachable(&self, node: &NodeView, why: &str) -> String {
        match node.dead_since {
            Some(t) => format!(
                "node {} unreachable since {} (its gossip stopped); try again when it is back",
                node.name,
                tether_net::time::rfc3339(t)
            ),
            None => format!("node {} unreachable: {why}", node.name),
        }
    }

    /// Opens a stream to the owner for `principal`, sends `req`, and reads
    /// the node's hello.
    async fn open_to(
        &self,
        node: &NodeView,
        principal: &Principal,
        req: &Request,
        forwarded: bool,
    ) -> Result<
        (
            FrameReader<quinn::RecvStream>,
            FrameWriter<quinn::SendStream>,
        ),
        String,
    > {
        if !node.live {
            return Err(self.unreachable(node, "marked dead"));
        }
        let timeout = Duration::from_millis(self.cfg.dial_timeout_ms);
        let attempt = async {
            let conn = self.connection(node, forwarded).await?;
            let (send, recv) = conn.open_bi().await.context("opening a stream")?;
            let mut nwr = FrameWriter::new(send);
            nwr.control(&Hello {
                on_behalf_of: Some(principal.clone()),
                ..Hello::current(AGENT)
            })
            .await?;
            nwr.control(req).await?;
            let mut nrd = FrameReader::new(recv);
            nrd.hello().await?;
            Ok::<_, anyhow::Error>((nrd, nwr))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                self.conns.lock().await.remove(&node.id);
                Err(self.unreachable(node, &format!("{e:#}")))
            }
            Err(_) => {
                self.conns.lock().await.remove(&node.id);
                Err(self.unreachable(node, &format!("no answer within {timeout:?}")))
            }
        }
    }

    /// A connection that reaches `node`: its tunnel to this relay, a
    /// direct one, or one to a relay it keeps a tunnel to.
    async fn connection(
        &self,
        node: &NodeView,
        forwarded: bool,
    ) -> anyhow::Result<quinn::Connection> {
        if let Some(c) = self.tunnels.lock().await.get(&node.name) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if let Some(quic) = &node.quic {
            let addr: SocketAddr = quic.parse().context("it announced a bad QUIC address")?;
            let pin = node.fp.parse().context("it announced a bad fingerprint")?;
            let name = fleet::dns_name(FleetRole::Node, &node.name);
            return self.dial(&node.id, addr, pin, &name).await;
        }
        if forwarded {
            bail!("it has no tunnel to this relay (forwarded requests are not forwarded again)");
        }
        // Through a live relay that holds its tunnel.
        let relays: Vec<NodeRecord> = self
            .gossip
            .members()
            .await
            .into_iter()
            .filter(|m| m.live)
            .filter_map(|m| m.record)
            .filter(|r| {
                r.role == Role::Relay && r.name != self.cfg.name && node.relays.contains(&r.name)
            })
            .collect();
        let mut last =
            anyhow::anyhow!("it accepts no direct connections and keeps no tunnel to a live relay");
        for r in relays {
            let Some(addr) = r.quic.as_deref().and_then(|q| q.parse().ok()) else {
                continue;
            };
            let Ok(pin) = r.fp.parse() else { continue };
            let name = fleet::dns_name(FleetRole::Relay, &r.name);
            match self
                .dial(&format!("relay:{}", r.name), addr, pin, &name)
                .await
            {
                Ok(c) => return Ok(c),
                Err(e) => last = e.context(format!("through relay {}", r.name)),
            }
        }
        Err(last)
    }

    /// A cached or new connection to a pinned member.
    async fn dial(
        &self,
        key: &str,
        addr: SocketAddr,
        pin: tether_net::tls::Fingerprint,
        name: &str,
    ) -> anyhow::Result<quinn::Connection> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(key) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let cfg = fleet::dial_config(&self.tls, Some(pin))?;
        let conn = self.endpoint.connect_with(cfg, addr, name)?.await?;
        conns.insert(key.to_string(), conn.clone());
        Ok(conn)
    }

    /// Every node's sessions: asked from the live nodes, from gossip for
    /// the others (marked unreachable).
    async fn list(
        self: &Arc<Self>,
        principal: &Principal,
        nodes: &[NodeView],
        forwarded: bool,
    ) -> Vec<SessionInfo> {
        let mut set = tokio::task::JoinSet::new();
        for node in nodes.iter().cloned() {
            let relay = self.clone();
            let principal = principal.clone();
            set.spawn(async move {
                let res = async {
                    let (mut rd, _wr) = relay
                        .open_to(&node, &principal, &Request::List, forwarded)
                        .await?;
                    match rd.control::<Reply>().await.map_err(|e| e.to_string())? {
                        Reply::Sessions { sessions } => Ok(sessions),
                        other => Err(format!("unexpected answer {other:?}")),
                    }
                }
                .await;
                match res {
                    Ok(mut s) => {
                        // Through another relay the answer covers every
                        // node it reaches; keep this node's part.
                        s.retain(|i| i.node.to_string() == node.id);
                        for i in &mut s {
                            i.node_name = Some(node.name.clone());
                        }
                        s
                    }
                    Err(why) => from_gossip(&node, &why),
                }
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(s) = r {
                out.extend(s);
            }
        }
        out.sort_by_key(|s| (s.created_at_ms, s.id));
        out
    }
}

/// What gossip says of an unreachable node's sessions.
fn from_gossip(node: &NodeView, why: &str) -> Vec<SessionInfo> {
    let node_id = node.id.parse::<NodeId>().unwrap_or(NodeId([0; 8]));
    node.sessions
        .iter()
        .map(|(id, r)| SessionInfo {
            id: *id,
            name: r.n.clone(),
            node: node_id,
            command: vec![r.c.clone()],
            cwd: String::new(),
            created_at_ms: r.t * 1000,
            state: match r.st.as_str() {
                "exited" => SessionState::Exited,
                "lost" => SessionState::Lost,
                _ => SessionState::Running,
            },
            exit: None,
            exited_at_ms: None,
            size: WinSize::default(),
            start_offset: Offset(0),
            end_offset: Offset(0),
            ring_size: 0,
            clients: 0,
            pid: None,
            node_name: Some(node.name.clone()),
            unreachable: Some(why.to_string()),
        })
        .collect()
}

/// The same request aimed at session `id`.
fn retarget(req: Request, id: &str) -> Request {
    let target = id.to_string();
    match req {
        Request::Attach(mut spec) => {
            spec.target = target;
            Request::Attach(spec)
        }
        Request::Info { .. } => Request::Info { target },
        Request::Wait { .. } => Request::Wait { target },
        Request::Remove { .. } => Request::Remove { target },
        Request::Send { data, .. } => Request::Send { target, data },
        Request::Kill { signal, .. } => Request::Kill { target, signal },
        other => other,
    }
}
