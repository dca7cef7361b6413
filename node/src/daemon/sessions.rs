//! The session table: every session the daemon knows, by ID. A pure
//! structure (no IO): insert, resolve a target, whether a name is taken,
//! what the retention limit prunes, what gossip should announce.

use super::entry::{Entry, Life};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tether_proto::gossip::{short_command, SessionRecord};
use tether_proto::{resolve_target, Candidate, ErrorKind, SessionId, SessionState};

/// A failure answered to the client as `Reply::Error`.
#[derive(Debug)]
pub(crate) struct Refusal(pub ErrorKind, pub String);

impl<E: Into<anyhow::Error>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Refusal(ErrorKind::Internal, format!("{:#}", e.into()))
    }
}

/// Refuses with `kind` and a message that says what to do.
pub(crate) fn refuse<T>(kind: ErrorKind, msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(kind, msg.into()))
}

/// Sessions of this node, by ID.
#[derive(Default)]
pub(crate) struct SessionTable {
    by_id: BTreeMap<SessionId, Arc<Entry>>,
}

/// Sessions by state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub running: u64,
    pub exited: u64,
    pub lost: u64,
    pub damaged: u64,
}

impl SessionTable {
    /// Adds (or replaces) a session.
    pub fn insert(&mut self, e: Arc<Entry>) {
        self.by_id.insert(e.meta.id, e);
    }

    /// Forgets a session.
    pub fn remove(&mut self, id: &SessionId) -> Option<Arc<Entry>> {
        self.by_id.remove(id)
    }

    /// Every session, oldest ID first.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.by_id.values().cloned().collect()
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Finds a session by full ID, name, `name@node` or unique ID prefix:
    /// the rule relays use too ([`resolve_target`]).
    pub fn resolve(&self, target: &str, node_name: &str) -> Result<Arc<Entry>, Refusal> {
        self.resolve_among(target, node_name, |_| true)
    }

    /// The same among the sessions `visible` lets through: the others do
    /// not exist for this caller.
    pub fn resolve_among(
        &self,
        target: &str,
        node_name: &str,
        visible: impl Fn(&Entry) -> bool,
    ) -> Result<Arc<Entry>, Refusal> {
        let candidates = self
            .by_id
            .values()
            .filter(|e| visible(e))
            .map(|e| Candidate {
                id: e.meta.id,
                name: e.meta.name.as_deref(),
                node: node_name,
            });
        match resolve_target(target, candidates) {
            Ok(id) => Ok(self.by_id[&id].clone()),
            Err(e) => refuse(e.kind(), e.to_string()),
        }
    }

    /// The session that holds `name`.
    pub fn name_taken(&self, name: &str) -> Option<Arc<Entry>> {
        self.by_id
            .values()
            .find(|e| e.meta.name.as_deref() == Some(name))
            .cloned()
    }

    /// The ended sessions beyond the newest `retain`, oldest first: what
    /// the retention limit removes.
    pub fn to_prune(&self, retain: usize) -> Vec<(SessionId, PathBuf)> {
        let mut ended: Vec<(u64, SessionId, PathBuf)> = self
            .by_id
            .values()
            .filter_map(|e| match &*e.life.borrow() {
                Life::Running => None,
                Life::Exited(r) => Some((r.exited_at_ms, e.meta.id, e.paths.dir.clone())),
                Life::Lost => Some((e.meta.created_at_ms, e.meta.id, e.paths.dir.clone())),
            })
            .collect();
        if ended.len() <= retain {
            return Vec::new();
        }
        ended.sort();
        let excess = ended.len() - retain;
        ended
            .into_iter()
            .take(excess)
            .map(|(_, id, dir)| (id, dir))
            .collect()
    }

    /// What this node announces by gossip: one record per session.
    pub fn gossip_records(&self) -> BTreeMap<SessionId, SessionRecord> {
        self.by_id
            .values()
            .map(|e| {
                (
                    e.meta.id,
                    SessionRecord {
                        n: e.meta.name.clone(),
                        st: e.state(),
                        c: short_command(&e.meta.command),
                        o: e.meta.owner.clone(),
                        t: e.meta.created_at_ms / 1000,
                    },
                )
            })
            .collect()
    }

    /// Sessions by state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for e in self.by_id.values() {
            match e.state() {
                SessionState::Running => c.running += 1,
                SessionState::Exited => c.exited += 1,
                SessionState::Damaged => c.damaged += 1,
                // A table entry is never of a state this build lacks.
                SessionState::Lost | SessionState::Unknown => c.lost += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ExitRecord, SessionMeta, SessionPaths};
    use tether_proto::{ExitStatus, NodeId, Offset, WinSize};

    fn entry(name: Option<&str>, created: u64, life: Life) -> Arc<Entry> {
        let id = SessionId::generate(NodeId([7; 8]));
        let meta = SessionMeta {
            id,
            name: name.map(str::to_string),
            node: NodeId([7; 8]),
            command: vec!["sh".into()],
            launcher: vec![],
            cwd: "/".into(),
            env: vec![],
            created_at_ms: created,
            ring_size: 4096,
            size: WinSize::default(),
            owner: None,
            shared: Vec::new(),
            screen_history: None,
        };
        Entry::new(
            meta,
            SessionPaths::new(std::path::Path::new("/s"), id),
            life,
        )
    }

