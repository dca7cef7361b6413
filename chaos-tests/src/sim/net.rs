//! The simulated network: chitchat's in-process [`ChannelTransport`] (its
//! real codec: every envelope is serialized and parsed back), with seeded
//! faults per link and byte counters per member.
//!
//! # How a datagram travels
//! 1. A member's chitchat calls [`Socket::send`]; the inner channel socket
//!    serializes the envelope and queues it at the receiver's channel; the
//!    serialized length is counted against the sender ([`Traffic`]).
//! 2. The receiver's [`Socket::recv`] takes it from its channel and asks
//!    the [`SimNet`] what happens to it on this link: dropped (the two
//!    ends are in different partition groups, or a one-way cut, or a
//!    seeded loss draw), else held for the link's delay plus a seeded
//!    jitter, in a queue of its own, and handed to chitchat when due.
//!
//! Faults are decided on the receiving side so that the sender's socket
//! stays chitchat's own; the effect on the wire is the same. `recv` is
//! cancel-safe (chitchat's loop `select!`s it against its gossip tick): a
//! datagram taken from the channel is in the socket's queue before the
//! first await that could be cancelled.
//!
//! Limits, as on a real host: a member's channel holds
//! [`MAX_MESSAGE_PER_CHANNEL`](chitchat's, 100) datagrams not yet taken,
//! and drops more (a UDP socket buffer drops too), and one datagram is at
//! most [`MAX_DATAGRAM`] bytes.

use crate::rng::Rng;
use async_trait::async_trait;
use chitchat::transport::{ChannelTransport, RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_net::gossip::seal::{MAX_DATAGRAM, OVERHEAD};
use tokio::time::Instant;

/// The delay and loss of every link (the sim has one setting for all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    /// One-way delay.
    pub delay: Duration,
    /// Added to the delay: uniform in 0..jitter (so datagrams reorder).
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for LinkFaults {
    /// A datacenter: 1 ms ± 1 ms, nothing lost.
    fn default() -> Self {
        LinkFaults {
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
        }
    }
}

/// What members sent, as chitchat serialized it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of chitchat envelopes.
    pub bytes: u64,
    /// Datagrams (envelopes).
    pub datagrams: u64,
    /// Datagrams within [`OVERHEAD`] of [`MAX_DATAGRAM`]: the seal
    /// compresses those, so its overhead on them is not exactly
    /// [`OVERHEAD`].
    pub near_max: u64,
}

impl Traffic {
    /// What the sealed transport would put on the wire for the same
    /// envelopes: each datagram carries [`OVERHEAD`] bytes more (exact
    /// but for the `near_max` ones).
    pub fn sealed_bytes(&self) -> u64 {
        self.bytes + self.datagrams * OVERHEAD as u64
    }

    fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        self.datagrams += 1;
        if n + OVERHEAD > MAX_DATAGRAM {
            self.near_max += 1;
        }
    }
}

struct State {
    rng: Rng,
    faults: LinkFaults,
    /// Partition group of each address; absent means group 0. Two
    /// members hear each other only within one group.
    group: HashMap<SocketAddr, u32>,
    /// Directed cuts (from, to): one-way blackholes.
    cut: HashSet<(SocketAddr, SocketAddr)>,
    sent: HashMap<SocketAddr, Traffic>,
    dropped: u64,
}

/// The network every member of a simulated fleet is attached to. Cloning
/// gives another handle on the same network.
#[derive(Clone)]
pub struct SimNet {
    channels: ChannelTransport,
    state: Arc<Mutex<State>>,
}

impl SimNet {
    /// A network with `faults` on every link, its randomness from `rng`.
    pub fn new(faults: LinkFaults, rng: Rng) -> SimNet {
        SimNet {
            channels: ChannelTransport::with_mtu(MAX_DATAGRAM),
            state: Arc::new(Mutex::new(State {
                rng,
                faults,
                group: HashMap::new(),
                cut: HashSet::new(),
                sent: HashMap::new(),
                dropped: 0,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sim net lock")
    }

    /// Puts `addr` in partition group `group` (0: the main one).
    pub fn set_group(&self, addr: SocketAddr, group: u32) {
        let mut s = self.state();
        if group == 0 {
            s.group.remove(&addr);
        } else {
            s.group.insert(addr, group);
        }
    }

    /// Every address back in group 0, every one-way cut healed.
    pub fn heal(&self) {
        let mut s = self.state();
        s.group.clear();
        s.cut.clear();
    }

    /// Nothing from `from` reaches `to` (the other way is untouched).
    pub fn cut_one_way(&self, from: SocketAddr, to: SocketAddr) {
        self.state().cut.insert((from, to));
    }

    /// What each address sent so far.
    pub fn traffic(&self) -> HashMap<SocketAddr, Traffic> {
        self.state().sent.clone()
    }

    /// Datagrams dropped by partitions, cuts and loss so far.
    pub fn dropped(&self) -> u64 {
        self.state().dropped
    }

    /// When a datagram from `from` to `to` received now is handed over,
    /// or `None` if the network drops it.
    fn admit(&self, from: SocketAddr, to: SocketAddr) -> Option<Instant> {
        let mut s = self.state();
        let group = |a| s.group.get(&a).copied().unwrap_or(0);
        let parted = group(from) != group(to) || s.cut.contains(&(from, to));
        let f = s.faults;
        if parted || (f.loss > 0.0 && s.rng.unit() < f.loss) {
            s.dropped += 1;
            return None;
        }
        let jitter = f.jitter.mul_f64(s.rng.unit());
        Some(Instant::now() + f.delay + jitter)
    }

    fn count_sent(&self, from: SocketAddr, n: usize) {
        self.state().sent.entry(from).or_default().add(n);
    }
}

#[async_trait]
impl Transport for SimNet {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.channels.open(listen).await?;
        Ok(Box::new(SimSocket {
            addr: inner.local_addr()?,
            inner,
            net: self.clone(),
            held: BTreeMap::new(),
            seq: 0,
        }))
    }
}

struct SimSocket {
    addr: SocketAddr,
    inner: Box<dyn Socket>,
    net: SimNet,
    /// Datagrams waiting for their delay, by (due, arrival order).
    held: BTreeMap<(Instant, u64), RecvOutcome>,
    seq: u64,
}

#[async_trait]
impl Socket for SimSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.addr)
    }

    async fn send(&mut self, to: SocketAddr, env: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let out = self.inner.send(to, env).await?;
        self.net.count_sent(self.addr, out.num_bytes_sent);
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let due = self.held.first_key_value().map(|(k, _)| k.0);
            if due.is_some_and(|d| d <= Instant::now()) {
                let (_, out) = self.held.pop_first().expect("a first entry");
                return Ok(out);
            }
            let wake = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(wake) => {}
                r = self.inner.recv() => {
                    let out = r?;
                    if let Some(at) = self.net.admit(out.from_addr, self.addr) {
                        self.seq += 1;
                        self.held.insert((at, self.seq), out);
                    }
                }
            }
        }
    }
}
