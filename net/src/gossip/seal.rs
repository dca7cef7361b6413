//! The sealed gossip transport: chitchat over authenticated datagrams.
//!
//! chitchat's own UDP transport is plaintext and unauthenticated: anyone
//! who can send a datagram could rewrite the routing table. Here every
//! datagram is sealed with a MAC keyed from the cluster secret.
//!
//! # Datagram layout
//! ```text
//! 0..4     magic "TGS1"
//! 4        flags (bit 0: payload is zstd-compressed)
//! 5..13    sender instance (u64, random per process start)
//! 13..21   counter (u64 BE, strictly increasing per instance)
//! 21..29   send time, ms since the Unix epoch (u64 BE)
//! 29..n-32 chitchat envelope
//! n-32..n  blake3 keyed hash of bytes 0..n-32 (key derived from the secret)
//! ```
//! A receiver rejects, counts and logs: datagrams too short or with a bad
//! magic (malformed), a MAC that does not verify (forged, altered, or
//! from another cluster: its secret differs), a send time outside
//! [`MAX_SKEW`] (stale), and a counter not above the last one seen from
//! that instance (replayed). The pure parts ([`seal`], [`unseal`],
//! [`ReplayGuard`]) carry no IO and are tested on their own.
//!
//! A replay towards a member that has not yet heard from the sending
//! instance is accepted once within [`MAX_SKEW`]; chitchat's versioned
//! state makes such an old message a no-op.

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing::warn;

const MAGIC: &[u8; 4] = b"TGS1";
const HEADER: usize = 29;
const MAC_LEN: usize = 32;
const FLAG_ZSTD: u8 = 1;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest accepted difference between a datagram's send time and now.
pub const MAX_SKEW_MS: u64 = 120_000;
/// Same, as a description for docs and errors.
pub const MAX_SKEW: &str = "2 minutes";

/// The MAC key of a cluster, derived from its secret.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// Derives the key from the secret file's contents.
    pub fn from_secret(secret: &[u8]) -> Self {
        ClusterKey(blake3::derive_key("tether gossip mac v1", secret))
    }
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Too short, bad magic, or a payload that does not decode.
    #[error("malformed")]
    Malformed,
    /// The MAC does not verify: forged, altered, or another cluster.
    #[error("bad MAC (forged, altered, or another cluster's secret)")]
    Forged,
    /// Sent too long ago (or in the future).
    #[error("send time outside the accepted window")]
    Stale,
    /// Already seen.
    #[error("replayed")]
    Replayed,
}

/// Counts of accepted and rejected datagrams.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Datagrams accepted.
    pub accepted: AtomicU64,
    /// Rejected as malformed.
    pub malformed: AtomicU64,
    /// Rejected: MAC did not verify.
    pub forged: AtomicU64,
    /// Rejected: send time out of window.
    pub stale: AtomicU64,
    /// Rejected: replayed.
    pub replayed: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Bytes received (accepted or not).
    pub bytes_received: AtomicU64,
}

impl GossipStats {
    /// Every rejection.
    pub fn rejected(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
            + self.forged.load(Ordering::Relaxed)
            + self.stale.load(Ordering::Relaxed)
            + self.replayed.load(Ordering::Relaxed)
    }

    fn count(&self, r: Reject) {
        let c = match r {
            Reject::Malformed => &self.malformed,
            Reject::Forged => &self.forged,
            Reject::Stale => &self.stale,
            Reject::Replayed => &self.replayed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Header fields of a sealed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Sender instance.
    pub instance: u64,
    /// Per-instance counter.
    pub counter: u64,
    /// Send time, ms since the epoch.
    pub time_ms: u64,
}

/// Seals `payload`. Payloads that would not fit a datagram are compressed.
pub fn seal(key: &ClusterKey, s: Seal, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(MAGIC);
    let compressed;
    let (flags, body) = if HEADER + payload.len() + MAC_LEN > MAX_DATAGRAM {
        compressed = zstd::bulk::compress(payload, 1).unwrap_or_else(|_| payload.to_vec());
        (FLAG_ZSTD, &compressed[..])
    } else {
        (0, payload)
    };
    out.push(flags);
    out.extend_from_slice(&s.instance.to_be_bytes());
    out.extend_from_slice(&s.counter.to_be_bytes());
    out.extend_from_slice(&s.time_ms.to_be_bytes());
    out.extend_from_slice(body);
    let mac = blake3::keyed_hash(&key.0, out);
    out.extend_from_slice(mac.as_bytes());
}

/// Checks a datagram's MAC and returns its header and payload.
pub fn unseal(key: &ClusterKey, d: &[u8]) -> Result<(Seal, Vec<u8>), Reject> {
    if d.len() < HEADER + MAC_LEN || &d[..4] != MAGIC {
        return Err(Reject::Malformed);
    }
    let (body, mac) = d.split_at(d.len() - MAC_LEN);
    let expected = blake3::keyed_hash(&key.0, body);
    // blake3::Hash compares in constant time.
    if expected != blake3::Hash::from_bytes(mac.try_into().expect("32 bytes")) {
        return Err(Reject::Forged);
    }
    let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
    let seal = Seal {
        instance: u64_at(5),
        counter: u64_at(13),
        time_ms: u64_at(21),
    };
    let payload = if body[4] & FLAG_ZSTD != 0 {
        zstd::bulk::decompress(&body[HEADER..], 4 * MAX_DATAGRAM).map_err(|_| Reject::Malformed)?
    } else {
        body[HEADER..].to_vec()
    };
    Ok((seal, payload))
}

/// Remembers the last counter of every sender instance heard from within
/// the time window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<u64, (u64, u64)>,
}

impl ReplayGuard {
    /// Accepts or rejects a datagram that passed the MAC check.
    pub fn check(&mut self, s: Seal, now_ms: u64) -> Result<(), Reject> {
        if s.time_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Reject::Stale);
        }
        if let Some(&(last, _)) = self.last.get(&s.instance) {
            if s.counter <= last {
                return Err(Reject::Replayed);
            }
        }
        self.last.insert(s.instance, (s.counter, now_ms));
        if self.last.len() > 4096 {
            // Instances silent for longer than the window can be forgotten:
            // their old datagrams are stale anyway.
            self.last
                .retain(|_, (_, seen)| now_ms.saturating_sub(*seen) <= 2 * MAX_SKEW_MS);
        }
        Ok(())
    }
}

