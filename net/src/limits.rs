//! Limits on what a peer can make a node or a relay hold: time to open a
//! stream, streams per connection, connections per identity and per
//! source address, and bytes of unfinished frames per connection.
//!
//! # Flow
//! 1. A connection is admitted by [`Admission::admit`] under its identity
//!    (the certificate's name) and source address, or closed with
//!    [`REFUSED`] and a reason that names the config key to raise.
//! 2. Each stream it opens takes a [`StreamPermit`] from the connection's
//!    [`ConnLimits`]; one beyond the limit is answered with an error.
//! 3. Each frame reader of the connection charges the bytes it holds of a
//!    frame not yet complete to the connection's [`Budget`]; past the
//!    budget the stream fails.
//! 4. The hello and the request must arrive within the hello timeout.
//!
//! Every refusal is counted ([`LimitStats`]) for metrics.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// QUIC close code of a connection refused by a limit.
pub const REFUSED: u32 = 0x7402;

/// The limits, from the `[limits]` table of a node's or relay's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// How long a peer may take to send its hello and request on a new
    /// stream (and, on a routed stream, to finish the TLS handshake), in
    /// ms. Default 10,000.
    pub hello_timeout_ms: u64,
    /// Streams one connection may have open at once (an attach holds one
    /// for its life). Default 128.
    pub streams_per_connection: usize,
    /// Streams a relay's connection to a node may have open at once: it
    /// carries the streams of every client of that relay. Default 4096.
    pub streams_per_relay_connection: usize,
    /// Connections one identity (certificate name) may hold at once; the
    /// local owner is not counted. Default 128.
    pub connections_per_identity: usize,
    /// Connections one source IP address may hold at once; the local
    /// owner is not counted. Default 256.
    pub connections_per_address: usize,
    /// Bytes of frames not yet complete that the streams of one connection
    /// may hold together. At least one largest frame (1 MiB). Default
    /// 1.25 MiB.
    pub partial_bytes_per_connection: usize,
    /// The same, over all the connections of one identity. Default 8 MiB.
    pub partial_bytes_per_identity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hello_timeout_ms: 10_000,
            streams_per_connection: 128,
            streams_per_relay_connection: 4096,
            connections_per_identity: 128,
            connections_per_address: 256,
            partial_bytes_per_connection: (1 << 20) + (1 << 18),
            partial_bytes_per_identity: 8 << 20,
        }
    }
}

impl Limits {
    /// The hello timeout.
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    /// Checks values that would lock every client out.
    pub fn validate(&self) -> anyhow::Result<()> {
        let min = tether_proto::MAX_FRAME_SIZE + tether_proto::frame::HEADER_LEN;
        for (key, v) in [
            (
                "partial_bytes_per_connection",
                self.partial_bytes_per_connection,
            ),
            (
                "partial_bytes_per_identity",
                self.partial_bytes_per_identity,
            ),
        ] {
            if v < min {
                anyhow::bail!(
                    "[limits] {key} = {v} is below one largest frame ({min} bytes); raise it"
                );
            }
        }
        for (key, v) in [
            ("streams_per_connection", self.streams_per_connection),
            (
                "streams_per_relay_connection",
                self.streams_per_relay_connection,
            ),
            ("connections_per_identity", self.connections_per_identity),
            ("connections_per_address", self.connections_per_address),
        ] {
            if v == 0 {
                anyhow::bail!("[limits] {key} = 0 would refuse every client; raise it");
            }
        }
        if self.hello_timeout_ms == 0 {
            anyhow::bail!("[limits] hello_timeout_ms = 0 would refuse every stream; raise it");
        }
        Ok(())
    }
}

/// Refusals by limit, for metrics.
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Streams whose hello or request did not arrive in time.
    pub hello_timeouts: AtomicU64,
    /// Streams refused: too many on their connection.
    pub streams: AtomicU64,
    /// Connections refused: too many for their identity.
    pub identity: AtomicU64,
    /// Connections refused: too many from their address.
    pub address: AtomicU64,
    /// Streams failed: their connection held too many bytes of unfinished
    /// frames.
    pub partial_bytes: AtomicU64,
}