    fn exited(at: u64) -> Life {
        Life::Exited(ExitRecord {
            status: ExitStatus {
                code: Some(0),
                signal: None,
            },
            end: Offset(0),
            exited_at_ms: at,
        })
    }

    impl SessionTable {
        fn resolve_in(&self, target: &str) -> Result<Arc<Entry>, Refusal> {
            self.resolve(target, "n1")
        }
    }

    #[test]
    fn resolves_by_id_name_and_unique_prefix() {
        let mut t = SessionTable::default();
        let a = entry(Some("build"), 1, Life::Running);
        let b = entry(None, 2, Life::Running);
        t.insert(a.clone());
        t.insert(b.clone());
        assert_eq!(
            t.resolve_in(&a.meta.id.to_string()).unwrap().meta.id,
            a.meta.id
        );
        assert_eq!(t.resolve_in("build").unwrap().meta.id, a.meta.id);
        assert_eq!(t.resolve_in("build@n1").unwrap().meta.id, a.meta.id);
        assert_eq!(
            t.resolve_in(&b.meta.id.to_string()[..20]).unwrap().meta.id,
            b.meta.id
        );
        let Refusal(kind, msg) = t.resolve_in("nosuch").err().unwrap();
        assert_eq!(kind, ErrorKind::NotFound);
        assert!(msg.contains("no session matches 'nosuch'"), "{msg}");
        // Both IDs carry the same owner tag at the end, but their random
        // parts differ at the start: the empty prefix is never a match.
        assert_eq!(t.resolve_in("").err().unwrap().0, ErrorKind::NotFound);
    }

    #[test]
    fn a_shared_prefix_is_ambiguous() {
        let mut t = SessionTable::default();
        // Two sessions whose IDs share their first 4 characters (20 bits).
        for i in 0..2u8 {
            let e = entry(None, i as u64, Life::Running);
            let mut meta = e.meta.clone();
            meta.id.0[..3].copy_from_slice(&[0xab, 0xcd, 0xe0 | i]);
            t.insert(Entry::new(
                meta.clone(),
                SessionPaths::new(std::path::Path::new("/s"), meta.id),
                Life::Running,
            ));
        }
        let ids: Vec<String> = t.entries().iter().map(|e| e.meta.id.to_string()).collect();
        assert_eq!(ids[0][..4], ids[1][..4]);
        assert_eq!(
            t.resolve_in(&ids[0][..4]).err().unwrap().0,
            ErrorKind::Ambiguous
        );
        // Shorter is no ID prefix at all.
        assert_eq!(
            t.resolve_in(&ids[0][..3]).err().unwrap().0,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn names_are_taken_until_removed() {
        let mut t = SessionTable::default();
        let a = entry(Some("web"), 1, exited(5));
        t.insert(a.clone());
        let holder = t.name_taken("web").unwrap();
        assert_eq!(
            (holder.meta.id, holder.state()),
            (a.meta.id, SessionState::Exited)
        );
        assert!(t.name_taken("db").is_none());
        t.remove(&a.meta.id);
        assert!(t.name_taken("web").is_none());
    }

    #[test]
    fn prunes_the_oldest_ended_sessions_only() {
        let mut t = SessionTable::default();
        let running = entry(None, 0, Life::Running);
        let old = entry(None, 1, exited(10));
        let lost = entry(None, 5, Life::Lost);
        let new = entry(None, 2, exited(20));
        for e in [&running, &old, &lost, &new] {
            t.insert(e.clone());
        }
        assert!(t.to_prune(3).is_empty());
        let ids: Vec<SessionId> = t.to_prune(1).into_iter().map(|(id, _)| id).collect();
        // Ended at 5 (lost, by creation), 10, 20: the two oldest go.
        assert_eq!(ids, vec![lost.meta.id, old.meta.id]);
        assert_eq!(
            t.counts(),
            Counts {
                running: 1,
                exited: 2,
                lost: 1,
                damaged: 0,
            }
        );
    }

    #[test]
    fn damaged_sessions_are_counted_resolved_and_pruned_like_others() {
        let mut t = SessionTable::default();
        let ok = entry(None, 1, Life::Running);
        let id = SessionId::generate(NodeId([7; 8]));
        let paths = SessionPaths::new(std::path::Path::new("/s"), id);
        let damaged = Entry::with_damage(
            SessionMeta::unknown(id, NodeId([7; 8]), &paths),
            paths,
            Life::Lost,
            Some("meta.json is corrupt".into()),
        );
        t.insert(ok.clone());
        t.insert(damaged.clone());
        assert_eq!(t.counts().damaged, 1);
        assert_eq!(t.counts().running, 1);
        assert_eq!(t.resolve_in(&id.to_string()).unwrap().meta.id, id);
        assert_eq!(t.gossip_records()[&id].st, SessionState::Damaged);
        // Ended, it counts toward the retention limit like any other.
        assert_eq!(t.to_prune(0), vec![(id, damaged.paths.dir.clone())]);
    }

    #[test]
    fn gossip_records_follow_the_table() {
        let mut t = SessionTable::default();
        let a = entry(Some("x"), 3_000, Life::Running);
        t.insert(a.clone());
        let r = &t.gossip_records()[&a.meta.id];
        assert_eq!(
            (r.n.as_deref(), r.st, r.t),
            (Some("x"), SessionState::Running, 3)
        );
        a.life.send_replace(Life::Lost);
        assert_eq!(t.gossip_records()[&a.meta.id].st, SessionState::Lost);
    }
}
