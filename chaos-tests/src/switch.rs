//! The gossip switch: every gossip datagram between members crosses it,
//! with the faults of its (sender, receiver) pair, and each member still
//! sees every peer at the address the peer advertises.
//!
//! # Why not the fault proxy
//! A sealed gossip datagram names the address it was sent to, and a member
//! accepts only datagrams addressed to its own (`net/src/gossip/seal.rs`:
//! replays to another member are refused). chitchat answers a message at
//! the address it came from. Behind a proxy that forwards from a socket of
//! its own (as a NAT does), the answer would name the proxy's socket, and
//! the asker would refuse it as misdirected. So the switch forwards each
//! datagram *from the sender's advertised address*.
//!
//! # How it works
//! - Member X's gossip socket binds its real address `x.real`; it
//!   advertises `x.adv`, a port of the switch on X's own IP.
//! - For each ordered pair (X, Y) the switch binds a socket at `x.adv`
//!   (`SO_REUSEPORT`: many sockets share the port), *connected* to
//!   `y.real`: `S(x→y)`. The kernel hands a datagram to the connected
//!   socket that matches its source (Linux ≥ 5.0 keeps connected sockets of
//!   a reuseport group to their own 4-tuple).
//! - Y sends to `x.adv` from `y.real`: `S(x→y)` receives it. It is "Y to
//!   X"; the switch applies that pair's faults and sends it from `S(y→x)`,
//!   bound at `y.adv` and connected to `x.real`. X sees it come from
//!   `y.adv`, answers there, and the answer takes the same way back.
//! - Nothing else is bound at an advertised address, so a datagram from a
//!   stranger gets the kernel's "port unreachable".

use crate::proxy::{deliver, Counts, Direction, Faults, MAX_DATAGRAM};
use crate::rng::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A member's two gossip addresses.
#[derive(Debug, Clone)]
pub struct Port {
    /// Its name.
    pub name: String,
    /// What it advertises: a port of the switch.
    pub adv: SocketAddr,
    /// What its socket binds.
    pub real: SocketAddr,
}

struct State {
    /// Faults per (from, to) member index.
    links: HashMap<(usize, usize), Direction>,
    rng: Rng,
    counts: Counts,
}

/// A running switch; dropping it stops it.
pub struct GossipSwitch {
    ports: Vec<Port>,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for GossipSwitch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A UDP socket at `local` (shared with `SO_REUSEPORT`) connected to
/// `peer`.
fn pair_socket(local: SocketAddr, peer: SocketAddr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    s.connect(&peer.into())?;
    Ok(UdpSocket::from_std(s.into())?)
}

impl GossipSwitch {
    /// Binds every pair's socket and starts forwarding, with no faults;
    /// randomness from `seed`. Each `adv` must be a free port (it is bound
    /// here, shared only among the switch's own sockets).
    pub async fn start(ports: Vec<Port>, seed: u64) -> anyhow::Result<GossipSwitch> {
        let n = ports.len();
        let mut socks: HashMap<(usize, usize), Arc<UdpSocket>> = HashMap::new();
        for x in 0..n {
            for y in (0..n).filter(|&y| y != x) {
                let s = pair_socket(ports[x].adv, ports[y].real).map_err(|e| {
                    anyhow::anyhow!(
                        "binding the switch's socket at {} for {}: {e}",
                        ports[x].adv,
                        ports[y].name
                    )
                })?;
                socks.insert((x, y), Arc::new(s));
            }
        }
        let state = Arc::new(Mutex::new(State {
            links: HashMap::new(),
            rng: Rng::new(seed),
            counts: Counts::default(),
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (&(x, y), s) in &socks {
            // S(x→y) receives what y sends to x; S(y→x) carries it on.
            let out = socks[&(y, x)].clone();
            tasks.push(tokio::spawn(forward(
                s.clone(),
                out,
                (y, x),
                ports[x].real,
                state.clone(),
                in_flight.clone(),
            )));
        }
        Ok(GossipSwitch {
            ports,
            state,
            tasks,
        })
    }

    fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow::anyhow!("the switch has no member {name}"))
    }

    /// Sets the faults of what `from` sends to `to`.
    pub fn set(&self, from: &str, to: &str, f: Faults) -> anyhow::Result<()> {
        let key = (self.index(from)?, self.index(to)?);
        self.state
            .lock()
            .expect("switch")
            .links
            .insert(key, Direction::new(f));
        Ok(())
    }

    /// Sets the faults of everything `name` receives (`into`) and sends
    /// (`out`).
    pub fn set_member(&self, name: &str, into: Faults, out: Faults) -> anyhow::Result<()> {
        for p in self.ports.iter().filter(|p| p.name != name) {
            self.set(&p.name, name, into)?;
            self.set(name, &p.name, out)?;
        }
        Ok(())
    }

    /// Nothing between `a` and `b`, either way.
    pub fn cut(&self, a: &str, b: &str) -> anyhow::Result<()> {
        self.set(a, b, Faults::blackhole())?;
        self.set(b, a, Faults::blackhole())
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.state.lock().expect("switch").links.clear();
    }

    /// What it counted.
    pub fn counts(&self) -> Counts {
        self.state.lock().expect("switch").counts
    }
}

async fn forward(
    sock: Arc<UdpSocket>,
    out: Arc<UdpSocket>,
    (from, to): (usize, usize),
    dest: SocketAddr,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // A refused send earlier (the receiver not started yet) comes back
        // as an error here: nothing to do but go on.
        let Ok(n) = sock.recv(&mut buf).await else {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        };
        let fate = {
            let mut s = state.lock().expect("switch");
            let State {
                links, rng, counts, ..
            } = &mut *s;
            let d = links
                .entry((from, to))
                .or_insert_with(|| Direction::new(Faults::none()));
            d.fate(rng, counts, n, Instant::now())
        };
        for delay in fate {
            deliver(
                out.clone(),
                dest,
                buf[..n].to_vec(),
                delay,
                in_flight.clone(),
            )
            .await;
        }
    }
}
