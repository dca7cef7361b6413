//! Gossip: chitchat over tether's sealed transport.
//!
//! Every member (node or relay) runs one [`GossipHandle`]. It announces the
//! member's [`NodeRecord`](tether_proto::gossip::NodeRecord) under one key
//! and, for a node, one key per session; [`GossipHandle::members`] reads
//! the whole cluster back with the failure detector's verdict, parsed
//! again only where it changed. Other
//! modules publish beside them with [`GossipHandle::set_key`] and read
//! with [`GossipHandle::values_of`] (the fleet's revocation list).
//!
//! - [`seal`]: the datagram layout, keys and nonces, and every check a
//!   received datagram passes (pure, no IO);
//! - [`transport`]: chitchat's `Transport` over sealed datagrams (the IO);
//! - `codec`: chitchat's envelope codec, behind two loopback sockets only
//!   the process can reach (chitchat keeps its codec private);
//! - `members`: the parsed cluster, cached by member and version;
//! - [`stats`]: counters by reason, and the once-per-10-s log rule.
//!
//! # Rotating the cluster secret
//! `secret_file` seals what a member sends and opens what it receives;
//! `next_secret_file` and `previous_secret_file` only open. A member
//! cannot read a secret it does not hold, so the fleet moves in three
//! phases, each finished on every member before the next starts:
//! 1. `next_secret_file` = the new secret (members now accept it);
//! 2. `secret_file` = the new secret, `previous_secret_file` = the old one,
//!    no `next_secret_file` (members send with the new one, still accept
//!    the old from those not yet switched);
//! 3. no `previous_secret_file` (the old secret is refused).
//!
//! This module knows nothing of sessions beyond their gossip records: what
//! to announce is the node's business, how to route is the relay's.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod codec;
mod members;
pub mod seal;
pub mod stats;
pub mod transport;

pub use members::MemberList;
pub use seal::{ClusterKey, KeyRole, Keyring, Reject};
pub use stats::GossipStats;
pub use transport::SealedTransport;

/// Gossip settings (`[gossip]`), shared by nodes and relays.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GossipConfig {
    /// Name of the cluster; members of other clusters are refused.
    pub cluster_id: String,
    /// UDP address to gossip on, e.g. `127.0.0.11:7101`.
    pub listen: SocketAddr,
    /// Address peers use to reach this member. Default: `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Gossip addresses of members to join through. Default: none.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Gossip round interval in milliseconds. Default 200.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// File holding the cluster secret (any bytes, at least 16): seals
    /// every datagram sent, opens those received. Relative paths are
    /// relative to the config file.
    pub secret_file: PathBuf,
    /// During a rotation's first phase, the secret the cluster moves to:
    /// opens datagrams, never seals. Default: none. See the module doc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_secret_file: Option<PathBuf>,
    /// During a rotation's second phase, the secret the cluster moves
    /// away from: opens datagrams, never seals. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_file: Option<PathBuf>,
}

fn default_interval_ms() -> u64 {
    200
}

impl GossipConfig {
    /// The round interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(10))
    }

    /// The settings of a member `member_id` of this cluster (reads the
    /// secret file).
    pub fn settings(&self, member_id: String) -> anyhow::Result<GossipSettings> {
        Ok(GossipSettings {
            member_id,
            cluster_id: self.cluster_id.clone(),
            listen: self.listen,
            advertise: self.advertise.unwrap_or(self.listen),
            seeds: self.seeds.clone(),
            interval: self.interval(),
            secret: self.secret()?,
            next_secret: self
                .next_secret_file
                .as_deref()
                .map(|p| read_secret(p, "next_secret_file"))
                .transpose()?,
            previous_secret: self
                .previous_secret_file
                .as_deref()
                .map(|p| read_secret(p, "previous_secret_file"))
                .transpose()?,
            socket: None,
        })
    }

    /// Reads the secret file.
    pub fn secret(&self) -> anyhow::Result<Vec<u8>> {
        read_secret(&self.secret_file, "secret_file")
    }

    /// Makes the secret files' relative paths relative to `base` (the
    /// config file's directory).
    pub fn resolve_files(&mut self, base: &Path) {
        let resolve = |p: &Path| crate::files::resolve_relative(base, p);
        self.secret_file = resolve(&self.secret_file);
        for p in [&mut self.next_secret_file, &mut self.previous_secret_file]
            .into_iter()
            .flatten()
        {
            *p = resolve(p);
        }
    }
}

