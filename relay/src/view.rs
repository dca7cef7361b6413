//! The relay's view of the fleet: its nodes as gossip announces them, and
//! an index from session ID, name, ID prefix and node to the owner, built
//! once per gossip change and shared by every request until the next.
//!
//! # Protocol flow
//! 1. A request asks the relay for its view (`Relay::view`): the gossip
//!    member list, parsed once per change ([`tether_net::gossip::MemberList`]),
//!    and the liveness notes the relay keeps.
//! 2. If neither moved since the last view was built, that view is
//!    returned; otherwise [`FleetView::new`] builds the next one.
//! 3. Resolving a target ([`FleetView::resolve_session`]) looks up the few
//!    sessions that could match it (same ID, same name, IDs with that
//!    prefix, sessions of the node named after `@`) and applies the one
//!    rule every node applies too ([`tether_proto::resolve_target`]) to
//!    those, in the order a scan would meet them: the same answer as a
//!    scan of every session, in time that grows with the matches, not with
//!    the fleet. A property test holds the index to the scan.

use crate::resolve::{NodeView, RouteError};
use std::collections::HashMap;
use std::time::SystemTime;
use tether_net::gossip::MemberList;
use tether_proto::gossip::Role;
use tether_proto::{
    resolve_target, Candidate, MemberInfo, NodeId, Principal, ResolveError, SessionId, SessionInfo,
    MIN_PREFIX_LEN,
};

/// Where a session is in a view: node index, session index on that node.
type Place = (usize, usize);

/// The fleet as this relay sees it at one gossip generation.
#[derive(Debug, Default)]
pub struct FleetView {
    /// The nodes (members with a node record), in gossip's order.
    pub nodes: Vec<NodeView>,
    /// Every member with a record, as `tether nodes` shows them.
    pub members: Vec<MemberInfo>,
    /// The first node announcing each session.
    owner: HashMap<SessionId, usize>,
    /// Sessions by name.
    named: HashMap<String, Vec<Place>>,
    /// Every session's ID as text, sorted: for prefixes.
    ids: Vec<(String, Place)>,
    /// Nodes by name (names are not unique in gossip).
    by_name: HashMap<String, Vec<usize>>,
    /// The first node of each ID.
    by_id: HashMap<String, usize>,
    /// The first node of each owner tag (the tag a session ID carries).
    by_tag: HashMap<[u8; 4], usize>,
}