/// A chitchat transport that seals every datagram.
///
/// chitchat 0.13 keeps its envelope codec private, so the plaintext
/// datagrams come from its own `UdpSocket`, bound to an ephemeral loopback
/// port: a send asks that socket to serialize to a private tap socket, and
/// the tap's bytes are sealed and sent from the public socket; a received
/// datagram is unsealed and handed to chitchat's socket through the tap,
/// with the true peer address put back in the outcome.
pub struct SealedTransport {
    key: ClusterKey,
    stats: Arc<GossipStats>,
    /// A public socket bound by the caller, taken by the first `open`.
    socket: std::sync::Mutex<Option<std::net::UdpSocket>>,
}

impl SealedTransport {
    /// A transport for the cluster keyed by `key`, counting into `stats`.
    pub fn new(key: ClusterKey, stats: Arc<GossipStats>) -> Self {
        SealedTransport {
            key,
            stats,
            socket: std::sync::Mutex::new(None),
        }
    }

    /// Sends and receives on `socket` instead of binding the listen
    /// address (for tests and fault proxies that hold the socket).
    pub fn with_socket(self, socket: std::net::UdpSocket) -> Self {
        *self.socket.lock().expect("socket lock") = Some(socket);
        self
    }
}

/// How long a loopback hop to chitchat's own socket may take.
const TAP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

#[async_trait]
impl Transport for SealedTransport {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let given = self.socket.lock().expect("socket lock").take();
        let public = match given {
            Some(s) => {
                s.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(s)?
            }
            None => tokio::net::UdpSocket::bind(listen).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind gossip to {listen}/udp: {e}; check `listen` in the [gossip] section of the config"
                )
            })?,
        };
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("valid");
        let inner = chitchat::transport::UdpSocket::open(lo).await?;
        let inner_addr = inner.local_addr()?;
        let tap = tokio::net::UdpSocket::bind(lo).await?;
        let mut instance = [0u8; 8];
        getrandom::fill(&mut instance).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        Ok(Box::new(SealedSocket {
            public,
            inner,
            inner_addr,
            tap,
            pending_from: None,
            key: self.key.clone(),
            instance: u64::from_le_bytes(instance),
            counter: 0,
            guard: ReplayGuard::default(),
            stats: self.stats.clone(),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            buf: vec![0u8; MAX_DATAGRAM],
        }))
    }
}

struct SealedSocket {
    public: tokio::net::UdpSocket,
    inner: chitchat::transport::UdpSocket,
    inner_addr: SocketAddr,
    tap: tokio::net::UdpSocket,
    /// Set while a datagram handed to `inner` has not been read back.
    pending_from: Option<SocketAddr>,
    key: ClusterKey,
    instance: u64,
    counter: u64,
    guard: ReplayGuard,
    stats: Arc<GossipStats>,
    sealed: Vec<u8>,
    buf: Vec<u8>,
}

