//! The sealed transport: chitchat's `Transport` and `Socket` over the
//! datagrams of [`seal`](super::seal).
//!
//! # Protocol flow
//! - send: chitchat hands an envelope and a peer address → chitchat's
//!   codec makes it bytes (the `codec` module) → the [`Sealer`]
//!   encrypts them for that address → the public socket sends them.
//! - receive: the public socket reads a datagram → the [`Opener`] runs
//!   every check (tag, receiver, time, replay window) → the codec decodes
//!   the plaintext → chitchat gets the envelope with the true peer address.
//!   A refused datagram is counted by reason in [`GossipStats`] and logged
//!   at most once per [`LOG_INTERVAL`] per reason.
//!
//! The public socket is the only one that takes datagrams from the
//! network; chitchat sees nothing that did not pass the [`Opener`]. The
//! two loopback sockets of the codec accept datagrams only from each
//! other (the `codec` module says why chitchat forces them).

use super::codec::{Codec, Undecodable};
use super::seal::{Keyring, Opener, Reject, SealError, Sealer};
use super::stats::{GossipStats, RejectLog, LOG_INTERVAL};
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::warn;

/// A chitchat transport that seals every datagram.
pub struct SealedTransport {
    keys: Keyring,
    advertise: Option<SocketAddr>,
    stats: Arc<GossipStats>,
    /// A public socket bound by the caller, taken by the first `open`.
    socket: std::sync::Mutex<Option<std::net::UdpSocket>>,
}

impl SealedTransport {
    /// A transport that seals with the current key of `keys`, opens with
    /// any of them, and counts into `stats`.
    pub fn new(keys: Keyring, stats: Arc<GossipStats>) -> Self {
        SealedTransport {
            keys,
            advertise: None,
            stats,
            socket: std::sync::Mutex::new(None),
        }
    }

    /// The address peers send to (chitchat's advertised address). This
    /// member accepts datagrams addressed to it, and to the address its
    /// socket is bound to; any other receiver is refused.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Sends and receives on `socket` instead of binding the listen
    /// address (for tests and fault proxies that hold the socket).
    pub fn with_socket(self, socket: std::net::UdpSocket) -> Self {
        *self.socket.lock().expect("socket lock") = Some(socket);
        self
    }
}

fn random_instance() -> anyhow::Result<u128> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| {
        anyhow::anyhow!("the system's random source failed ({e}); gossip cannot seal without it")
    })?;
    Ok(u128::from_le_bytes(b))
}

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
        let bound = public.local_addr()?;
        let advertise = self.advertise.unwrap_or(bound);
        if advertise.ip().is_unspecified() {
            warn!(%advertise, "gossip advertises a wildcard address: peers on other hosts cannot address this member, and it refuses datagrams addressed to any other; set `advertise` in [gossip]");
        }
        let own = [advertise, bound]
            .into_iter()
            .filter(|a| !a.ip().is_unspecified() || *a == advertise);
        let opener = Opener::new(self.keys.clone(), own);
        let codec = Codec::open().await?;
        Ok(Box::new(SealedSocket {
            public,
            codec,
            sealer: Sealer::new(self.keys.current(), random_instance()?),
            keys: self.keys.clone(),
            opener,
            stats: self.stats.clone(),
            log: RejectLog::new(LOG_INTERVAL),
            sealed: Vec::with_capacity(super::seal::MAX_DATAGRAM),
            buf: vec![0u8; super::seal::MAX_DATAGRAM],
        }))
    }
}

struct SealedSocket {
    public: tokio::net::UdpSocket,
    codec: Codec,
    sealer: Sealer,
    keys: Keyring,
    opener: Opener,
    stats: Arc<GossipStats>,
    log: RejectLog,
    sealed: Vec<u8>,
    buf: Vec<u8>,
}

/// What to do about a rejection, for the log line.
fn hint(r: Reject) -> &'static str {
    match r {
        Reject::Malformed => "not a tether gossip datagram of this version",
        Reject::Forged => "sealed with a secret this member does not accept: another cluster, a secret retired by a rotation, or forged; check secret_file, next_secret_file and previous_secret_file",
        Reject::Misdirected => "authentic but addressed to another member: a replay, or peers reach this member at an address it does not advertise; set `advertise` in [gossip] to the address peers use",
        Reject::Stale => "sent more than 2 minutes from this member's clock: a replay, or clocks out of sync; check NTP on both hosts",
        Reject::Replayed => "a copy of a datagram accepted already",
        Reject::TooManySenders => "more sender instances than the replay table holds, all heard from in the last 4 minutes; members restarting in a loop?",
    }
}

impl SealedSocket {
    fn reject(&mut self, r: Reject, from: SocketAddr, datagram: &[u8]) {
        self.stats.count_rejected(r);
        let Some(suppressed) = self.log.note(r, std::time::Instant::now()) else {
            return;
        };
        let (reason, len, hint) = (r.label(), datagram.len(), hint(r));
        const WHAT: &str = "gossip datagram rejected (one line per reason per 10 s; `suppressed` counts the others since the last)";
        if r == Reject::Misdirected {
            let to = super::seal::receiver_of(datagram);
            let own = self.opener.own();
            warn!(reason, %from, len, to = ?to, own = ?own, suppressed, hint, "{WHAT}");
        } else {
            warn!(reason, %from, len, suppressed, hint, "{WHAT}");
        }
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(&mut self, to: SocketAddr, env: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let bytes = self.codec.encode(env).await?;
        let now = crate::time::now_ms();
        let mut r = self.sealer.seal(now, to, bytes, &mut self.sealed);
        if r == Err(SealError::CounterExhausted) {
            self.sealer = Sealer::new(self.keys.current(), random_instance()?);
            r = self.sealer.seal(now, to, bytes, &mut self.sealed);
        }
        if let Err(err) = r {
            warn!(%err, %to, "gossip message dropped");
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
            match self.codec.decoded().await {
                Some(Ok(out)) => return Ok(out),
                Some(Err(Undecodable { from })) => {
                    self.reject(Reject::Malformed, from, &[]);
                    continue;
                }
                None => {}
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
            match self.opener.open(&self.buf[..n], crate::time::now_ms()) {
                Ok(opened) => {
                    self.stats.count_accepted(opened.key);
                    if let Err(err) = self.codec.submit(from, &opened.payload) {
                        warn!(%err, %from, "gossip datagram accepted but not handed to chitchat; dropped");
                    }
                }
                Err(r) => {
                    let d = std::mem::take(&mut self.buf);
                    self.reject(r, from, &d[..n]);
                    self.buf = d;
                }
            }
        }
    }
}
