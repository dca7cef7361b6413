//! A userspace UDP fault proxy, put in front of a QUIC or gossip endpoint:
//! kernel netem is not available on these machines, so the faults are
//! ours.
//!
//! # Flow
//! 1. [`FaultProxy::start`] binds a socket on 127.0.0.x; clients send to
//!    it instead of to the endpoint.
//! 2. Each client address gets its own upstream socket, so the endpoint
//!    sees one peer per client and its answers find their way back.
//! 3. Every datagram, either way, goes through the [`Faults`] of its
//!    direction as they are at that moment: dropped (loss, blackhole),
//!    delayed (delay, jitter, reordering, a bandwidth cap), or sent twice.
//!    [`FaultProxy::set`] changes them while traffic flows.
//!
//! Randomness comes from one seeded generator, so a drill's faults can be
//! replayed. Every resource a peer can make the proxy hold is bounded:
//! clients ([`MAX_CLIENTS`]) and datagrams waiting for their delay
//! ([`MAX_IN_FLIGHT`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::rng::Rng;

/// Clients (source addresses) one proxy serves at most.
pub const MAX_CLIENTS: usize = 1024;
/// Datagrams held back for their delay at most; more are dropped.
pub const MAX_IN_FLIGHT: usize = 65_536;
/// A datagram that would wait longer than this behind a bandwidth cap is
/// dropped, as a router's queue drops it.
const MAX_QUEUE: Duration = Duration::from_secs(1);
/// Largest datagram carried.
const MAX_DATAGRAM: usize = 65_536;

/// The faults of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Share of datagrams dropped, 0.0..=1.0.
    pub loss: f64,
    /// Delay added to every datagram.
    pub delay: Duration,
    /// Up to this much more or less delay, uniformly.
    pub jitter: Duration,
    /// Share of datagrams held back one more `delay` (plus 1 ms), so that
    /// later ones overtake them.
    pub reorder: f64,
    /// Share of datagrams sent twice.
    pub duplicate: f64,
    /// Bytes per second at most; `None`: no cap.
    pub rate: Option<u64>,
    /// Drop everything: a partition in this direction.
    pub blackhole: bool,
}

impl Faults {
    /// No fault at all.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Everything dropped.
    pub fn blackhole() -> Faults {
        Faults {
            blackhole: true,
            ..Faults::default()
        }
    }
}

/// The faults of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Link {
    /// From the clients to the endpoint.
    pub up: Faults,
    /// From the endpoint back to the clients.
    pub down: Faults,
}

impl Link {
    /// The same faults both ways.
    pub fn both(f: Faults) -> Link {
        Link { up: f, down: f }
    }
}

/// What the proxy counted, for a drill's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Datagrams received from either side.
    pub seen: u64,
    /// Dropped by loss, blackhole, a full queue or a full proxy.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
}

/// One direction's state: its faults and its bandwidth queue.
#[derive(Debug)]
struct Direction {
    faults: Faults,
    /// When the cap lets the next byte go.
    free_at: Option<Instant>,
}

struct State {
    up: Direction,
    down: Direction,
    rng: Rng,
    counts: Counts,
}

impl State {
    /// What becomes of a datagram of `len` bytes going `up` (or down) at
    /// `now`: the delays of its copies (none: dropped).
    fn fate(&mut self, up: bool, len: usize, now: Instant) -> Vec<Duration> {
        self.counts.seen += 1;
        let d = if up { &mut self.up } else { &mut self.down };
        let f = d.faults;
        if f.blackhole || self.rng.unit() < f.loss {
            self.counts.dropped += 1;
            return Vec::new();
        }
        let mut wait = Duration::ZERO;
        if let Some(rate) = f.rate.filter(|r| *r > 0) {
            let start = d.free_at.map_or(now, |t| t.max(now));
            let busy = Duration::from_secs_f64(len as f64 / rate as f64);
            if start + busy - now > MAX_QUEUE {
                self.counts.dropped += 1;
                return Vec::new();
            }
            d.free_at = Some(start + busy);
            wait = start + busy - now;
        }
        let mut delay = f.delay + wait;
        if !f.jitter.is_zero() {
            let j = f.jitter.as_secs_f64() * (2.0 * self.rng.unit() - 1.0);
            delay = Duration::from_secs_f64((delay.as_secs_f64() + j).max(0.0));
        }
        if self.rng.unit() < f.reorder {
            delay += f.delay + Duration::from_millis(1);
        }
        let mut out = vec![delay];
        if self.rng.unit() < f.duplicate {
            self.counts.duplicated += 1;
            out.push(delay);
        }
        out
    }
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    /// Where clients send.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on `listen` (an address on 127.0.0.x, port 0 for a
    /// free one) in front of `upstream`, with no faults, its randomness
    /// from `seed`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> anyhow::Result<FaultProxy> {
        let sock = Arc::new(UdpSocket::bind(listen).await?);
        let addr = sock.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            up: Direction {
                faults: Faults::none(),
                free_at: None,
            },
            down: Direction {
                faults: Faults::none(),
                free_at: None,
            },
            rng: Rng::new(seed),
            counts: Counts::default(),
        }));
        let task = tokio::spawn(serve(sock, upstream, state.clone()));
        Ok(FaultProxy { addr, state, task })
    }

    /// Sets the faults of both directions, for the datagrams from now on.
    pub fn set(&self, link: Link) {
        let mut s = self.state.lock().expect("proxy state");
        s.up.faults = link.up;
        s.down.faults = link.down;
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.set(Link::default());
    }

    /// What it counted so far.
    pub fn counts(&self) -> Counts {
        self.state.lock().expect("proxy state").counts
    }
}

