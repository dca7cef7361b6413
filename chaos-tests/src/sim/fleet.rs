//! A simulated fleet: member 0 is a relay, the others are nodes, each a
//! real [`GossipHandle`] on the [`SimNet`], announcing a real
//! [`NodeRecord`] and [`SessionRecord`]s under real [`NodeId`]s and
//! [`SessionId`]s, as the node daemon and the relay do.
//!
//! What the fleet knows is the truth (which members run, which sessions
//! each node has, which sessions were removed); what the relay sees is
//! read through its gossip and the relay's own code
//! ([`tether_relay::view::FleetView`], `resolve_session`). The
//! scenarios compare the two.

use super::net::{LinkFaults, SimNet};
use crate::rng::Rng;
use anyhow::Context;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use tether_net::gossip::{GossipBuilder, GossipHandle, GossipSettings};
use tether_proto::gossip::{NodeRecord, SessionRecord};
use tether_proto::{NodeId, SessionId};
use tether_relay::resolve::NodeView;
use tether_relay::view::FleetView;
use tether_testkit::records;
use tokio::time::Instant;

/// The port every member gossips on (each has an address of its own).
const GOSSIP_PORT: u16 = 7101;
/// Virtual wall clock at the start of a run (ms since the Unix epoch),
/// for generation IDs and session creation times: fixed, so a seed
/// replays them.
const EPOCH_MS: u64 = 1_760_000_000_000;

/// The shape of a simulated fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Members, the relay included.
    pub members: usize,
    /// Sessions each node announces from the start.
    pub sessions_per_node: usize,
    /// Gossip round interval (the product's default is 200 ms).
    pub interval: Duration,
    /// Delay, jitter and loss on every link.
    pub faults: LinkFaults,
    /// Members started first, whose addresses every member joins through.
    pub seeds: usize,
    /// Members start at seeded times spread over this long.
    pub start_spread: Duration,
    /// Heartbeat intervals each member's failure detector keeps per peer:
    /// the product's 1,000 (8 KB per peer) up to 200 members; 100 beyond,
    /// or a thousand members would take 8 GB in one process.
    pub failure_window: usize,
}

impl FleetConfig {
    /// `members` members, 10 sessions per node, the product's 200 ms
    /// interval, a datacenter network.
    pub fn new(members: usize) -> FleetConfig {
        FleetConfig {
            members,
            sessions_per_node: 10,
            interval: Duration::from_millis(200),
            faults: LinkFaults::default(),
            seeds: 3,
            start_spread: Duration::from_secs(2),
            failure_window: if members > 200 { 100 } else { 1000 },
        }
    }
}

/// One member: what it announces and, while it runs, its gossip.
pub struct SimMember {
    /// chitchat's member ID: the node ID's text (a relay: `relay:<name>`).
    pub member_id: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its record.
    pub record: NodeRecord,
    /// Its sessions (the truth; empty for the relay).
    pub sessions: BTreeMap<SessionId, SessionRecord>,
    node_id: Option<NodeId>,
    gossip: Option<GossipHandle>,
}

impl SimMember {
    /// Whether its gossip runs.
    pub fn running(&self) -> bool {
        self.gossip.is_some()
    }

    /// Its gossip, while it runs.
    pub fn gossip(&self) -> Option<&GossipHandle> {
        self.gossip.as_ref()
    }
}

/// A fleet on a [`SimNet`], with the truth of what it announces.
pub struct Fleet {
    /// The network.
    pub net: SimNet,
    /// Members; index 0 is the relay.
    pub members: Vec<SimMember>,
    /// Every session ever removed.
    pub removed: HashSet<SessionId>,
    cfg: FleetConfig,
    rng: Rng,
    t0: Instant,
    last_generation: u64,
}

/// Index of the relay in [`Fleet::members`].
pub const RELAY: usize = 0;

