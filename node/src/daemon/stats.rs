//! The node's metrics text: sessions by state, attached clients, bytes,
//! splices, tunnels, gossip, and creations refused by a limit.

use super::Node;
use std::sync::atomic::{AtomicU64, Ordering};
use tether_net::gossip::GossipHandle;
use tether_net::metrics::Exposition;

/// A limit of the config on what clients may make the node hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `max_sessions`.
    Sessions,
    /// `max_ring_bytes`.
    RingBytes,
    /// `max_sessions_per_identity`.
    SessionsPerIdentity,
}

impl Limit {
    /// Every limit, in the order the metrics list them.
    const ALL: [Limit; 3] = [
        Limit::Sessions,
        Limit::RingBytes,
        Limit::SessionsPerIdentity,
    ];

    /// Its config key, also its label in the metrics.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Sessions => "max_sessions",
            Limit::RingBytes => "max_ring_bytes",
            Limit::SessionsPerIdentity => "max_sessions_per_identity",
        }
    }
}

/// Creations refused, by the limit that refused them.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    sessions: AtomicU64,
    ring_bytes: AtomicU64,
    per_identity: AtomicU64,
}

impl Refusals {
    fn counter(&self, l: Limit) -> &AtomicU64 {
        match l {
            Limit::Sessions => &self.sessions,
            Limit::RingBytes => &self.ring_bytes,
            Limit::SessionsPerIdentity => &self.per_identity,
        }
    }

    /// Counts one refusal by `l`.
    pub fn count(&self, l: Limit) {
        self.counter(l).fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals by `l` so far.
    pub fn get(&self, l: Limit) -> u64 {
        self.counter(l).load(Ordering::Relaxed)
    }
}

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
            self.counters.splices_active.load(Ordering::Relaxed),
        );
        x.counters(&self.counters);
        x.metric(
            "tether_tunnels_up",
            "gauge",
            "Relays this node holds a tunnel to.",
            self.tunnels.lock().expect("tunnels lock").len() as u64,
        );
        let refused: Vec<(&str, u64)> = Limit::ALL
            .iter()
            .map(|&l| (l.key(), self.refusals.get(l)))
            .collect();
        x.limits(&self.admission.stats, &refused);
        if let Some(g) = g {
            x.gossip(&g.stats);
        }
        x.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_limit() {
        let r = Refusals::default();
        r.count(Limit::RingBytes);
        r.count(Limit::RingBytes);
        r.count(Limit::Sessions);
        assert_eq!((r.get(Limit::Sessions), r.get(Limit::RingBytes)), (1, 2));
        assert_eq!(
            Limit::ALL.map(Limit::key),
            [
                "max_sessions",
                "max_ring_bytes",
                "max_sessions_per_identity"
            ]
        );
    }
}