/// Reads a secret file named by the config key `key`.
fn read_secret(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let s = std::fs::read(path).with_context(|| {
        format!(
            "reading the cluster secret {} (`{key}` in [gossip]); make one with `umask 077; head -c 32 /dev/urandom > {}`",
            path.display(),
            path.display()
        )
    })?;
    if s.len() < 16 {
        anyhow::bail!(
            "the cluster secret {} (`{key}` in [gossip]) is shorter than 16 bytes; make a longer one",
            path.display()
        );
    }
    Ok(s)
}

/// Settings of a gossip member.
pub struct GossipSettings {
    /// Unique ID of the member in the cluster.
    pub member_id: String,
    /// Cluster name; members of other clusters are refused.
    pub cluster_id: String,
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// UDP address peers use to reach this member.
    pub advertise: SocketAddr,
    /// Addresses (host:port) of members to join through.
    pub seeds: Vec<String>,
    /// Gossip round interval.
    pub interval: std::time::Duration,
    /// The cluster secret (contents of the secret file): seals and opens.
    pub secret: Vec<u8>,
    /// A secret that opens only, in a rotation's first phase. Default: none.
    pub next_secret: Option<Vec<u8>>,
    /// A secret that opens only, in a rotation's second phase. Default:
    /// none.
    pub previous_secret: Option<Vec<u8>>,
    /// A socket bound already, used instead of binding `listen` (a test's,
    /// or one behind a fault proxy). Default: none.
    pub socket: Option<std::net::UdpSocket>,
}

impl GossipSettings {
    /// The keys of the secrets: the current one, then those a rotation
    /// accepts.
    pub fn keyring(&self) -> Keyring {
        let mut keys = Keyring::new(ClusterKey::from_secret(&self.secret));
        if let Some(s) = &self.next_secret {
            keys = keys.accepting(KeyRole::Next, ClusterKey::from_secret(s));
        }
        if let Some(s) = &self.previous_secret {
            keys = keys.accepting(KeyRole::Previous, ClusterKey::from_secret(s));
        }
        keys
    }
}

