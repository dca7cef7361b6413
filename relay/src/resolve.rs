//! Routing over a gossip snapshot: what the relay knows of a node, and
//! why a request cannot be routed. The lookups themselves
//! ([`FleetView::resolve_session`](crate::view::FleetView::resolve_session),
//! `resolve_node`, `node_for_create`) run on the indexed view; the tests
//! here hold them to a plain scan of every session. The session rule
//! itself is the one nodes use too ([`tether_proto::resolve_target`]); the
//! relay adds routing a full ID by its owner tag. Pure: no IO.

use std::sync::Arc;
use std::time::SystemTime;
use tether_proto::gossip::SessionRecord;
use tether_proto::{ErrorKind, ResolveError, SessionId};

/// A node as the relay sees it through gossip.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Node ID (base32).
    pub id: String,
    /// Name.
    pub name: String,
    /// QUIC address, if it accepts connections.
    pub quic: Option<String>,
    /// Certificate fingerprint (hex), the pin to dial it with.
    pub fp: String,
    /// Alive according to the failure detector.
    pub live: bool,
    /// When this relay first saw it dead.
    pub dead_since: Option<SystemTime>,
    /// Its sessions (shared with gossip's parsed member list).
    pub sessions: Arc<[(SessionId, SessionRecord)]>,
    /// Relays it keeps tunnels to (names).
    pub relays: Vec<String>,
}

/// Why a request could not be routed to a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The session target did not resolve (the rule every node uses too).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A create needs a node and several could take it.
    #[error("the fleet has several nodes ({0}); pick one with --node")]
    PickNode(String),
    /// Neither gossip nor the nodes asked know the target, and not every
    /// live node was asked (see [`crate::locate::MAX_NODES_ASKED`]).
    #[error(
        "no session matches '{target}' in gossip, nor on the {asked} of {live} live nodes \
         asked; if it was created a moment ago, retry in a second (gossip carries it), or \
         name it by its ID (`tether ls` lists them)"
    )]
    NotLocated {
        /// The name or prefix asked for.
        target: String,
        /// Nodes asked.
        asked: usize,
        /// Live nodes.
        live: usize,
    },
}

impl RouteError {
    /// The kind of `Reply::Error` that carries this refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RouteError::Resolve(e) => e.kind(),
            RouteError::PickNode(_) => ErrorKind::BadRequest,
            RouteError::NotLocated { .. } => ErrorKind::NotFound,
        }
    }
}

/// The lookups as a plain scan of every session, as the relay did them
/// before its index: the reference the index is held to (by the property
/// test below, and by the `relay-cost` bench for the figures before).
#[doc(hidden)]
pub mod scan {
    use super::*;
    use tether_proto::NodeId;
    use tether_proto::{resolve_target, Candidate};

    fn tag(n: &NodeView) -> Option<[u8; 4]> {
        n.id.parse::<NodeId>().ok().map(|n| n.tag())
    }

    /// [`FleetView::resolve_session`](crate::view::FleetView::resolve_session), by scan.
    pub fn resolve_session(
        target: &str,
        nodes: &[NodeView],
    ) -> Result<(usize, SessionId), ResolveError> {
        if let Ok(id) = target.parse::<SessionId>() {
            if let Some(i) = owner_of(&id, nodes) {
                return Ok((i, id));
            }
            if let Some(i) = nodes.iter().position(|n| tag(n) == Some(id.owner_tag())) {
                return Ok((i, id));
            }
        }
        if let Some((_, node)) = target.split_once('@') {
            resolve_node(node, nodes)?;
        }
        let candidates = nodes.iter().flat_map(|n| {
            n.sessions.iter().map(move |(id, r)| Candidate {
                id: *id,
                name: r.n.as_deref(),
                node: &n.name,
            })
        });
        let id = resolve_target(target, candidates)?;
        let i = owner_of(&id, nodes).ok_or_else(|| ResolveError::NotFound(target.to_string()))?;
        Ok((i, id))
    }

    fn owner_of(id: &SessionId, nodes: &[NodeView]) -> Option<usize> {
        nodes
            .iter()
            .position(|n| n.sessions.iter().any(|(s, _)| s == id))
    }

    /// [`FleetView::resolve_node`](crate::view::FleetView::resolve_node), by scan.
    pub fn resolve_node(target: &str, nodes: &[NodeView]) -> Result<usize, ResolveError> {
        nodes
            .iter()
            .position(|n| n.name == target || n.id == target)
            .ok_or_else(|| ResolveError::NoSuchNode(target.to_string()))
    }

