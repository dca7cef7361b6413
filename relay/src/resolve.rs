//! Session and node resolution over a gossip snapshot. Pure: no IO, so it
//! is tested directly.

use std::time::SystemTime;
use tether_proto::gossip::SessionRecord;
use tether_proto::{NodeId, SessionId};

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

/// Why a target did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Nothing matches.
    #[error("no session matches '{0}' in the fleet; `tether ls` lists the sessions")]
    NotFound(String),
    /// Several sessions match.
    #[error("'{0}' matches several sessions ({1}); give more characters of the ID, or name@node")]
    Ambiguous(String, String),
    /// No node has that name or ID.
    #[error("no node named '{0}' in the fleet")]
    NoSuchNode(String),
    /// A create needs a node and several could take it.
    #[error("the fleet has several nodes ({0}); pick one with --node")]
    PickNode(String),
}

/// Finds the node that owns `target` (ID, unique ID prefix, name, or
/// name@node) and the session's full ID.
pub fn resolve_session(
    target: &str,
    nodes: &[NodeView],
) -> Result<(usize, SessionId), ResolveError> {
    // A full ID: its owner is known from the tag even before gossip has
    // carried the session itself.
    if let Ok(id) = target.parse::<SessionId>() {
        if let Some(i) = nodes
            .iter()
            .position(|n| n.sessions.iter().any(|(s, _)| *s == id))
        {
            return Ok((i, id));
        }
        if let Some(i) = nodes.iter().position(|n| n.tag() == Some(id.owner_tag())) {
            return Ok((i, id));
        }
    }
    if let Some((name, node)) = target.split_once('@') {
        let i = resolve_node(node, nodes)?;
        return nodes[i]
            .sessions
            .iter()
            .find(|(_, r)| r.n.as_deref() == Some(name))
            .map(|(id, _)| (i, *id))
            .ok_or_else(|| ResolveError::NotFound(target.to_string()));
    }
    let by_name: Vec<(usize, SessionId)> = all(nodes)
        .filter(|(_, _, r)| r.n.as_deref() == Some(target))
        .map(|(i, id, _)| (i, id))
        .collect();
    match by_name.as_slice() {
        [one] => return Ok(*one),
        [] => {}
        many => {
            return Err(ResolveError::Ambiguous(
                target.to_string(),
                many.iter()
                    .map(|(i, _)| format!("{target}@{}", nodes[*i].name))
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
        }
    }
    let lower = target.to_ascii_lowercase();
    if lower.is_empty() || tether_proto::ids::validate_prefix(&lower).is_err() {
        return Err(ResolveError::NotFound(target.to_string()));
    }
    let by_prefix: Vec<(usize, SessionId)> = all(nodes)
        .filter(|(_, id, _)| id.to_string().starts_with(&lower))
        .map(|(i, id, _)| (i, id))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok(*one),
        [] => Err(ResolveError::NotFound(target.to_string())),
        many => Err(ResolveError::Ambiguous(
            target.to_string(),
            many.iter()
                .take(5)
                .map(|(_, id)| id.short())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

fn all(nodes: &[NodeView]) -> impl Iterator<Item = (usize, SessionId, &SessionRecord)> {
    nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.sessions.iter().map(move |(id, r)| (i, *id, r)))
}

/// Finds a node by name or ID.
pub fn resolve_node(target: &str, nodes: &[NodeView]) -> Result<usize, ResolveError> {
    nodes
        .iter()
        .position(|n| n.name == target || n.id == target)
        .ok_or_else(|| ResolveError::NoSuchNode(target.to_string()))
}

/// The node a create goes to: the one named, else the only live one.
pub fn node_for_create(named: Option<&str>, nodes: &[NodeView]) -> Result<usize, ResolveError> {
    if let Some(n) = named {
        return resolve_node(n, nodes);
    }
    let live: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].live).collect();
    match live.as_slice() {
        [one] => Ok(*one),
        _ => Err(ResolveError::PickNode(
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
            st: "running".into(),
            c: "sh".into(),
            t: 0,
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
            matches!(resolve_session("build", &nodes), Err(ResolveError::Ambiguous(_, c)) if c.contains("build@n1"))
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
            Err(ResolveError::PickNode(_))
        ));
    }
}