impl SealedSocket {
    /// Reads back the datagram handed to chitchat's socket.
    async fn finish_pending(&mut self) -> Option<RecvOutcome> {
        let from = self.pending_from?;
        let r = tokio::time::timeout(TAP_TIMEOUT, self.inner.recv()).await;
        self.pending_from = None;
        match r {
            Ok(Ok(mut out)) => {
                out.from_addr = from;
                Some(out)
            }
            _ => {
                self.stats.count(Reject::Malformed);
                warn!(%from, "gossip payload did not decode");
                None
            }
        }
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(&mut self, to: SocketAddr, env: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        // Drop anything a cancelled send left on the tap.
        while self.tap.try_recv_from(&mut self.buf).is_ok() {}
        let tap_addr = self.tap.local_addr()?;
        self.inner.send(tap_addr, env).await?;
        let (n, from) = tokio::time::timeout(TAP_TIMEOUT, self.tap.recv_from(&mut self.buf))
            .await
            .map_err(|_| anyhow::anyhow!("gossip serializer did not answer"))??;
        if from != self.inner_addr {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.counter += 1;
        let s = Seal {
            instance: self.instance,
            counter: self.counter,
            time_ms: crate::time::now_ms(),
        };
        seal(&self.key, s, &self.buf[..n], &mut self.sealed);
        if self.sealed.len() > MAX_DATAGRAM {
            warn!(len = self.sealed.len(), %to, "gossip message too large even compressed; dropped");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.public.send_to(&self.sealed, to).await {
            Ok(n) => {
                self.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                Ok(SendOutcome { num_bytes_sent: n })
            }
            // A peer that is gone is the failure detector's business.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
            Err(e) => Err(anyhow::anyhow!("gossip send to {to}: {e}")),
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if self.pending_from.is_some() {
                if let Some(out) = self.finish_pending().await {
                    return Ok(out);
                }
                continue;
            }
            let (n, from) = match self.public.recv_from(&mut self.buf).await {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(anyhow::anyhow!("gossip recv: {e}")),
            };
            self.stats
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
            let res = unseal(&self.key, &self.buf[..n]).and_then(|(s, payload)| {
                self.guard.check(s, crate::time::now_ms()).map(|_| payload)
            });
            match res {
                Ok(payload) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    self.tap.send_to(&payload, self.inner_addr).await?;
                    self.pending_from = Some(from);
                }
                Err(reason) => {
                    self.stats.count(reason);
                    warn!(%from, len = n, %reason, "gossip datagram rejected");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::from_secret(s.as_bytes())
    }

    proptest! {
        #[test]
        fn seal_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..2000), inst in any::<u64>(), ctr in any::<u64>()) {
            let k = key("secret");
            let s = Seal { instance: inst, counter: ctr, time_ms: 5 };
            let mut d = Vec::new();
            seal(&k, s, &payload, &mut d);
            prop_assert_eq!(unseal(&k, &d).unwrap(), (s, payload));
        }

        #[test]
        fn any_flipped_bit_is_rejected(payload in proptest::collection::vec(any::<u8>(), 1..200), bit in any::<prop::sample::Index>()) {
            let k = key("secret");
            let mut d = Vec::new();
            seal(&k, Seal { instance: 1, counter: 1, time_ms: 1 }, &payload, &mut d);
            let i = bit.index(d.len() * 8);
            d[i / 8] ^= 1 << (i % 8);
            prop_assert!(unseal(&k, &d).is_err());
        }
    }

    #[test]
    fn other_cluster_is_forged() {
        let mut d = Vec::new();
        seal(
            &key("a"),
            Seal {
                instance: 1,
                counter: 1,
                time_ms: 1,
            },
            b"hi",
            &mut d,
        );
        assert_eq!(unseal(&key("b"), &d), Err(Reject::Forged));
        assert_eq!(unseal(&key("b"), b"short"), Err(Reject::Malformed));
    }

    #[test]
    fn large_payloads_are_compressed_to_fit() {
        let payload = vec![b'x'; 70_000];
        let mut d = Vec::new();
        seal(
            &key("a"),
            Seal {
                instance: 1,
                counter: 1,
                time_ms: 1,
            },
            &payload,
            &mut d,
        );
        assert!(d.len() <= MAX_DATAGRAM);
        assert_eq!(unseal(&key("a"), &d).unwrap().1, payload);
    }

    #[test]
    fn replay_guard() {
        let mut g = ReplayGuard::default();
        let now = 1_000_000;
        let s = |instance, counter, time_ms| Seal {
            instance,
            counter,
            time_ms,
        };
        assert_eq!(g.check(s(1, 1, now), now), Ok(()));
        assert_eq!(g.check(s(1, 1, now), now), Err(Reject::Replayed));
        assert_eq!(g.check(s(1, 2, now), now), Ok(()));
        assert_eq!(g.check(s(1, 1, now), now), Err(Reject::Replayed));
        assert_eq!(g.check(s(2, 1, now), now), Ok(()));
        assert_eq!(
            g.check(s(3, 1, now - MAX_SKEW_MS - 1), now),
            Err(Reject::Stale)
        );
        assert_eq!(
            g.check(s(3, 1, now + MAX_SKEW_MS + 1), now),
            Err(Reject::Stale)
        );
    }
}
