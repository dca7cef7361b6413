//! What the relay answers from gossip alone: its indexed view of the
//! fleet, the fleet's session directory, its members, and the metrics
//! text. (A name gossip does not know yet is [`crate::locate`]'s.)

use crate::pool::Pool;
use crate::server::Relay;
use crate::view::FleetView;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tether_net::metrics::Exposition;
use tether_proto::gossip::Role;
use tether_proto::{Principal, SessionInfo};

impl Relay {
    /// The fleet as gossip announces it now, indexed: built again only
    /// when gossip's member list or this relay's liveness notes changed
    /// (see [`crate::view`]).
    pub(crate) async fn view(&self) -> Arc<FleetView> {
        let list = self.gossip.members().await;
        let epoch = self.dead_epoch.load(Ordering::Acquire);
        let mut cached = self.view.lock().expect("view lock");
        if let Some((generation, e, v)) = &*cached {
            if *generation == list.generation && *e == epoch {
                return v.clone();
            }
        }
        let dead = self.dead_since.lock().expect("lock").clone();
        let v = Arc::new(FleetView::new(&list, &dead));
        *cached = Some((list.generation, epoch, v.clone()));
        v
    }

    pub(crate) async fn metrics(&self) -> String {
        let view = self.view().await;
        let count = |role: Role, live: bool| {
            view.members
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
                ("role", "node_live", count(Role::Node, true)),
                ("role", "node_dead", count(Role::Node, false)),
                ("role", "relay_live", count(Role::Relay, true)),
                ("role", "relay_dead", count(Role::Relay, false)),
            ],
        );
        x.metric(
            "tether_tunnels_held",
            "gauge",
            "Node tunnels this relay holds.",
            self.tunnels.lock().expect("tunnels lock").len() as u64,
        );
        let pooled = |pools: &mut HashMap<String, Pool>| {
            pools.values_mut().map(|p| p.open() as u64).sum::<u64>()
        };
        let dialed = pooled(&mut *self.conns.lock().await);
        let tunnels = pooled(&mut self.tunnels.lock().expect("tunnels lock"));
        x.labelled(
            "tether_relay_connections",
            "gauge",
            "Connections the relay spreads routed streams over: those it dialed (to nodes, \
             to relays holding tunnels) and the tunnels nodes keep to it.",
            &[("kind", "dialed", dialed), ("kind", "tunnel", tunnels)],
        );
        x.metric(
            "tether_relay_locate_misses",
            "gauge",
            "Names no node had a moment ago, answered without asking nodes again.",
            self.misses.lock().expect("misses lock").len() as u64,
        );
        x.counters(&self.counters);
        x.limits(&self.admission.stats, &[]);
        x.gossip(&self.gossip.stats);
        x.finish()
    }

    /// The fleet's sessions as gossip announces them ([`FleetView::directory`]),
    /// those of nodes the failure detector deems dead marked unreachable.
    pub(crate) fn directory(&self, who: &Principal, view: &FleetView) -> Vec<SessionInfo> {
        view.directory(who, |n| self.unreachable(n, "marked dead"))
    }
}
