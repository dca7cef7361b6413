//! One session as the daemon holds it: what was recorded at creation, where
//! its files are, and what the daemon knows of its life.
//!
//! A session whose files are damaged stays listed, as `damaged`, with what
//! is still known, so that it can be inspected, signalled and removed: its
//! `meta.json` unreadable when the daemon adopted it ([`Entry::damage`]),
//! or its ring file's header impossible ([`RingError::Corrupt`], checked
//! whenever the ring is read, since a running keeper rewrites the header
//! with every output).

use crate::ring::{self, RingError};
use crate::store::{self, ExitRecord, KeeperRecord, SessionMeta, SessionPaths};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tether_proto::{ErrorKind, Offset, Reply, SessionInfo, SessionState};
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
    /// Who it is shared with now (`meta.shared` as it was recorded).
    shares: std::sync::RwLock<Vec<tether_proto::Share>>,
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
        let meta_shares = meta.shared.clone();
        Arc::new(Entry {
            meta,
            paths,
            damage,
            life: watch::channel(life).0,
            clients: AtomicU32::new(0),
            shares: std::sync::RwLock::new(meta_shares),
        })
    }

    /// Its state now, as far as the daemon's memory tells: `damaged` for
    /// damaged metadata. (A damaged ring header is found where the ring is
    /// read: [`Entry::static_info`], [`Entry::mark_damage`].)
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

    /// Start of the ring and end of output, from the ring file's header (or
    /// the exit record when the ring is unreadable or damaged).
    pub fn ring_bounds(&self) -> (Offset, Offset) {
        self.bounds(&ring::peek(&self.paths.ring()))
    }

    fn bounds(&self, header: &Result<ring::Header, RingError>) -> (Offset, Offset) {
        match header {
            Ok(h) => (h.start(), h.end()),
            Err(_) => match &*self.life.borrow() {
                Life::Exited(r) => (r.end, r.end),
                _ => (Offset(0), Offset(0)),
            },
        }
    }

    /// Sets `info`'s state to `damaged` if the session's metadata was
    /// damaged or its ring file's header is now.
    pub fn mark_damage(&self, info: &mut SessionInfo) {
        if self.damage.is_some()
            || matches!(
                ring::peek(&self.paths.ring()),
                Err(RingError::Corrupt { .. })
            )
        {
            info.state = SessionState::Damaged;
        }
    }

    /// The refusal of a read of its output when the ring file is damaged:
    /// which file, what is wrong, what to do.
    pub fn unreadable_ring(&self, err: &RingError) -> Reply {
        let why = match err {
            RingError::Corrupt { path, why } => {
                format!("its ring file {} is damaged: {why}", path.display())
            }
            other => format!("its ring file cannot be read: {other}"),
        };
        Reply::error(
            ErrorKind::Damaged,
            format!(
                "cannot read the output of session {}: {why}. Remove the session with \
                 `tether rm {}` (move the file away first to keep it)",
                self.label(),
                self.meta.id.short()
            ),
        )
    }

    /// Its info from the daemon's state and the files, without asking the
    /// keeper (cheap enough for every session of a listing).
    pub fn static_info(&self) -> SessionInfo {
        let life = self.life.borrow().clone();
        let header = ring::peek(&self.paths.ring());
        let (start, end) = self.bounds(&header);
        // What a keeper that is gone left there is stale.
        let status = match (&header, &life) {
            (Ok(h), Life::Running) => h.status,
            _ => Default::default(),
        };
        let damaged = self.damage.is_some() || matches!(header, Err(RingError::Corrupt { .. }));
        let pid = store::read_json::<KeeperRecord>(&self.paths.keeper())
            .ok()
            .flatten()
            .filter(|_| matches!(life, Life::Running))
            .map(|k| k.pid);
        let exit = match &life {
            Life::Exited(r) => Some(r),
            _ => None,
        };
        let mut info = self.meta.info(store::Figures {
            state: if damaged {
                SessionState::Damaged
            } else {
                life.state()
            },
            exit,
            // The keeper's status page, which counts every client, those
            // attached to it directly too; an older keeper publishes none.
            size: status.size.unwrap_or(self.meta.size),
            start,
            end,
            clients: status.clients.max(self.clients.load(Ordering::Relaxed)),
            pid,
        });
        info.shared = self.shares();
        info
    }

    /// Who it is shared with now.
    pub fn shares(&self) -> Vec<tether_proto::Share> {
        self.shares.read().expect("shares lock").clone()
    }

    /// Replaces its shares, in memory and in its `meta.json`.
    pub fn set_shares(&self, shares: Vec<tether_proto::Share>) -> anyhow::Result<()> {
        let mut held = self.shares.write().expect("shares lock");
        let meta = SessionMeta {
            shared: shares.clone(),
            ..self.meta.clone()
        };
        store::write_json(&self.paths.meta(), &meta)?;
        *held = shares;
        Ok(())
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
