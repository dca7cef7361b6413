//! The node's metrics text: sessions by state, attached clients, bytes,
//! splices, tunnels, gossip.

use super::Node;
use tether_net::gossip::GossipHandle;
use tether_net::metrics::Exposition;

impl Node {
    /// The metrics text.
    pub(crate) fn metrics(&self, g: Option<&GossipHandle>) -> String {
        let c = self.sessions.lock().expect("sessions lock").counts();
        let mut x = Exposition::default();
        x.labelled(
            "tether_sessions",
            "gauge",
            "Sessions of this node, by state.",
            &[
                ("state", "running", c.running),
                ("state", "exited", c.exited),
                ("state", "lost", c.lost),
                ("state", "damaged", c.damaged),
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
}
