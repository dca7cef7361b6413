//! Helpers of the gossip attack tests: members on sockets the test holds,
//! a forwarding proxy that captures what it forwards, waiting for a
//! condition.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_net::gossip::{GossipHandle, GossipSettings, Member};
use tether_proto::gossip::{NodeRecord, Role};

/// How long any wait of these tests may take.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A UDP socket bound to a free port of `ip`, held until a member takes it.
pub fn udp(ip: &str) -> std::net::UdpSocket {
    std::net::UdpSocket::bind(format!("{ip}:0")).unwrap()
}

/// A member's settings, on a socket the test bound.
pub struct Spec {
    pub id: &'static str,
    pub socket: std::net::UdpSocket,
    pub advertise: Option<SocketAddr>,
    pub seeds: Vec<SocketAddr>,
    pub secret: &'static str,
    pub next: Option<&'static str>,
    pub previous: Option<&'static str>,
}

impl Spec {
    /// A member `id` of the test cluster with secret `secret`, on `ip`.
    pub fn new(id: &'static str, ip: &str, secret: &'static str) -> Spec {
        Spec {
            id,
            socket: udp(ip),
            advertise: None,
            seeds: vec![],
            secret,
            next: None,
            previous: None,
        }
    }

    /// Its socket's address.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn seeds(mut self, seeds: &[SocketAddr]) -> Spec {
        self.seeds = seeds.to_vec();
        self
    }

    pub async fn start(self) -> GossipHandle {
        let listen = self.addr();
        let s = GossipSettings {
            member_id: self.id.into(),
            cluster_id: "test-cluster".into(),
            listen,
            advertise: self.advertise.unwrap_or(listen),
            seeds: self.seeds.iter().map(|a| a.to_string()).collect(),
            interval: Duration::from_millis(20),
            secret: self.secret.as_bytes().to_vec(),
            next_secret: self.next.map(|s| s.as_bytes().to_vec()),
            previous_secret: self.previous.map(|s| s.as_bytes().to_vec()),
            socket: Some(self.socket),
        };
        GossipHandle::start(s, &record(self.id)).await.unwrap()
    }
}

/// The record a test member announces: its name is its ID.
pub fn record(name: &str) -> NodeRecord {
    NodeRecord {
        id: name.into(),
        name: name.into(),
        role: Role::Node,
        quic: Some("127.0.0.1:1".into()),
        fp: "00".into(),
        ver: "test".into(),
        relays: vec![],
    }
}

/// Whether `ms` holds the record member `name` announced.
pub fn sees_record(ms: &[Member], name: &str) -> bool {
    ms.iter()
        .any(|m| m.record.as_ref().is_some_and(|r| r.name == name))
}

/// Waits until `cond` holds, polling every few milliseconds; fails the
/// test after [`PATIENCE`], naming `what`.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    while !cond().await {
        assert!(t0.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A datagram the proxy forwarded.
#[derive(Clone)]
pub struct Captured {
    /// From a to b (else from b to a).
    pub to_b: bool,
    pub bytes: Vec<u8>,
}

/// A forwarding proxy between members a and b, as a NAT or a fault proxy
/// would be: a reaches b at `as_b`, b reaches a at `as_a`, and each sees
/// the other's datagrams come from the address it advertises. Every
/// datagram is recorded after it is forwarded.
pub struct Proxy {
    /// The address posing as a (a advertises it).
    pub as_a: SocketAddr,
    /// The address posing as b (b advertises it).
    pub as_b: SocketAddr,
    captured: Arc<Mutex<Vec<Captured>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Binds the two addresses on `ip`; [`Proxy::run`] starts forwarding.
    pub fn bind(ip: &str) -> (Proxy, std::net::UdpSocket, std::net::UdpSocket) {
        let (pa, pb) = (udp(ip), udp(ip));
        let p = Proxy {
            as_a: pa.local_addr().unwrap(),
            as_b: pb.local_addr().unwrap(),
            captured: Arc::default(),
            task: None,
        };
        (p, pa, pb)
    }

    /// Forwards between a at `a` and b at `b`.
    pub fn run(
        &mut self,
        pa: std::net::UdpSocket,
        pb: std::net::UdpSocket,
        a: SocketAddr,
        b: SocketAddr,
    ) {
        pa.set_nonblocking(true).unwrap();
        pb.set_nonblocking(true).unwrap();
        let pa = tokio::net::UdpSocket::from_std(pa).unwrap();
        let pb = tokio::net::UdpSocket::from_std(pb).unwrap();
        let captured = self.captured.clone();
        self.task = Some(tokio::spawn(async move {
            let (mut ba, mut bb) = (vec![0u8; 65536], vec![0u8; 65536]);
            loop {
                // b sends to `as_a`: forward to a from `as_b`, and back.
                let (bytes, to_b) = tokio::select! {
                    r = pa.recv_from(&mut ba) => {
                        let (n, _) = r.unwrap();
                        let _ = pb.send_to(&ba[..n], a).await;
                        (ba[..n].to_vec(), false)
                    }
                    r = pb.recv_from(&mut bb) => {
                        let (n, _) = r.unwrap();
                        let _ = pa.send_to(&bb[..n], b).await;
                        (bb[..n].to_vec(), true)
                    }
                };
                captured.lock().unwrap().push(Captured { to_b, bytes });
            }
        }));
    }

    /// How many datagrams were forwarded so far.
    pub fn count(&self) -> usize {
        self.captured.lock().unwrap().len()
    }

    /// Stops forwarding and returns what was forwarded, in order.
    pub async fn stop(self) -> Vec<Captured> {
        if let Some(t) = self.task {
            t.abort();
            let _ = t.await;
        }
        Arc::try_unwrap(self.captured)
            .ok()
            .expect("the proxy task is gone")
            .into_inner()
            .unwrap()
    }
}

/// Members a and b that reach each other only through a [`Proxy`].
pub struct Pair {
    pub a: GossipHandle,
    pub b: GossipHandle,
    /// a's own socket.
    pub a_addr: SocketAddr,
    /// b's own socket.
    pub b_addr: SocketAddr,
    pub proxy: Proxy,
}

/// Starts a [`Pair`] with the cluster secret `secret`.
pub async fn pair_through_proxy(secret: &'static str) -> Pair {
    let (mut proxy, pa, pb) = Proxy::bind("127.0.0.61");
    let mut a = Spec::new("a", "127.0.0.62", secret).seeds(&[proxy.as_b]);
    a.advertise = Some(proxy.as_a);
    let mut b = Spec::new("b", "127.0.0.63", secret);
    b.advertise = Some(proxy.as_b);
    let (a_addr, b_addr) = (a.addr(), b.addr());
    proxy.run(pa, pb, a_addr, b_addr);
    Pair {
        a: a.start().await,
        b: b.start().await,
        a_addr,
        b_addr,
        proxy,
    }
}
