//! Several connections to one member, each stream on the least loaded.
//!
//! Every stream a relay carries to a node used to share one QUIC
//! connection: one connection driver (one core at each end), one
//! congestion window and one flow-control window for the output of every
//! client of that node. A [`Pool`] holds up to [`max_per_member`]
//! connections to one member, and a stream takes the connection with the
//! fewest streams in flight ([`Lease`]).
//!
//! The relay's own pools grow only while every connection carries a
//! stream, one dial at a time in the background, and never beyond
//! [`max_per_member`]: the members it dials come from gossip, so a client
//! cannot make the relay open more than that many connections per fleet
//! member, however many streams it routes. A node's tunnels are pooled
//! at the relay too, up to [`TUNNELS_PER_NODE`] (the node dials them and
//! keeps one today; the newest count).
//!
//! Revocation: every pooled connection the relay dialed is cut by
//! `cut_revoked_dialed`, every tunnel by the guard of its accepted
//! connection, one by one.
//!
//! Measured on 2 cores shared by node, relay and clients (bench `fleet`,
//! fan-in), two connections did not raise the fan-in, and the relay's
//! CPU per byte rose by 5-10% (within the noise of a loaded machine):
//! there the relay path is bound by CPU per byte, not by one
//! connection's driver.
//! So a relay pools by half its cores ([`max_per_member`]): one
//! connection on 2 cores, as before; more where cores are spare.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections to one member the relay dials at most: half the cores of
/// this host (the other half serves the clients' connections), at least
/// 1 and at most 8. On 2 cores that is 1: measured there, a second
/// connection to the node bought nothing and cost CPU (see the module
/// doc).
pub(crate) fn max_per_member() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 8)
}

/// Tunnels of one node the relay spreads streams over at most; the node
/// decides how many it keeps.
pub(crate) const TUNNELS_PER_NODE: usize = 4;

/// A connection of a pool with the streams it carries.
struct Pooled {
    conn: quinn::Connection,
    load: Arc<AtomicUsize>,
}

/// A stream's place on a pooled connection; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Lease(Arc<AtomicUsize>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections to one member.
pub(crate) struct Pool {
    conns: Vec<Pooled>,
    /// Connections it may hold.
    max: usize,
    /// A dial that will add a connection is under way.
    pub(crate) dialing: bool,
}

impl Pool {
    /// A pool of connections the relay dials, [`max_per_member`] at most.
    pub(crate) fn dialed() -> Pool {
        Pool::with_max(max_per_member())
    }

    /// A pool of a node's tunnels, [`TUNNELS_PER_NODE`] at most.
    pub(crate) fn tunnels() -> Pool {
        Pool::with_max(TUNNELS_PER_NODE)
    }

    fn with_max(max: usize) -> Pool {
        Pool {
            conns: Vec::new(),
            max,
            dialing: false,
        }
    }

    /// Drops the connections that have closed.
    fn prune(&mut self) {
        self.conns.retain(|p| p.conn.close_reason().is_none());
    }

    /// The open connection with the fewest streams, and a lease on it.
    pub(crate) fn pick(&mut self) -> Option<(quinn::Connection, Lease)> {
        self.prune();
        let p = self
            .conns
            .iter()
            .min_by_key(|p| p.load.load(Ordering::Relaxed))?;
        p.load.fetch_add(1, Ordering::Relaxed);
        Some((p.conn.clone(), Lease(p.load.clone())))
    }

    /// Whether another connection would take load off these: every one
    /// carries a stream, there is room, and no dial is under way.
    pub(crate) fn wants_more(&self) -> bool {
        !self.dialing
            && self.conns.len() < self.max
            && self
                .conns
                .iter()
                .all(|p| p.load.load(Ordering::Relaxed) > 0)
    }

    /// Open connections.
    pub(crate) fn open(&mut self) -> usize {
        self.prune();
        self.conns.len()
    }

    /// Whether it holds as many open connections as it may.
    pub(crate) fn is_full(&mut self) -> bool {
        self.prune();
        self.conns.len() >= self.max
    }

    /// Adds `conn`.
    pub(crate) fn add(&mut self, conn: quinn::Connection) {
        self.conns.push(Pooled {
            conn,
            load: Arc::default(),
        });
    }

    /// Adds `conn`, leaving out the oldest connection if the pool is
    /// full (it is not closed: it carries its streams to their end).
    pub(crate) fn add_newest(&mut self, conn: quinn::Connection) {
        if self.is_full() {
            self.conns.remove(0);
        }
        self.add(conn);
    }

    /// Removes `conn`; whether the pool is empty now.
    pub(crate) fn remove(&mut self, conn: &quinn::Connection) -> bool {
        self.conns
            .retain(|p| p.conn.stable_id() != conn.stable_id());
        self.prune();
        self.conns.is_empty()
    }

    /// Closes the connections `cut` says to (a revoked peer's); whether
    /// any is left.
    pub(crate) fn cut(&mut self, cut: impl Fn(&quinn::Connection) -> bool) -> bool {
        self.conns.retain(|p| !cut(&p.conn));
        !self.conns.is_empty()
    }
}