impl FleetView {
    /// The view of `list`, with when this relay first saw each member
    /// dead (by member ID).
    pub fn new(list: &MemberList, dead: &HashMap<String, SystemTime>) -> FleetView {
        let dead_since = |m: &str| dead.get(m).copied();
        let nodes = node_views(list, dead);
        let mut members: Vec<MemberInfo> = list
            .iter()
            .filter_map(|m| {
                let rec = m.record.as_ref()?;
                Some(MemberInfo {
                    name: rec.name.clone(),
                    id: rec.id.clone(),
                    role: rec.role,
                    live: m.live,
                    quic: rec.quic.clone(),
                    sessions: m.sessions.len() as u32,
                    dead_since_ms: dead_since(&m.member_id).map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0)
                    }),
                })
            })
            .collect();
        members.sort_by(|a, b| (&a.role, &a.name).cmp(&(&b.role, &b.name)));
        FleetView {
            members,
            ..FleetView::of_nodes(nodes)
        }
    }

    /// A view of `nodes` alone, indexed.
    pub fn of_nodes(nodes: Vec<NodeView>) -> FleetView {
        let mut v = FleetView::default();
        for (i, n) in nodes.iter().enumerate() {
            v.by_name.entry(n.name.clone()).or_default().push(i);
            v.by_id.entry(n.id.clone()).or_insert(i);
            if let Some(tag) = n.id.parse::<NodeId>().ok().map(|id| id.tag()) {
                v.by_tag.entry(tag).or_insert(i);
            }
            for (j, (id, r)) in n.sessions.iter().enumerate() {
                v.owner.entry(*id).or_insert(i);
                if let Some(name) = &r.n {
                    v.named.entry(name.clone()).or_default().push((i, j));
                }
                v.ids.push((id.to_string(), (i, j)));
            }
        }
        v.ids.sort();
        v.nodes = nodes;
        v
    }

    /// The fleet's sessions as gossip announces them, those of dead nodes
    /// marked unreachable with `why`. A client asks each live node for the
    /// truth itself, end to end, and keeps these only for the nodes it
    /// cannot reach.
    ///
    /// Only the caller's own sessions are listed (all, for an admin):
    /// gossip does not carry shares, which the nodes answer for.
    pub fn directory(
        &self,
        who: &Principal,
        why: impl Fn(&NodeView) -> String,
    ) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .nodes
            .iter()
            .flat_map(|n| from_gossip(n, (!n.live).then(|| why(n))))
            .filter(|s| who.admin || s.owner.as_deref() == Some(who.name.as_str()))
            .collect();
        out.sort_by_key(|s| (s.created_at_ms, s.id));
        out
    }

    /// Finds the node that owns `target` (ID, unique ID prefix, name, or
    /// name@node) and the session's full ID, by [`resolve_target`] over the
    /// gossiped sessions. A full ID routes by its owner tag even before
    /// gossip has carried the session.
    pub fn resolve_session(&self, target: &str) -> Result<(usize, SessionId), ResolveError> {
        if let Ok(id) = target.parse::<SessionId>() {
            if let Some(&i) = self.owner.get(&id) {
                return Ok((i, id));
            }
            if let Some(&i) = self.by_tag.get(&id.owner_tag()) {
                return Ok((i, id));
            }
        }
        // A node without sessions is no candidate: name its absence here.
        if let Some((_, node)) = target.split_once('@') {
            self.resolve_node(node)?;
        }
        let places = self.places_matching(target);
        let candidates = places.iter().map(|&(i, j)| {
            let (id, r) = &self.nodes[i].sessions[j];
            Candidate {
                id: *id,
                name: r.n.as_deref(),
                node: &self.nodes[i].name,
            }
        });
        let id = resolve_target(target, candidates)?;
        let i = *self
            .owner
            .get(&id)
            .ok_or_else(|| ResolveError::NotFound(target.to_string()))?;
        Ok((i, id))
    }

    /// Every session [`resolve_target`] could look at for `target`, in
    /// the order of a scan (node by node): the sessions with its ID, of
    /// its name, of IDs it prefixes, or (for `name@node`) on that node.
    fn places_matching(&self, target: &str) -> Vec<Place> {
        let mut out: Vec<Place> = Vec::new();
        if let Some((_, node)) = target.split_once('@') {
            for &i in self.by_name.get(node).into_iter().flatten() {
                out.extend((0..self.nodes[i].sessions.len()).map(|j| (i, j)));
            }
        }
        if let Some(named) = self.named.get(target) {
            out.extend(named);
        }
        let lower = target.to_ascii_lowercase();
        if lower.len() >= MIN_PREFIX_LEN {
            let from = self
                .ids
                .partition_point(|(s, _)| s.as_str() < lower.as_str());
            out.extend(
                self.ids[from..]
                    .iter()
                    .take_while(|(s, _)| s.starts_with(&lower))
                    .map(|(_, p)| *p),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Finds a node by name or ID: the first in gossip's order.
    pub fn resolve_node(&self, target: &str) -> Result<usize, ResolveError> {
        let by_name = self.by_name.get(target).and_then(|v| v.first());
        let by_id = self.by_id.get(target);
        by_name
            .into_iter()
            .chain(by_id)
            .min()
            .copied()
            .ok_or_else(|| ResolveError::NoSuchNode(target.to_string()))
    }

    /// The node a create goes to: the one named, else the only live one.
    pub fn node_for_create(&self, named: Option<&str>) -> Result<usize, RouteError> {
        if let Some(n) = named {
            return Ok(self.resolve_node(n)?);
        }
        let mut live = (0..self.nodes.len()).filter(|&i| self.nodes[i].live);
        match (live.next(), live.next()) {
            (Some(one), None) => Ok(one),
            _ => Err(RouteError::PickNode(
                self.nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }
}

/// The nodes of `list` (members with a node record), in gossip's order,
/// with when this relay first saw each dead.
pub fn node_views(list: &MemberList, dead: &HashMap<String, SystemTime>) -> Vec<NodeView> {
    list.iter()
        .filter_map(|m| {
            let rec = m.record.as_ref()?;
            (rec.role == Role::Node).then(|| NodeView {
                id: rec.id.clone(),
                name: rec.name.clone(),
                quic: rec.quic.clone(),
                fp: rec.fp.clone(),
                live: m.live,
                dead_since: dead.get(&m.member_id).copied(),
                sessions: m.sessions.clone(),
                relays: rec.relays.clone(),
            })
        })
        .collect()
}

/// What gossip says of a node's sessions; `why` it is unreachable, if it is.
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