impl LimitStats {
    /// Counts a stream that failed to open in time.
    pub fn count_failed_open(&self, e: &crate::conn::StreamError) {
        if matches!(e, crate::conn::StreamError::TimedOut(_)) {
            self.hello_timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(label, count)` pairs for a labelled metric.
    pub fn values(&self) -> [(&'static str, u64); 5] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("hello_timeout", g(&self.hello_timeouts)),
            ("streams_per_connection", g(&self.streams)),
            ("connections_per_identity", g(&self.identity)),
            ("connections_per_address", g(&self.address)),
            ("partial_bytes_per_connection", g(&self.partial_bytes)),
        ]
    }
}

/// Counts connections per identity and per address.
#[derive(Debug, Default)]
pub struct Admission {
    limits: Limits,
    held: Mutex<(HashMap<String, usize>, HashMap<IpAddr, usize>)>,
    /// Each identity's partial-frame budget, shared by its connections
    /// and by its streams routed inside other connections (a relay's).
    /// Certificate names are few (issued by the fleet CA).
    budgets: Mutex<HashMap<String, Budget>>,
    /// Refusals.
    pub stats: Arc<LimitStats>,
}

/// A connection's place under the limits; dropping it frees the place.
#[derive(Debug)]
pub struct ConnPermit {
    admission: Arc<Admission>,
    identity: String,
    addr: IpAddr,
    counted: bool,
    /// The connection's own limits.
    pub conn: ConnLimits,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut held = self.admission.held.lock().expect("admission lock");
        let (ids, addrs) = &mut *held;
        if let Some(n) = ids.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                ids.remove(&self.identity);
            }
        }
        if let Some(n) = addrs.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                addrs.remove(&self.addr);
            }
        }
    }
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            held: Mutex::default(),
            budgets: Mutex::default(),
            stats: Arc::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits a connection of `identity` from `addr`, or says which limit
    /// refuses it. An `uncounted` connection (the local owner's) takes no
    /// place among the connections.
    pub fn admit(
        self: &Arc<Self>,
        identity: &str,
        addr: IpAddr,
        uncounted: bool,
    ) -> Result<ConnPermit, String> {
        let budget = Budget::within(
            self.limits.partial_bytes_per_connection,
            self.identity_budget(identity),
        );
        let mut held = self.held.lock().expect("admission lock");
        let (ids, addrs) = &mut *held;
        let by_id = ids.get(identity).copied().unwrap_or(0);
        let by_addr = addrs.get(&addr).copied().unwrap_or(0);
        if uncounted {
            return Ok(ConnPermit {
                admission: self.clone(),
                identity: identity.to_string(),
                addr,
                counted: false,
                conn: ConnLimits {
                    streams: Arc::new(AtomicUsize::new(0)),
                    budget,
                    max_streams: self.limits.streams_per_connection,
                    stats: self.stats.clone(),
                },
            });
        }
        if by_id >= self.limits.connections_per_identity {
            self.stats.identity.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "{identity} already holds {by_id} connections (limit [limits] connections_per_identity); close some or raise the limit"
            ));
        }
        if by_addr >= self.limits.connections_per_address {
            self.stats.address.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "{addr} already holds {by_addr} connections (limit [limits] connections_per_address); close some or raise the limit"
            ));
        }
        *ids.entry(identity.to_string()).or_default() += 1;
        *addrs.entry(addr).or_default() += 1;
        Ok(ConnPermit {
            admission: self.clone(),
            identity: identity.to_string(),
            addr,
            counted: true,
            conn: ConnLimits {
                streams: Arc::new(AtomicUsize::new(0)),
                budget,
                max_streams: self.limits.streams_per_connection,
                stats: self.stats.clone(),
            },
        })
    }

    /// The partial-frame budget of `identity` over all its connections
    /// and routed streams; a client on a relay's connection spends its
    /// own, not the relay's or the other clients'.
    pub fn identity_budget(&self, identity: &str) -> Budget {
        self.budgets
            .lock()
            .expect("admission lock")
            .entry(identity.to_string())
            .or_insert_with(|| {
                Budget::new(self.limits.partial_bytes_per_identity, self.stats.clone())
            })
            .clone()
    }

    /// Admits a connection and closes it with the reason when a limit
    /// refuses it.
    pub fn admit_or_close(
        self: &Arc<Self>,
        identity: &str,
        uncounted: bool,
        conn: &quinn::Connection,
    ) -> Option<ConnPermit> {
        match self.admit(identity, conn.remote_address().ip(), uncounted) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::warn!(identity, peer = %conn.remote_address(), %why, "connection refused");
                conn.close(REFUSED.into(), why.as_bytes());
                None
            }
        }
    }
}

/// One connection's limits: its open streams and its partial-frame budget.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    streams: Arc<AtomicUsize>,
    max_streams: usize,
    /// Bytes of unfinished frames its streams hold.
    pub budget: Budget,
    stats: Arc<LimitStats>,
}

/// A stream's place on its connection; dropping it frees the place.
#[derive(Debug)]
pub struct StreamPermit(Arc<AtomicUsize>);

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnLimits {
    /// The same for a relay's connection `conn`, which carries every
    /// stream of the relay's clients: `n` streams, at QUIC's level too.
    pub fn for_relay(mut self, conn: &quinn::Connection, n: usize) -> ConnLimits {
        let quic = quinn::VarInt::from_u64(n as u64 + 16).unwrap_or(quinn::VarInt::MAX);
        conn.set_max_concurrent_bi_streams(quic);
        self.max_streams = n;
        self
    }

    /// A place for one more stream, or the refusal to send on it.
    pub fn stream(&self) -> Result<StreamPermit, String> {
        let n = self.streams.fetch_add(1, Ordering::Relaxed);
        let permit = StreamPermit(self.streams.clone());
        if n >= self.max_streams {
            self.stats.streams.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "this connection already has {n} streams open (limit [limits] streams_per_connection); end some, or open another connection"
            ));
        }
        Ok(permit)
    }
}

/// Bytes of unfinished frames the readers of one connection may hold
/// together, shared by them.
#[derive(Debug, Clone)]
pub struct Budget {
    held: Arc<AtomicUsize>,
    max: usize,
    stats: Arc<LimitStats>,
    /// The identity's budget, which every charge counts against too.
    parent: Option<Box<Budget>>,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize, stats: Arc<LimitStats>) -> Budget {
        Budget {
            held: Arc::new(AtomicUsize::new(0)),
            max,
            stats,
            parent: None,
        }
    }

    /// A budget of `max` bytes whose charges count against `parent` too.
    pub fn within(max: usize, parent: Budget) -> Budget {
        Budget {
            parent: Some(Box::new(parent.clone())),
            ..Budget::new(max, parent.stats)
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Changes a reader's charge from `from` to `to` bytes; an increase
    /// past the budget is refused (the charge stays at `from`).
    pub fn recharge(&self, from: usize, to: usize) -> Result<(), usize> {
        if to <= from {
            self.held.fetch_sub(from - to, Ordering::Relaxed);
            if let Some(p) = &self.parent {
                p.recharge(from, to)?;
            }
            return Ok(());
        }
        let add = to - from;
        let before = self.held.fetch_add(add, Ordering::Relaxed);
        if before + add > self.max {
            self.held.fetch_sub(add, Ordering::Relaxed);
            self.stats.partial_bytes.fetch_add(1, Ordering::Relaxed);
            return Err(self.max);
        }
        if let Some(p) = &self.parent {
            if let Err(max) = p.recharge(from, to) {
                self.held.fetch_sub(add, Ordering::Relaxed);
                return Err(max);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_identity_and_address_and_freed_on_drop() {
        let a = Admission::new(Limits {
            connections_per_identity: 2,
            connections_per_address: 3,
            ..Limits::default()
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = a.admit("alice", ip, false).unwrap();
        let _p2 = a.admit("alice", ip, false).unwrap();
        let e = a.admit("alice", other, false).unwrap_err();
        assert!(e.contains("connections_per_identity"), "{e}");
        let _p3 = a.admit("bob", ip, false).unwrap();
        let e = a.admit("carol", ip, false).unwrap_err();
        assert!(e.contains("connections_per_address"), "{e}");
        // The local owner is never refused.
        let _owner = a.admit("owner", ip, true).unwrap();
        drop(p1);
        a.admit("alice", other, false).unwrap();
        assert_eq!(a.stats.identity.load(Ordering::Relaxed), 1);
        assert_eq!(a.stats.address.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn streams_and_bytes_are_bounded_per_connection() {
        let a = Admission::new(Limits {
            streams_per_connection: 2,
            ..Limits::default()
        });
        let p = a
            .admit("alice", "127.0.0.1".parse().unwrap(), false)
            .unwrap();
        let s1 = p.conn.stream().unwrap();
        let _s2 = p.conn.stream().unwrap();
        assert!(p.conn.stream().is_err());
        drop(s1);
        let _s3 = p.conn.stream().unwrap();
        let b = &p.conn.budget;
        let per_conn = Limits::default().partial_bytes_per_connection;
        b.recharge(0, per_conn).unwrap();
        assert_eq!(b.recharge(0, 1), Err(per_conn));
        b.recharge(per_conn, 10).unwrap();
        assert_eq!(b.held(), 10);
        // Connections of one identity share its budget.
        let mut conns = Vec::new();
        let mut refused = false;
        for _ in 0..10 {
            let p = a
                .admit("mallory", "127.0.0.9".parse().unwrap(), false)
                .unwrap();
            if p.conn.budget.recharge(0, 1 << 20).is_err() {
                refused = true;
                break;
            }
            conns.push(p);
        }
        assert!(
            refused && conns.len() == 8,
            "8 MiB per identity: {}",
            conns.len()
        );
        assert_eq!(a.identity_budget("mallory").held(), 8 << 20);
        drop(conns);
        assert!(Limits {
            partial_bytes_per_connection: 1000,
            ..Limits::default()
        }
        .validate()
        .is_err());
        Limits::default().validate().unwrap();
    }
}
