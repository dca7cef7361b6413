//! Routing over a gossip snapshot: which node owns a session, which node
//! takes a create. The session rule itself is the one nodes use too
//! ([`tether_proto::resolve_target`]); the relay adds routing a full ID by
//! its owner tag. Pure: no IO, so it is tested directly.

use std::collections::HashMap;
use std::time::SystemTime;
use tether_net::gossip::Member;
use tether_proto::gossip::{Role, SessionRecord};
use tether_proto::{resolve_target, Candidate, ErrorKind, NodeId, ResolveError, SessionId};

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
    /// Its sessions.
    pub sessions: Vec<(SessionId, SessionRecord)>,
    /// Relays it keeps tunnels to (names).
    pub relays: Vec<String>,
}

impl NodeView {
    fn tag(&self) -> Option<[u8; 4]> {
        self.id.parse::<NodeId>().ok().map(|n| n.tag())
    }
}

/// The nodes among gossip's `members`, as the relay routes to them
/// (members without a record, and relays, are left out); `dead_since`
/// holds when this relay first saw each member (by member ID) dead.
pub fn node_views(members: Vec<Member>, dead_since: &HashMap<String, SystemTime>) -> Vec<NodeView> {
    members
        .into_iter()
        .filter_map(|m| {
            let rec = m.record?;
            (rec.role == Role::Node).then(|| NodeView {
                id: rec.id,
                name: rec.name,
                quic: rec.quic,
                fp: rec.fp,
                live: m.live,
                dead_since: dead_since.get(&m.member_id).copied(),
                sessions: m.sessions,
                relays: rec.relays,
            })
        })
        .collect()
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
}

impl RouteError {
    /// The kind of `Reply::Error` that carries this refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RouteError::Resolve(e) => e.kind(),
            RouteError::PickNode(_) => ErrorKind::BadRequest,
        }
    }
}

/// Finds the node that owns `target` (ID, unique ID prefix, name, or
/// name@node) and the session's full ID, by [`resolve_target`] over the
/// gossiped sessions. A full ID routes by its owner tag even before gossip
/// has carried the session.
pub fn resolve_session(
    target: &str,
    nodes: &[NodeView],
) -> Result<(usize, SessionId), ResolveError> {
    if let Ok(id) = target.parse::<SessionId>() {
        if let Some(i) = owner_of(&id, nodes) {
            return Ok((i, id));
        }
        if let Some(i) = nodes.iter().position(|n| n.tag() == Some(id.owner_tag())) {
            return Ok((i, id));
        }
    }
    // A node without sessions is no candidate: name its absence here.
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

/// Finds a node by name or ID.
pub fn resolve_node(target: &str, nodes: &[NodeView]) -> Result<usize, ResolveError> {
    nodes
        .iter()
        .position(|n| n.name == target || n.id == target)
        .ok_or_else(|| ResolveError::NoSuchNode(target.to_string()))
}

/// The node a create goes to: the one named, else the only live one.
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

#[cfg(test)]
mod tests {
    use super::*;

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
            sessions,
            relays: vec![],
        }
    }

    #[test]
    fn resolution_rules() {
        let a1 = SessionId::generate(NodeId([1; 8]));
        let b1 = SessionId::generate(NodeId([2; 8]));
        let b2 = SessionId::generate(NodeId([2; 8]));
        let fresh = SessionId::generate(NodeId([2; 8]));
        let nodes = vec![
            node("n1", 1, vec![(a1, rec(Some("build")))]),
            node(
                "n2",
                2,
                vec![(b1, rec(Some("build"))), (b2, rec(Some("web")))],
            ),
        ];
        assert_eq!(resolve_session(&a1.to_string(), &nodes), Ok((0, a1)));
        // Not gossiped yet: routed by the owner tag in the ID.
        assert_eq!(resolve_session(&fresh.to_string(), &nodes), Ok((1, fresh)));
        assert_eq!(resolve_session("web", &nodes), Ok((1, b2)));
        assert!(
            matches!(resolve_session("build", &nodes), Err(ResolveError::Ambiguous { candidates, .. }) if candidates.contains("build@n1"))
        );
        assert_eq!(resolve_session("build@n2", &nodes), Ok((1, b1)));
        assert_eq!(resolve_session(&b2.to_string()[..20], &nodes), Ok((1, b2)));
        assert!(matches!(
            resolve_session("nope", &nodes),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolve_session("x@n9", &nodes),
            Err(ResolveError::NoSuchNode(_))
        ));
        assert_eq!(node_for_create(Some("n2"), &nodes), Ok(1));
        assert!(matches!(
            node_for_create(None, &nodes),
            Err(RouteError::PickNode(_))
        ));
    }
}
