//! The node's part in a fleet: keeping its gossip keys equal to its
//! sessions, and keeping tunnels to relays for a node that cannot accept
//! inbound connections.

use super::Node;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tether_net::gossip::GossipHandle;
use tether_net::tls::fleet;
use tether_proto::gossip::{NodeRecord, SessionRecord};
use tether_proto::SessionId;
use tracing::{debug, info, warn};

/// How often gossip keys are compared with the sessions without a change.
const RESYNC: Duration = Duration::from_secs(5);

impl Node {
    /// Keeps this node's gossip keys equal to its sessions.
    pub(crate) async fn gossip_sync(self: Arc<Self>, g: Arc<GossipHandle>) -> anyhow::Result<()> {
        let mut announced: BTreeMap<SessionId, SessionRecord> = BTreeMap::new();
        loop {
            let now = self
                .sessions
                .lock()
                .expect("sessions lock")
                .gossip_records();
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
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// Announces the relays this node holds tunnels to.
    async fn announce_tunnels(&self, gossip: &Option<(Arc<GossipHandle>, NodeRecord)>) {
        let Some((h, rec)) = gossip else { return };
        let mut rec = rec.clone();
        rec.relays = self
            .tunnels
            .lock()
            .expect("tunnels lock")
            .iter()
            .cloned()
            .collect();
        h.set_record(&rec).await;
    }

    /// Keeps a tunnel to the relay at `addr`: an outbound QUIC connection on
    /// which the relay opens the streams of its clients. Reconnects with
    /// bounded backoff.
    pub(crate) async fn keep_tunnel(
        self: Arc<Self>,
        endpoint: quinn::Endpoint,
        dial: quinn::ClientConfig,
        addr: String,
        gossip: Option<(Arc<GossipHandle>, NodeRecord)>,
        revocations: Arc<tether_net::tls::revoke::Revocations>,
    ) -> anyhow::Result<()> {
        let t = self.timeouts;
        let mut backoff = t.tunnel_backoff_min;
        loop {
            let attempt = async {
                let sa = tokio::net::lookup_host(&addr)
                    .await?
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("no address"))?;
                let conn = endpoint
                    .connect_with(dial.clone(), sa, "relay.tether")?
                    .await?;
                Ok::<_, anyhow::Error>(conn)
            };
            match tokio::time::timeout(t.tunnel_dial, attempt).await {
                Ok(Ok(conn)) => {
                    backoff = t.tunnel_backoff_min;
                    let relay = fleet::peer_of_connection(&conn)
                        .map(|p| p.name)
                        .unwrap_or_else(|| addr.clone());
                    info!(%relay, %addr, "tunnel up");
                    let fresh = self
                        .tunnels
                        .lock()
                        .expect("tunnels lock")
                        .insert(relay.clone());
                    if fresh {
                        self.announce_tunnels(&gossip).await;
                    }
                    // Cut when a CRL revokes the relay.
                    let r = revocations
                        .guard(&conn, self.clone().serve_conn(conn.clone()))
                        .await;
                    warn!(%relay, err = ?r.err().map(|e| e.to_string()), "tunnel down; reconnecting");
                    self.tunnels.lock().expect("tunnels lock").remove(&relay);
                    self.announce_tunnels(&gossip).await;
                }
                Ok(Err(err)) => debug!(%addr, err = %format!("{err:#}"), "tunnel dial failed"),
                Err(_) => debug!(%addr, "tunnel dial timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(t.tunnel_backoff_max);
        }
    }
}

/// The relays a node holds tunnels to.
pub(crate) type Tunnels = std::sync::Mutex<BTreeSet<String>>;
