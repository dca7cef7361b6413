//! What the relay answers by asking several nodes at once, or from gossip
//! alone: the fleet's session list, its members, a name gossip does not
//! know yet, and the metrics text.

use crate::pool::Pool;
use crate::resolve::{node_views, NodeView};
use crate::server::Relay;
use std::collections::HashMap;
use std::sync::Arc;
use tether_net::metrics::Exposition;
use tether_proto::gossip::Role;
use tether_proto::{
    MemberInfo, NodeId, Principal, Reply, Request, ResolveError, SessionId, SessionInfo,
};

impl Relay {
    pub(crate) async fn nodes(&self) -> Vec<NodeView> {
        let dead = self.dead_since.lock().expect("lock").clone();
        node_views(self.gossip.members().await, &dead)
    }

    pub(crate) async fn metrics(&self) -> String {
        let members = self.members().await;
        let count = |role: Role, live: bool| {
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
        x.counters(&self.counters);
        x.limits(&self.admission.stats, &[]);
        x.gossip(&self.gossip.stats);
        x.finish()
    }

    /// Asks every live node this relay reaches itself (directly or by
    /// its tunnel) whether it has `target`; `None` when none has.
    pub(crate) async fn ask_nodes(
        self: &Arc<Self>,
        target: &str,
        nodes: &[NodeView],
    ) -> Option<Result<(usize, SessionId), ResolveError>> {
        let req = Request::Locate {
            target: target.to_string(),
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.live) {
            let (relay, n, req) = (self.clone(), n.clone(), req.clone());
            set.spawn(async move {
                let (mut rd, _wr, _lease) = relay.open_to(&n, &req, true).await.ok()?;
                match rd.control::<Reply>().await.ok()? {
                    Reply::Located { id } => Some((i, id)),
                    _ => None,
                }
            });
        }
        let mut found: Vec<(usize, SessionId)> =
            set.join_all().await.into_iter().flatten().collect();
        found.sort();
        match found.as_slice() {
            [] => None,
            [one] => Some(Ok(*one)),
            many => Some(Err(ResolveError::Ambiguous {
                target: target.to_string(),
                candidates: many
                    .iter()
                    .map(|(i, _)| format!("{target}@{}", nodes[*i].name))
                    .collect::<Vec<_>>()
                    .join(", "),
                by: tether_proto::resolve::Ambiguity::Name,
            })),
        }
    }

    pub(crate) async fn members(&self) -> Vec<MemberInfo> {
        let dead = self.dead_since.lock().expect("lock").clone();
        let mut out: Vec<_> = self
            .gossip
            .members()
            .await
            .into_iter()
            .filter_map(|m| {
                let rec = m.record?;
                Some(MemberInfo {
                    name: rec.name,
                    id: rec.id,
                    role: rec.role,
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

    /// The fleet's sessions as gossip announces them, those of nodes the
    /// failure detector deems dead marked unreachable. A client asks each
    /// live node for the truth itself, end to end, and keeps these only
    /// for the nodes it cannot reach.
    ///
    /// Only the caller's own sessions are listed (all, for an admin):
    /// gossip does not carry shares, which the nodes answer for.
    pub(crate) fn directory(&self, who: &Principal, nodes: &[NodeView]) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = nodes
            .iter()
            .flat_map(|n| {
                let why = (!n.live).then(|| self.unreachable(n, "marked dead"));
                from_gossip(n, why)
            })
            .filter(|s| who.admin || s.owner.as_deref() == Some(who.name.as_str()))
            .collect();
        out.sort_by_key(|s| (s.created_at_ms, s.id));
        out
    }
}

/// What gossip says of an unreachable node's sessions.
fn from_gossip(node: &NodeView, why: Option<String>) -> Vec<SessionInfo> {
    let node_id = node.id.parse::<NodeId>().unwrap_or(NodeId([0; 8]));
    node.sessions
        .iter()
        .map(|(id, r)| SessionInfo {
            name: r.n.clone(),
            command: vec![r.c.clone()],
            created_at_ms: r.t * 1000,
            node_name: Some(node.name.clone()),
            unreachable: why.clone(),
            owner: r.o.clone(),
            ..SessionInfo::new(*id, node_id, r.st)
        })
        .collect()
}