    /// [`FleetView::node_for_create`](crate::view::FleetView::node_for_create), by scan.
    pub fn node_for_create(named: Option<&str>, nodes: &[NodeView]) -> Result<usize, RouteError> {
        if let Some(n) = named {
            return Ok(resolve_node(n, nodes)?);
        }
        let live: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].live).collect();
        match live.as_slice() {
            [one] => Ok(*one),
            _ => Err(RouteError::PickNode(
                nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::FleetView;
    use proptest::prelude::*;
    use tether_proto::NodeId;

    fn rec(name: Option<&str>) -> SessionRecord {
        SessionRecord {
            n: name.map(str::to_string),
            st: tether_proto::SessionState::Running,
            c: "sh".into(),
            t: 0,
            o: None,
        }
    }

    fn node(name: &str, idb: u8, sessions: Vec<(SessionId, SessionRecord)>) -> NodeView {
        NodeView {
            id: NodeId([idb; 8]).to_string(),
            name: name.into(),
            quic: Some("127.0.0.1:1".into()),
            fp: String::new(),
            live: true,
            dead_since: None,
            sessions: sessions.into(),
            relays: vec![],
        }
    }

    #[test]
    fn resolution_rules() {
        let a1 = SessionId::generate(NodeId([1; 8]));
        let b1 = SessionId::generate(NodeId([2; 8]));
        let b2 = SessionId::generate(NodeId([2; 8]));
        let fresh = SessionId::generate(NodeId([2; 8]));
        let view = FleetView::of_nodes(vec![
            node("n1", 1, vec![(a1, rec(Some("build")))]),
            node(
                "n2",
                2,
                vec![(b1, rec(Some("build"))), (b2, rec(Some("web")))],
            ),
        ]);
        let r = |t: &str| view.resolve_session(t);
        assert_eq!(r(&a1.to_string()), Ok((0, a1)));
        // Not gossiped yet: routed by the owner tag in the ID.
        assert_eq!(r(&fresh.to_string()), Ok((1, fresh)));
        assert_eq!(r("web"), Ok((1, b2)));
        assert!(
            matches!(r("build"), Err(ResolveError::Ambiguous { candidates, .. }) if candidates.contains("build@n1"))
        );
        assert_eq!(r("build@n2"), Ok((1, b1)));
        assert_eq!(r(&b2.to_string()[..20]), Ok((1, b2)));
        assert!(matches!(r("nope"), Err(ResolveError::NotFound(_))));
        assert!(matches!(r("x@n9"), Err(ResolveError::NoSuchNode(_))));
        assert_eq!(view.node_for_create(Some("n2")), Ok(1));
        assert!(matches!(
            view.node_for_create(None),
            Err(RouteError::PickNode(_))
        ));
    }

    /// A random fleet: a few node names and IDs (some shared, as gossip
    /// may show a renamed or restarted node twice), sessions with names
    /// from a small set, and now and then one ID announced by two nodes.
    fn fleet() -> impl Strategy<Value = Vec<NodeView>> {
        let spec = (
            0u8..4,
            0u8..5,
            any::<bool>(),
            prop::collection::vec(
                (
                    0u8..5,
                    prop::option::of(0u8..4),
                    any::<bool>(),
                    // Few distinct leading bytes: IDs that share prefixes.
                    (0u8..3, 0u8..2, any::<[u8; 10]>()),
                ),
                0..6,
            ),
        );
        prop::collection::vec(spec, 0..6).prop_map(|spec| {
            let mut shared: Vec<SessionId> = Vec::new();
            spec.into_iter()
                .map(|(name, idb, live, sessions)| {
                    let owner = NodeId([idb; 8]);
                    let sessions: Vec<_> = sessions
                        .into_iter()
                        .map(|(tagb, name, reuse, (b0, b1, rest))| {
                            let id = match shared.first() {
                                Some(id) if reuse => *id,
                                // Mostly the node's own tag, sometimes another's.
                                _ => {
                                    let mut b = [0u8; 16];
                                    b[0] = b0 * 8;
                                    b[1] = b1;
                                    b[2..12].copy_from_slice(&rest);
                                    b[12..].copy_from_slice(&NodeId([tagb.min(idb); 8]).tag());
                                    SessionId(b)
                                }
                            };
                            shared.push(id);
                            (
                                id,
                                rec(name.map(|n| ["web", "build", "db", "n1"][n as usize])),
                            )
                        })
                        .collect();
                    let mut n = node(&format!("n{name}"), idb, sessions);
                    n.id = owner.to_string();
                    n.live = live;
                    n
                })
                .collect()
        })
    }

    /// Targets drawn from the fleet (IDs, prefixes of every length, upper
    /// case, names, name@node, node names and IDs) and beyond it.
    fn targets(nodes: &[NodeView]) -> Vec<String> {
        let mut t: Vec<String> = ["web", "build", "db", "n1", "nope", "", "@", "x@n9", "abcd"]
            .map(String::from)
            .into();
        for n in nodes {
            t.push(n.name.clone());
            t.push(n.id.clone());
            for (id, r) in n.sessions.iter() {
                let s = id.to_string();
                for len in [1, 3, 4, 5, 8, 12, s.len()] {
                    t.push(s[..len.min(s.len())].to_string());
                }
                t.push(s.to_ascii_uppercase());
                let name = r.n.clone().unwrap_or_default();
                t.push(format!("{name}@{}", n.name));
                t.push(format!("{name}@{}", n.id));
            }
            let fresh = SessionId::generate(n.id.parse::<NodeId>().expect("a node ID"));
            t.push(fresh.to_string());
        }
        t
    }

    proptest! {
        /// The index answers every lookup as the scan of every session
        /// does: the same node, the same ID, the same error word for word.
        #[test]
        fn index_answers_like_the_scan(nodes in fleet()) {
            let view = FleetView::of_nodes(nodes.clone());
            for t in targets(&nodes) {
                prop_assert_eq!(
                    view.resolve_session(&t),
                    scan::resolve_session(&t, &nodes),
                    "target {:?}", t
                );
                prop_assert_eq!(view.resolve_node(&t), scan::resolve_node(&t, &nodes));
                prop_assert_eq!(
                    view.node_for_create(Some(&t)),
                    scan::node_for_create(Some(&t), &nodes)
                );
            }
            prop_assert_eq!(view.node_for_create(None), scan::node_for_create(None, &nodes));
        }
    }
}
