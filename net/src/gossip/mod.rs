//! Gossip: chitchat over tether's sealed transport.
//!
//! Every member (node or relay) runs one [`GossipHandle`]. It announces the
//! member's [`NodeRecord`](tether_proto::gossip::NodeRecord) under one key
//! and, for a node, one key per session; [`GossipHandle::members`] reads
//! the whole cluster back with the failure detector's verdict.
//!
//! - [`seal`]: the datagram layout, keys and nonces, and every check a
//!   received datagram passes (pure, no IO);
//! - [`transport`]: chitchat's `Transport` over sealed datagrams (the IO);
//! - `codec`: chitchat's envelope codec, behind two loopback sockets only
//!   the process can reach (chitchat keeps its codec private);
//! - [`stats`]: counters by reason, and the once-per-10-s log rule.
//!
//! This module knows nothing of sessions beyond their gossip records: what
//! to announce is the node's business, how to route is the relay's.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod codec;
pub mod seal;
pub mod stats;
pub mod transport;

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
    /// File holding the cluster secret (any bytes, at least 16). Relative
    /// paths are relative to the config file.
    pub secret_file: PathBuf,
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
            socket: None,
        })
    }

    /// Reads the secret file.
    pub fn secret(&self) -> anyhow::Result<Vec<u8>> {
        let s = std::fs::read(&self.secret_file).with_context(|| {
            format!(
                "reading the cluster secret {}; make one with `head -c 32 /dev/urandom > {}`",
                self.secret_file.display(),
                self.secret_file.display()
            )
        })?;
        if s.len() < 16 {
            anyhow::bail!(
                "the cluster secret {} is shorter than 16 bytes; make a longer one",
                self.secret_file.display()
            );
        }
        Ok(s)
    }
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
    /// The cluster secret (contents of the secret file).
    pub secret: Vec<u8>,
    /// A socket bound already, used instead of binding `listen` (a test's,
    /// or one behind a fault proxy). Default: none.
    pub socket: Option<std::net::UdpSocket>,
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
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// A member of the cluster as seen through gossip.
#[derive(Debug, Clone)]
pub struct Member {
    /// chitchat's member ID.
    pub member_id: String,
    /// Its record, if announced.
    pub record: Option<tether_proto::gossip::NodeRecord>,
    /// Its sessions.
    pub sessions: Vec<(tether_proto::SessionId, tether_proto::gossip::SessionRecord)>,
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
    /// Datagram counters.
    pub stats: Arc<GossipStats>,
}

impl GossipHandle {
    /// Joins the cluster and announces `record`.
    pub async fn start(
        s: GossipSettings,
        record: &tether_proto::gossip::NodeRecord,
    ) -> anyhow::Result<GossipHandle> {
        let stats = Arc::new(GossipStats::default());
        let mut transport = SealedTransport::new(
            Keyring::new(ClusterKey::from_secret(&s.secret)),
            stats.clone(),
        )
        .advertise(s.advertise);
        if let Some(sock) = s.socket {
            transport = transport.with_socket(sock);
        }
        let fd = chitchat::FailureDetectorConfig {
            initial_interval: s.interval,
            max_interval: s.interval * 10,
            // Forget dead members after a minute; their keys go with them.
            dead_node_grace_period: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let config = chitchat::ChitchatConfig {
            chitchat_id: chitchat::ChitchatId::new(
                s.member_id.clone(),
                crate::time::now_ms(),
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
        let handle = chitchat::spawn_chitchat(config, kv, &transport).await?;
        Ok(GossipHandle {
            chitchat: handle.chitchat(),
            handle: std::sync::Mutex::new(Some(handle)),
            stats,
        })
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

    /// Every member known, with liveness, self included.
    pub async fn members(&self) -> Vec<Member> {
        let cc = &self.chitchat;
        let c = cc.lock().await;
        let live: std::collections::HashSet<chitchat::ChitchatId> =
            c.live_nodes().cloned().collect();
        let me = c.self_chitchat_id().clone();
        // A restarted member appears twice until its old generation is
        // forgotten: keep only the newest generation of each member.
        let mut newest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for cid in c.node_states().keys() {
            let g = newest.entry(&cid.node_id).or_insert(cid.generation_id);
            *g = (*g).max(cid.generation_id);
        }
        let mut out = Vec::new();
        for (cid, st) in c.node_states() {
            if newest.get(&*cid.node_id) != Some(&cid.generation_id) {
                continue;
            }
            let record = st
                .get(tether_proto::gossip::NODE_KEY)
                .and_then(|v| serde_json::from_str(v).ok());
            let sessions = st
                .iter_prefix(tether_proto::gossip::SESSION_PREFIX)
                .filter_map(|(k, v)| {
                    let id = k
                        .strip_prefix(tether_proto::gossip::SESSION_PREFIX)?
                        .parse()
                        .ok()?;
                    Some((id, serde_json::from_str(&v.value).ok()?))
                })
                .collect();
            out.push(Member {
                member_id: cid.node_id.to_string(),
                record,
                sessions,
                live: live.contains(cid) || *cid == me,
                gossip_addr: cid.gossip_advertise_addr,
            });
        }
        out
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
