//! The cluster as gossip announces it, parsed once per change.
//!
//! Every member's records are JSON strings in chitchat's state: a node
//! record and one record per session. A relay reads the whole cluster on
//! every request it routes, and its liveness watch reads it every 50 ms; at
//! 1,000 members with 10 sessions each that was 11,000 JSON records parsed
//! per read. [`MemberCache`] keeps what it parsed, by member, with the
//! member's chitchat version: a read walks the member states comparing
//! versions and liveness (no parse, no allocation), and a member whose
//! version moved is parsed again alone.
//!
//! # Protocol flow
//! 1. A read locks chitchat and lists the live members.
//! 2. [`MemberCache::read`] compares every member's `(id, max_version,
//!    live)` with what it saw last. chitchat bumps `max_version` on every
//!    key set or deleted, never on heartbeats, so a quiet cluster compares
//!    equal and gets the same [`MemberList`] back (an `Arc`).
//! 3. Otherwise it builds a new list with the next `generation`, reusing
//!    the parsed records of every member whose version did not move.
//!
//! Callers that derive their own views (a relay's index) key them on
//! [`MemberList::generation`].

use super::Member;
use chitchat::{ChitchatId, NodeState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tether_proto::gossip::{NodeRecord, SessionRecord, NODE_KEY, SESSION_PREFIX};
use tether_proto::SessionId;

/// Every member known, with liveness, self included: one reading of the
/// cluster, shared by every caller until the cluster changes.
#[derive(Debug, Default)]
pub struct MemberList {
    /// Bumped each time the list is rebuilt (a record, a session or a
    /// liveness verdict changed); equal generations are equal lists.
    pub generation: u64,
    /// The members, in chitchat's order (by member ID).
    pub members: Vec<Member>,
}

impl std::ops::Deref for MemberList {
    type Target = [Member];
    fn deref(&self) -> &[Member] {
        &self.members
    }
}

/// What one member's keys parse to.
#[derive(Debug, Clone)]
struct Parsed {
    record: Option<NodeRecord>,
    sessions: Arc<[(SessionId, SessionRecord)]>,
}

/// One member as the cache last saw it.
#[derive(Debug)]
struct Seen {
    version: chitchat::Version,
    live: bool,
    parsed: Parsed,
}

/// The parsed cluster, and what it was parsed from.
#[derive(Debug, Default)]
pub(crate) struct MemberCache {
    seen: BTreeMap<ChitchatId, Seen>,
    list: Arc<MemberList>,
}

impl MemberCache {
    /// The member list of `c`, parsed again only where it changed.
    pub(crate) fn read(&mut self, c: &chitchat::Chitchat) -> Arc<MemberList> {
        let me = c.self_chitchat_id();
        let live: HashSet<&ChitchatId> = c.live_nodes().collect();
        let is_live = |cid: &ChitchatId| live.contains(cid) || cid == me;
        let states = c.node_states();
        let unchanged = states.len() == self.seen.len()
            && states.iter().zip(&self.seen).all(|((cid, st), (scid, s))| {
                cid == scid && st.max_version() == s.version && is_live(cid) == s.live
            });
        if unchanged {
            return self.list.clone();
        }
        let mut old = std::mem::take(&mut self.seen);
        for (cid, st) in states {
            let parsed = match old.remove(cid) {
                Some(s) if s.version == st.max_version() => s.parsed,
                _ => parse(st),
            };
            let seen = Seen {
                version: st.max_version(),
                live: is_live(cid),
                parsed,
            };
            self.seen.insert(cid.clone(), seen);
        }
        self.list = Arc::new(MemberList {
            generation: self.list.generation + 1,
            members: newest_members(&self.seen),
        });
        self.list.clone()
    }
}

/// The members of `seen`, only the newest generation of each: a
/// restarted member appears twice until its old generation is forgotten.
fn newest_members(seen: &BTreeMap<ChitchatId, Seen>) -> Vec<Member> {
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for cid in seen.keys() {
        let g = newest.entry(&cid.node_id).or_insert(cid.generation_id);
        *g = (*g).max(cid.generation_id);
    }
    seen.iter()
        .filter(|(cid, _)| newest.get(&*cid.node_id) == Some(&cid.generation_id))
        .map(|(cid, s)| Member {
            member_id: cid.node_id.to_string(),
            record: s.parsed.record.clone(),
            sessions: s.parsed.sessions.clone(),
            live: s.live,
            gossip_addr: cid.gossip_advertise_addr,
        })
        .collect()
}

/// A member's record and sessions, from its keys; what does not parse is
/// left out.
fn parse(st: &NodeState) -> Parsed {
    let record = st.get(NODE_KEY).and_then(|v| serde_json::from_str(v).ok());
    let sessions = st
        .iter_prefix(SESSION_PREFIX)
        .filter_map(|(k, v)| {
            let id = k.strip_prefix(SESSION_PREFIX)?.parse().ok()?;
            Some((id, serde_json::from_str(&v.value).ok()?))
        })
        .collect();
    Parsed { record, sessions }
}