impl Fleet {
    /// A fleet of `cfg.members` members, none started; everything random
    /// (IDs, names, sessions) drawn from `rng`.
    pub fn new(cfg: FleetConfig, mut rng: Rng) -> Fleet {
        let net = SimNet::new(cfg.faults, rng.fork());
        let mut members = Vec::with_capacity(cfg.members);
        for i in 0..cfg.members {
            let addr =
                SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], GOSSIP_PORT));
            let quic = SocketAddr::from((addr.ip(), 7100));
            let draw = &mut || rng.next_u64();
            let (node_id, member_id, record) = if i == RELAY {
                (None, "relay:r1".into(), records::relay("r1", quic, draw))
            } else {
                let (id, rec) = records::node(i, quic, draw);
                (Some(id), id.to_string(), rec)
            };
            members.push(SimMember {
                member_id,
                addr,
                record,
                sessions: BTreeMap::new(),
                node_id,
                gossip: None,
            });
        }
        let mut fleet = Fleet {
            net,
            members,
            removed: HashSet::new(),
            cfg,
            rng,
            t0: Instant::now(),
            last_generation: 0,
        };
        for i in 1..fleet.members.len() {
            for _ in 0..fleet.cfg.sessions_per_node {
                let (id, rec) = fleet.new_session(i, None);
                fleet.members[i].sessions.insert(id, rec);
            }
        }
        fleet
    }

    /// The schedule's generator (which member, when).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// One of `from`, drawn by the schedule's generator.
    pub fn pick(&mut self, from: &[usize]) -> usize {
        from[self.rng.below(from.len())]
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    /// Virtual time since the fleet was made.
    pub fn now(&self) -> Duration {
        Instant::now() - self.t0
    }

    /// A session of node `i`, not yet announced: a real ID with the
    /// node's tag, a record as the node builds it. `name`: the session's
    /// name, else one drawn from a few common ones (or none).
    fn new_session(&mut self, i: usize, name: Option<String>) -> (SessionId, SessionRecord) {
        let owner = self.members[i].node_id.expect("sessions live on nodes");
        let t = (EPOCH_MS + self.now().as_millis() as u64) / 1000;
        let rng = &mut self.rng;
        records::session(owner, name, t, &mut || rng.next_u64())
    }

    /// Starts member `i`'s gossip (again, after [`Fleet::stop`]: a restart
    /// with a higher generation), announcing its record and sessions.
    pub async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(!self.members[i].running(), "member {i} runs already");
        let seeds = (0..self.cfg.seeds.min(self.members.len()))
            .filter(|&s| s != i)
            .map(|s| self.members[s].addr.to_string())
            .collect();
        let generation = (EPOCH_MS + self.now().as_millis() as u64).max(self.last_generation + 1);
        self.last_generation = generation;
        let m = &mut self.members[i];
        let settings = GossipSettings {
            member_id: m.member_id.clone(),
            cluster_id: "sim".into(),
            listen: m.addr,
            advertise: m.addr,
            seeds,
            interval: self.cfg.interval,
            secret: Vec::new(),
            next_secret: None,
            previous_secret: None,
            socket: None,
        };
        let g = GossipBuilder::new(settings)
            .unsealed_transport(self.net.clone())
            .generation(generation)
            .failure_window(self.cfg.failure_window)
            .start(&m.record)
            .await
            .with_context(|| format!("starting member {i}"))?;
        for (id, rec) in &m.sessions {
            g.set_session(id, rec).await;
        }
        m.gossip = Some(g);
        Ok(())
    }

    /// Stops member `i`'s gossip (a daemon killed: its sessions stay, and
    /// are announced again when it starts).
    pub async fn stop(&mut self, i: usize) {
        if let Some(g) = self.members[i].gossip.take() {
            g.shutdown().await;
        }
    }

    /// Starts every member, at seeded times spread over the configured
    /// spread (the seeds first); returns when the last has started.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        let n = self.members.len();
        let spread = self.cfg.start_spread.as_millis().max(1) as usize;
        let mut at: Vec<(usize, usize)> = (0..n)
            .map(|i| {
                (
                    if i < self.cfg.seeds {
                        0
                    } else {
                        self.rng.below(spread)
                    },
                    i,
                )
            })
            .collect();
        at.sort();
        let t = Instant::now();
        for (ms, i) in at {
            tokio::time::sleep_until(t + Duration::from_millis(ms as u64)).await;
            self.start(i).await?;
        }
        Ok(())
    }

    /// Creates a session on node `i` and announces it.
    pub async fn create_session(&mut self, i: usize, name: Option<String>) -> SessionId {
        let (id, rec) = self.new_session(i, name);
        if let Some(g) = &self.members[i].gossip {
            g.set_session(&id, &rec).await;
        }
        self.members[i].sessions.insert(id, rec);
        id
    }

    /// Removes a session of node `i` and withdraws it.
    pub async fn remove_session(&mut self, i: usize, id: &SessionId) {
        if let Some(g) = &self.members[i].gossip {
            g.remove_session(id).await;
        }
        self.members[i].sessions.remove(id);
        self.removed.insert(*id);
    }

    /// The nodes as the relay routes to them, through its gossip and the
    /// relay's own code.
    pub async fn relay_view(&self) -> FleetView {
        match self.members[RELAY].gossip() {
            Some(g) => FleetView::new(&*g.members().await, &HashMap::new()),
            None => FleetView::of_nodes(Vec::new()),
        }
    }

    /// How many members each running member deems alive (self included),
    /// by member index.
    pub async fn live_counts(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if let Some(g) = m.gossip() {
                out.push((i, g.live_count().await));
            }
        }
        out
    }

    /// Index of the member whose node ID is `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.record.id == id)
    }

    /// Nodes, running or not (not the relay).
    pub fn nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| i != RELAY)
    }

    /// Whether the relay routes session `id` to node `owner` from what
    /// gossip carried (not only by the ID's owner tag).
    pub fn routes(view: &FleetView, id: &SessionId, owner: &str) -> bool {
        match view.resolve_session(&id.to_string()) {
            Ok((i, got)) => {
                let n = &view.nodes[i];
                got == *id && n.id == owner && n.sessions.iter().any(|(s, _)| s == id)
            }
            Err(_) => false,
        }
    }

    /// What is wrong with the relay's view, for the running nodes: a
    /// session not routed to its owner, one announced that the node does
    /// not have, a removed one. Empty when the view is the truth.
    pub fn mismatches(&self, view: &FleetView) -> Vec<String> {
        let mut out = Vec::new();
        let by_id: HashMap<&str, &NodeView> =
            view.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        for i in self.nodes().filter(|&i| self.members[i].running()) {
            let m = &self.members[i];
            let Some(v) = by_id.get(m.record.id.as_str()) else {
                out.push(format!("{} unknown to the relay", m.record.name));
                continue;
            };
            for id in m.sessions.keys() {
                if !Self::routes(view, id, &m.record.id) {
                    out.push(format!("{id} of {} not routed to it", m.record.name));
                }
            }
            for (id, _) in v.sessions.iter() {
                if !m.sessions.contains_key(id) {
                    out.push(format!(
                        "{id} announced for {} but not there",
                        m.record.name
                    ));
                }
            }
        }
        out.extend(
            self.resurrected(view)
                .iter()
                .map(|id| format!("{id} removed but listed")),
        );
        out
    }

    /// Removed sessions the view lists.
    pub fn resurrected(&self, view: &FleetView) -> Vec<SessionId> {
        view.nodes
            .iter()
            .flat_map(|n| n.sessions.iter().map(|(id, _)| *id))
            .filter(|id| self.removed.contains(id))
            .collect()
    }

    /// Stops every member.
    pub async fn shutdown(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i).await;
        }
    }
}

/// A bounded wait in virtual time: poll, then [`Wait::tick`] until the
/// condition holds; `tick` fails once the bound is passed, saying what
/// was awaited.
pub struct Wait {
    what: String,
    start: Instant,
    bound: Duration,
    step: Duration,
}

impl Wait {
    /// Waits for `what`, polling every `step`, for at most `bound`.
    pub fn new(what: impl Into<String>, bound: Duration, step: Duration) -> Wait {
        Wait {
            what: what.into(),
            start: Instant::now(),
            bound,
            step,
        }
    }

    /// Virtual time since the wait began.
    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.start
    }

    /// Sleeps one step; fails once the bound is passed. `state` says
    /// where things stand, for the error.
    pub async fn tick(&self, state: impl FnOnce() -> String) -> anyhow::Result<()> {
        if self.elapsed() >= self.bound {
            anyhow::bail!(
                "{} did not happen within {:?} of virtual time ({})",
                self.what,
                self.bound,
                state()
            );
        }
        tokio::time::sleep(self.step).await;
        Ok(())
    }
}