/// Sends `data` to `to` from `sock` now, or after `delay` (unless too
/// many wait).
async fn deliver(
    sock: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
) {
    if delay.is_zero() {
        let _ = sock.send_to(&data, to).await;
        return;
    }
    if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = sock.send_to(&data, to).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Sends `data` on its way `up` (or down) from `sock` to `to`, as the
/// faults of that direction decide.
async fn pass(
    state: &Mutex<State>,
    up: bool,
    sock: &Arc<UdpSocket>,
    to: SocketAddr,
    data: &[u8],
    in_flight: &Arc<AtomicUsize>,
) {
    let fate = state
        .lock()
        .expect("proxy state")
        .fate(up, data.len(), Instant::now());
    for delay in fate {
        deliver(sock.clone(), to, data.to_vec(), delay, in_flight.clone()).await;
    }
}

async fn serve(sock: Arc<UdpSocket>, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let mut clients: HashMap<SocketAddr, (Arc<UdpSocket>, JoinHandle<()>)> = HashMap::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if !clients.contains_key(&from) {
            if clients.len() >= MAX_CLIENTS {
                state.lock().expect("proxy state").counts.dropped += 1;
                continue;
            }
            let Ok(out) = UdpSocket::bind((upstream.ip(), 0)).await else {
                continue;
            };
            let out = Arc::new(out);
            let back = tokio::spawn(answers(
                out.clone(),
                sock.clone(),
                from,
                state.clone(),
                in_flight.clone(),
            ));
            clients.insert(from, (out, back));
        }
        let out = clients[&from].0.clone();
        pass(&state, true, &out, upstream, &buf[..n], &in_flight).await;
    }
}

/// Carries the endpoint's answers to client `client`.
async fn answers(
    out: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok(n) = out.recv(&mut buf).await else {
            continue;
        };
        pass(&state, false, &front, client, &buf[..n], &in_flight).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(f: Faults, seed: u64) -> State {
        State {
            up: Direction {
                faults: f,
                free_at: None,
            },
            down: Direction {
                faults: Faults::none(),
                free_at: None,
            },
            rng: Rng::new(seed),
            counts: Counts::default(),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let f = Faults {
            loss: 0.3,
            jitter: Duration::from_millis(10),
            delay: Duration::from_millis(20),
            reorder: 0.1,
            duplicate: 0.1,
            ..Faults::none()
        };
        let now = Instant::now();
        let run = |seed| {
            let mut s = state(f, seed);
            (0..500).map(|_| s.fate(true, 100, now)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn loss_is_about_the_share_asked_and_delays_stay_in_bounds() {
        let f = Faults {
            loss: 0.05,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            ..Faults::none()
        };
        let mut s = state(f, 42);
        let now = Instant::now();
        let mut lost = 0;
        for _ in 0..10_000 {
            let fate = s.fate(true, 1200, now);
            if fate.is_empty() {
                lost += 1;
            }
            for d in fate {
                assert!((Duration::from_millis(40)..=Duration::from_millis(60)).contains(&d));
            }
        }
        assert!((350..650).contains(&lost), "lost {lost} of 10,000 at 5%");
        assert_eq!(s.counts.dropped, lost);
    }

    #[test]
    fn a_rate_cap_queues_then_drops() {
        // 1,000 bytes a second: the tenth 100-byte datagram waits 0.9 s,
        // the twelfth would wait more than a second and is dropped.
        let f = Faults {
            rate: Some(1000),
            ..Faults::none()
        };
        let mut s = state(f, 1);
        let now = Instant::now();
        let waits: Vec<_> = (0..12).map(|_| s.fate(true, 100, now)).collect();
        assert_eq!(waits[0], [Duration::from_millis(100)]);
        assert_eq!(waits[9], [Duration::from_secs(1)]);
        assert!(waits[10].is_empty() && waits[11].is_empty());
    }

    #[test]
    fn a_blackhole_drops_one_way_only() {
        let mut s = state(Faults::blackhole(), 3);
        let now = Instant::now();
        assert!(s.fate(true, 10, now).is_empty());
        assert_eq!(s.fate(false, 10, now), [Duration::ZERO]);
    }
}
