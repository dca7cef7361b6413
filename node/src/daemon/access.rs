//! Who may do what to a session. Pure: the rules, tested on their own.
//!
//! - A session belongs to the identity that created it: a fleet client's
//!   certificate name, or (no name) the node's local owner, the user whose
//!   state dir it is.
//! - The local owner and admin clients may do anything to any session.
//! - The owner may do anything to its sessions, and share them:
//!   `tether share TARGET --with NAME [--read-only]`.
//! - A client a session is shared with sees it, and types into it unless
//!   the share (or its certificate) is read-only.
//! - Everyone else does not see it at all: it is not listed and does not
//!   resolve, as if it did not exist.

use super::entry::Entry;
use tether_proto::Principal;

/// Who acts on a request, as a certificate says.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The state dir's owner (the local client key).
    Local,
    /// A fleet client.
    Client(Principal),
}

impl Caller {
    /// The owner name of what it creates: none for the local owner.
    pub fn owner_name(&self) -> Option<String> {
        match self {
            Caller::Local => None,
            Caller::Client(p) => Some(p.name.clone()),
        }
    }

    fn all_powerful(&self) -> bool {
        match self {
            Caller::Local => true,
            Caller::Client(p) => p.admin,
        }
    }

    fn owns(&self, e: &Entry) -> bool {
        match self {
            Caller::Local => e.meta.owner.is_none(),
            Caller::Client(p) => e.meta.owner.as_deref() == Some(&p.name),
        }
    }

    /// The share of `e` it holds, if any: `Some(read_only)`.
    fn share(&self, e: &Entry) -> Option<bool> {
        let Caller::Client(p) = self else {
            return None;
        };
        e.shares()
            .iter()
            .find(|s| s.with == p.name)
            .map(|s| s.read_only)
    }

    fn read_only_cert(&self) -> bool {
        matches!(self, Caller::Client(p) if p.read_only)
    }

    /// Whether it sees `e` at all (lists it, resolves it, reads it).
    pub fn sees(&self, e: &Entry) -> bool {
        self.all_powerful() || self.owns(e) || self.share(e).is_some()
    }

    /// Whether it may type into, resize, kill or remove `e`.
    pub fn may_write(&self, e: &Entry) -> bool {
        if self.read_only_cert() {
            return false;
        }
        self.all_powerful() || self.owns(e) || self.share(e) == Some(false)
    }

    /// Whether it may share `e` with others or take shares away.
    pub fn may_share(&self, e: &Entry) -> bool {
        !self.read_only_cert() && (self.all_powerful() || self.owns(e))
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Local => f.write_str("the local owner"),
            Caller::Client(p) if p.admin => write!(f, "admin {}", p.name),
            Caller::Client(p) if p.read_only => write!(f, "client {} (read-only)", p.name),
            Caller::Client(p) => write!(f, "client {}", p.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::entry::Life;
    use crate::store::{SessionMeta, SessionPaths};
    use std::sync::Arc;
    use tether_proto::{NodeId, SessionId, Share, WinSize};

    fn entry(owner: Option<&str>, shares: &[(&str, bool)]) -> Arc<Entry> {
        let meta = SessionMeta {
            id: SessionId([1; 16]),
            name: None,
            node: NodeId([0; 8]),
            command: vec!["sh".into()],
            launcher: Vec::new(),
            cwd: "/".into(),
            env: Vec::new(),
            created_at_ms: 0,
            ring_size: 4096,
            size: WinSize::default(),
            owner: owner.map(str::to_string),
            shared: shares
                .iter()
                .map(|(w, ro)| Share {
                    with: w.to_string(),
                    read_only: *ro,
                })
                .collect(),
            screen_history: None,
        };
        let paths = SessionPaths::new(std::path::Path::new("/nonexistent"), meta.id);
        Entry::new(meta, paths, Life::Running)
    }

    fn client(name: &str, read_only: bool, admin: bool) -> Caller {
        Caller::Client(Principal {
            name: name.into(),
            read_only,
            admin,
        })
    }

    #[test]
    fn owners_shares_admins_and_strangers() {
        let e = entry(Some("alice"), &[("bob", false), ("carol", true)]);
        let alice = client("alice", false, false);
        let bob = client("bob", false, false);
        let carol = client("carol", false, false);
        let mallory = client("mallory", false, false);
        let admin = client("root", false, true);
        let alice_ro = client("alice", true, false);
        let table = [
            (&alice, true, true, true),
            (&bob, true, true, false),
            (&carol, true, false, false),
            (&mallory, false, false, false),
            (&admin, true, true, true),
            (&Caller::Local, true, true, true),
            (&alice_ro, true, false, false),
        ];
        for (who, sees, writes, shares) in table {
            assert_eq!(who.sees(&e), sees, "{who} sees");
            assert_eq!(who.may_write(&e), writes, "{who} writes");
            assert_eq!(who.may_share(&e), shares, "{who} shares");
        }
        // The local owner's own sessions: no fleet client but admins.
        let local = entry(None, &[]);
        assert!(!alice.sees(&local) && admin.sees(&local) && Caller::Local.sees(&local));
        assert_eq!(alice.owner_name().as_deref(), Some("alice"));
        assert_eq!(Caller::Local.owner_name(), None);
    }
}
