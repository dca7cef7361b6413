//! One session as the daemon holds it: what was recorded at creation, where
//! its files are, and what the daemon knows of its life.
//!
//! A session whose `meta.json` was unreadable when the daemon adopted it
//! stays listed, as `damaged`, with what is still known
//! ([`Entry::damage`]), so that it can be inspected, signalled and removed.

use crate::ring::Ring;
use crate::store::{self, ExitRecord, KeeperRecord, SessionMeta, SessionPaths};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tether_proto::{Offset, SessionInfo, SessionState};
use tokio::sync::watch;

/// What the daemon knows of a session's life.
#[derive(Debug, Clone)]
pub(crate) enum Life {
    Running,
    Exited(ExitRecord),
    Lost,
}

impl Life {
    /// The state on the wire.
    pub fn state(&self) -> SessionState {
        match self {
            Life::Running => SessionState::Running,
            Life::Exited(_) => SessionState::Exited,
            Life::Lost => SessionState::Lost,
        }
    }
}

/// A session of this node.
pub(crate) struct Entry {
    /// What was recorded at creation; for a session whose `meta.json` was
    /// unreadable, what is still known ([`SessionMeta::unknown`], or the
    /// keeper's own account).
    pub meta: SessionMeta,
    pub paths: SessionPaths,
    /// Why its `meta.json` could not be read at adoption, if it could not.
    pub damage: Option<String>,
    /// Changes when the session ends or is lost.
    pub life: watch::Sender<Life>,
    /// Clients attached through this daemon now.
    pub clients: AtomicU32,
}

impl Entry {
    #[cfg(test)]
    pub fn new(meta: SessionMeta, paths: SessionPaths, life: Life) -> Arc<Entry> {
        Entry::with_damage(meta, paths, life, None)
    }

    /// A session whose metadata is damaged (`damage` says how), or not.
    pub fn with_damage(
        meta: SessionMeta,
        paths: SessionPaths,
        life: Life,
        damage: Option<String>,
    ) -> Arc<Entry> {
        Arc::new(Entry {
            meta,
            paths,
            damage,
            life: watch::channel(life).0,
            clients: AtomicU32::new(0),
        })
    }

    /// Its state now: `damaged` for damaged metadata.
    pub fn state(&self) -> SessionState {
        if self.damage.is_some() {
            return SessionState::Damaged;
        }
        self.life.borrow().state()
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        matches!(*self.life.borrow(), Life::Running)
    }

    /// `name (short ID)`, or the short ID.
    pub fn label(&self) -> String {
        match &self.meta.name {
            Some(n) => format!("{n} ({})", self.meta.id.short()),
            None => self.meta.id.short(),
        }
    }

    /// Start of the ring and end of output, from the ring file (or the exit
    /// record when the ring is unreadable).
    pub fn ring_bounds(&self) -> (Offset, Offset) {
        match Ring::open(&self.paths.ring()) {
            Ok(r) => (r.start(), r.end()),
            Err(_) => match &*self.life.borrow() {
                Life::Exited(r) => (r.end, r.end),
                _ => (Offset(0), Offset(0)),
            },
        }
    }

    /// Sets `info`'s state to `damaged` if the session's metadata was
    /// damaged.
    pub fn mark_damage(&self, info: &mut SessionInfo) {
        if self.damage.is_some() {
            info.state = SessionState::Damaged;
        }
    }

    /// Its info from the daemon's state and the files, without asking the
    /// keeper (cheap enough for every session of a listing).
    pub fn static_info(&self) -> SessionInfo {
        let life = self.life.borrow().clone();
        let (start, end) =
            crate::ring::peek(&self.paths.ring()).unwrap_or_else(|| self.ring_bounds());
        let pid = store::read_json::<KeeperRecord>(&self.paths.keeper())
            .ok()
            .flatten()
            .filter(|_| matches!(life, Life::Running))
            .map(|k| k.pid);
        let exit = match &life {
            Life::Exited(r) => Some(r),
            _ => None,
        };
        self.meta.info(store::Figures {
            state: self.state(),
            exit,
            size: self.meta.size,
            start,
            end,
            clients: self.clients.load(Ordering::Relaxed),
            pid,
        })
    }

    /// Counts a client attached through this daemon while the guard lives.
    pub fn attached(&self) -> ClientCount<'_> {
        self.clients.fetch_add(1, Ordering::Relaxed);
        ClientCount(&self.clients)
    }
}

/// Counts a client attached through this daemon while it lives.
pub(crate) struct ClientCount<'a>(&'a AtomicU32);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