/// Leaves the secrets out.
impl std::fmt::Debug for GossipSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipSettings")
            .field("member_id", &self.member_id)
            .field("cluster_id", &self.cluster_id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("interval", &self.interval)
            .field("next_secret", &self.next_secret.is_some())
            .field("previous_secret", &self.previous_secret.is_some())
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Starts a member with what [`GossipHandle::start`] takes from the
/// system, injected instead: the transport and the generation ID. The
/// default of each is the production one, so `GossipBuilder::new(s)
/// .start(record)` is exactly `GossipHandle::start(s, record)`.
///
/// A simulation (chaos-tests' fleet in virtual time) injects an in-process
/// transport and a generation taken from its virtual clock:
/// ```ignore
/// let h = GossipBuilder::new(settings)
///     .unsealed_transport(sim_net.clone())
///     .generation(virtual_ms)
///     .start(&record)
///     .await?;
/// ```
pub struct GossipBuilder {
    settings: GossipSettings,
    transport: Option<Box<dyn chitchat::transport::Transport>>,
    generation: Option<u64>,
    window: Option<usize>,
}

impl GossipBuilder {
    /// A member with `settings`, over the sealed transport, its generation
    /// the wall clock's milliseconds.
    pub fn new(settings: GossipSettings) -> GossipBuilder {
        GossipBuilder {
            settings,
            transport: None,
            generation: None,
            window: None,
        }
    }

    /// Gossips over `transport` instead of the sealed UDP transport:
    /// nothing is sealed or checked, the secrets in the settings are not
    /// used, and [`GossipHandle::stats`] stays at zero. For simulations
    /// and tests only: no node or relay binary calls it.
    pub fn unsealed_transport(mut self, transport: impl chitchat::transport::Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// The member's generation ID (chitchat's: a restarted member must
    /// start with a higher one than before). Default: the wall clock's ms
    /// since the Unix epoch, which a simulation in virtual time replaces.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Heartbeat intervals the failure detector keeps per peer. Default:
    /// chitchat's 1,000, 8 KB per peer, 8 MB per member in a fleet of a
    /// thousand: nothing for one process, 8 GB for a simulation that runs
    /// the thousand members in one process, which lowers it to fit.
    pub fn failure_window(mut self, samples: usize) -> Self {
        self.window = Some(samples.max(1));
        self
    }

    /// Joins the cluster and announces `record`.
    pub async fn start(
        self,
        record: &tether_proto::gossip::NodeRecord,
    ) -> anyhow::Result<GossipHandle> {
        let s = self.settings;
        let stats = Arc::new(GossipStats::default());
        let transport = match self.transport {
            Some(t) => t,
            None => {
                let mut sealed =
                    SealedTransport::new(s.keyring(), stats.clone()).advertise(s.advertise);
                if let Some(sock) = s.socket {
                    sealed = sealed.with_socket(sock);
                }
                Box::new(sealed)
            }
        };
        let defaults = chitchat::FailureDetectorConfig::default();
        let fd = chitchat::FailureDetectorConfig {
            sampling_window_size: self.window.unwrap_or(defaults.sampling_window_size),
            initial_interval: s.interval,
            max_interval: s.interval * 10,
            // Forget dead members after a minute; their keys go with them.
            dead_node_grace_period: std::time::Duration::from_secs(60),
            ..defaults
        };
        let config = chitchat::ChitchatConfig {
            chitchat_id: chitchat::ChitchatId::new(
                s.member_id.clone(),
                self.generation.unwrap_or_else(crate::time::now_ms),
                s.advertise,
            ),
            cluster_id: s.cluster_id.clone(),
            gossip_interval: s.interval,
            listen_addr: s.listen,
            seed_nodes: s.seeds.clone(),
            failure_detector_config: fd,
            marked_for_deletion_grace_period: std::time::Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let kv = vec![(
            tether_proto::gossip::NODE_KEY.to_string(),
            serde_json::to_string(record)?,
        )];
        let handle = chitchat::spawn_chitchat(config, kv, &*transport).await?;
        Ok(GossipHandle {
            chitchat: handle.chitchat(),
            handle: std::sync::Mutex::new(Some(handle)),
            cache: Default::default(),
            stats,
        })
    }
}

/// A member of the cluster as seen through gossip.
#[derive(Debug, Clone)]
pub struct Member {
    /// chitchat's member ID.
    pub member_id: String,
    /// Its record, if announced.
    pub record: Option<tether_proto::gossip::NodeRecord>,
    /// Its sessions (shared with the cached list they were parsed for).
    pub sessions: Arc<[(tether_proto::SessionId, tether_proto::gossip::SessionRecord)]>,
    /// Whether the failure detector deems it alive.
    pub live: bool,
    /// Its gossip address.
    pub gossip_addr: SocketAddr,
}

/// A running gossip member. Dropping it stops gossiping at once;
/// [`GossipHandle::shutdown`] lets the member's server loop finish.
pub struct GossipHandle {
    handle: std::sync::Mutex<Option<chitchat::ChitchatHandle>>,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    /// The members parsed at the last read, and what they were parsed from.
    cache: std::sync::Mutex<members::MemberCache>,
    /// Datagram counters.
    pub stats: Arc<GossipStats>,
}

impl GossipHandle {
    /// Joins the cluster and announces `record`, over the sealed transport
    /// (the production path; [`GossipBuilder`] for anything else).
    pub async fn start(
        s: GossipSettings,
        record: &tether_proto::gossip::NodeRecord,
    ) -> anyhow::Result<GossipHandle> {
        GossipBuilder::new(s).start(record).await
    }

    /// Announces (or updates) a session.
    pub async fn set_session(
        &self,
        id: &tether_proto::SessionId,
        rec: &tether_proto::gossip::SessionRecord,
    ) {
        let v = serde_json::to_string(rec).expect("records serialize");
        let cc = &self.chitchat;
        let mut c = cc.lock().await;
        c.self_node_state()
            .set(tether_proto::gossip::session_key(id), v);
    }

    /// Withdraws a session.
    pub async fn remove_session(&self, id: &tether_proto::SessionId) {
        let cc = &self.chitchat;
        let mut c = cc.lock().await;
        c.self_node_state()
            .delete(&tether_proto::gossip::session_key(id));
    }

    /// Updates this member's record.
    pub async fn set_record(&self, record: &tether_proto::gossip::NodeRecord) {
        let v = serde_json::to_string(record).expect("records serialize");
        let cc = &self.chitchat;
        let mut c = cc.lock().await;
        c.self_node_state().set(tether_proto::gossip::NODE_KEY, v);
    }

    /// Sets `key` of this member's own state to `value`: for what other
    /// modules publish beside the records (the revocation list).
    pub async fn set_key(&self, key: &str, value: String) {
        let mut c = self.chitchat.lock().await;
        c.self_node_state().set(key, value);
    }

    /// `(member ID, value)` of `key` at every member that publishes it,
    /// self included.
    pub async fn values_of(&self, key: &str) -> Vec<(String, String)> {
        let c = self.chitchat.lock().await;
        c.node_states()
            .iter()
            .filter_map(|(cid, st)| Some((cid.node_id.to_string(), st.get(key)?.to_string())))
            .collect()
    }

    /// How many members the failure detector deems alive, self included:
    /// [`GossipHandle::members`] without parsing any record.
    pub async fn live_count(&self) -> usize {
        self.chitchat.lock().await.live_nodes().count()
    }

    /// Every member known, with liveness, self included. Parsed again
    /// only where chitchat's state changed since the last call (see
    /// [`MemberList`]); otherwise the same list is returned.
    pub async fn members(&self) -> Arc<MemberList> {
        let c = self.chitchat.lock().await;
        self.cache.lock().expect("member cache lock").read(&c)
    }

    /// Every member, every record parsed again: what each call of
    /// [`GossipHandle::members`] cost before it cached (for benches).
    #[doc(hidden)]
    pub async fn members_parsed_afresh(&self) -> Arc<MemberList> {
        let c = self.chitchat.lock().await;
        members::MemberCache::default().read(&c)
    }

    /// Runs `f` on this member's chitchat state: for benches that fill a
    /// cluster's state through chitchat's own catch-up API
    /// (`reset_node_state_if_update`) rather than through many members.
    #[doc(hidden)]
    pub async fn with_chitchat<R>(&self, f: impl FnOnce(&mut chitchat::Chitchat) -> R) -> R {
        f(&mut *self.chitchat.lock().await)
    }

    /// Stops gossiping now (also done on drop).
    pub fn stop(&self) {
        if let Some(h) = self.handle.lock().expect("gossip lock").as_ref() {
            h.abort();
        }
    }

    /// Stops gossiping and waits until chitchat's loop is gone, so its
    /// sockets are closed on return. (chitchat's own shutdown only breaks
    /// the same loop; aborting it first makes the wait certain.)
    pub async fn shutdown(&self) {
        let h = self.handle.lock().expect("gossip lock").take();
        if let Some(h) = h {
            h.abort();
            let _ = h.shutdown().await;
        }
    }
}

impl Drop for GossipHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
