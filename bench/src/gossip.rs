//! Scenario: gossip. Many chitchat members in one process, each on its
//! own loopback UDP port, over the product's sealed transport (every
//! datagram MAC'd and replay-checked, as between real nodes).
//!
//! For N members (100 and 1,000; 10 and 20 in smoke mode), member 0 plays
//! the relay:
//! - membership convergence: from the start of the last member until
//!   member 0 sees every member live;
//! - a new session resolvable: a random member announces a session key;
//!   time until member 0 has it (p50 and p99 over the trials);
//! - gossip traffic: bytes sent per member per second in steady state;
//! - dead member detected: a member stops; time until member 0's failure
//!   detector marks it dead.
//!
//! The real-process rows (a relay and 3 or 10 `tether node` processes) are
//! in the `fleet` scenario ([`crate::mesh`]).

use crate::report::{Row, Section};
use crate::runner::percentile;
use crate::Ctx;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tether_net::gossip::{GossipHandle, GossipSettings};
use tether_proto::gossip::{NodeRecord, Role, SessionRecord};
use tether_proto::{NodeId, SessionId};
use tether_testkit::records;

/// One cluster size and its gossip interval.
struct Size {
    n: usize,
    interval: Duration,
    trials: usize,
    shape: Shape,
}

/// What the members announce.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Short member names (`m42`) and no sessions: the row as it was,
    /// which understates real traffic (short names compress well).
    Bare,
    /// As a real fleet: node IDs, records as the daemon builds them, and
    /// [`SESSIONS`] sessions per node.
    Real,
}

/// Sessions each node announces in the [`Shape::Real`] rows.
const SESSIONS: usize = 10;

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    raise_fd_limit();
    let size = |n, ms, trials, shape| Size {
        n,
        interval: Duration::from_millis(ms),
        trials,
        shape,
    };
    let sizes = if ctx.smoke {
        vec![size(10, 100, 3, Shape::Real), size(20, 100, 3, Shape::Real)]
    } else {
        vec![
            size(10, 100, 30, Shape::Real),
            size(100, 100, 30, Shape::Bare),
            size(100, 100, 30, Shape::Real),
            // A 1,000-member digest is ~57 KB per message: on 2 cores a
            // 100 ms interval would be 1.7 GB/s of gossip in one process.
            // (chaos-tests' simulated fleet measures 1,000 in virtual time.)
            size(1000, 1000, 10, Shape::Real),
        ]
    };
    let mut rows = Vec::new();
    for s in sizes {
        crate::progress::set(&format!("gossip: {} members", s.n));
        match one_size(&s).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => {
                let mut r = Row::note_only(&scenario(&s), "(scenario)", "", "");
                r.error = Some(format!("{e:#}"));
                r.note = format!("ERROR: {e:#}");
                rows.push(r);
            }
        }
        if crate::cleanup::INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(Section {
        verb: "gossip".into(),
        about: "chitchat members in one process, each on its own loopback UDP port, over \
                tether's sealed transport; member 0 plays the relay. Latencies in ms; \
                traffic in KB/s per member. Targets: new session resolvable <= 300 ms p99 \
                at N = 10 and <= 1 s p99 at N = 100 (100 ms interval); dead member <= 3 s; \
                <= 50 KB/s per member at N = 100."
            .into(),
        rows,
    })
}

fn scenario(s: &Size) -> String {
    let shape = match s.shape {
        Shape::Bare => "short names, no sessions",
        Shape::Real => "node IDs, 10 sessions each",
    };
    format!(
        "gossip N={} ({} ms interval, {shape})",
        s.n,
        s.interval.as_millis()
    )
}

/// Member `i`: its member ID, node ID (not for the relay or a bare
/// member), record and sessions.
struct Announce {
    member_id: String,
    node_id: Option<NodeId>,
    record: NodeRecord,
    sessions: Vec<(SessionId, SessionRecord)>,
}

fn announce(i: usize, shape: Shape, quic: SocketAddr, draw: records::Draw<'_>) -> Announce {
    if shape == Shape::Bare {
        return Announce {
            member_id: format!("m{i}"),
            node_id: None,
            record: NodeRecord {
                id: format!("m{i}"),
                name: format!("m{i}"),
                role: if i == 0 { Role::Relay } else { Role::Node },
                quic: Some("127.0.0.1:1".into()),
                fp: "00".into(),
                ver: "bench".into(),
                relays: vec![],
            },
            sessions: vec![],
        };
    }
    if i == 0 {
        return Announce {
            member_id: "relay:r0".into(),
            node_id: None,
            record: records::relay("r0", quic, draw),
            sessions: vec![],
        };
    }
    let (id, record) = records::node(i, quic, draw);
    let sessions = (0..SESSIONS)
        .map(|_| records::session(id, None, 1_760_000_000, draw))
        .collect();
    Announce {
        member_id: id.to_string(),
        node_id: Some(id),
        record,
        sessions,
    }
}

/// splitmix64: the bench's records need variety, not secrecy.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn one_size(s: &Size) -> anyhow::Result<Vec<Row>> {
    let sc = scenario(s);
    // A port per cluster size and shape: the previous one's sockets may
    // still be closing.
    let port = 7000 + (s.n % 1000) as u16 + if s.shape == Shape::Real { 500 } else { 0 };
    // One loopback address per member, a fixed port: the transport's own
    // helper sockets take ephemeral ports on 127.0.0.1, so they can never
    // collide with these.
    let addrs: Vec<SocketAddr> = (0..s.n)
        .map(|i| SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250 + 1) as u8], port)))
        .collect();
    let seeds: Vec<String> = addrs.iter().take(3).map(|a| a.to_string()).collect();
    let mut members = Vec::new();
    let mut ids = Vec::new();
    let mut state = s.n as u64;
    let t0 = Instant::now();
    for (i, a) in addrs.iter().enumerate() {
        let quic = SocketAddr::from((a.ip(), 7100));
        let ann = announce(i, s.shape, quic, &mut || splitmix(&mut state));
        let settings = GossipSettings {
            member_id: ann.member_id,
            cluster_id: "bench".into(),
            listen: *a,
            advertise: *a,
            seeds: seeds.clone(),
            interval: s.interval,
            secret: b"bench cluster secret, 32 bytes!!".to_vec(),
            next_secret: None,
            previous_secret: None,
            socket: None,
        };
        let g = GossipHandle::start(settings, &ann.record)
            .await
            .with_context(|| format!("starting member {i}"))?;
        for (id, rec) in &ann.sessions {
            g.set_session(id, rec).await;
        }
        members.push(g);
        ids.push(ann.node_id);
    }
    let started = t0.elapsed();
    let limit = Duration::from_secs(if s.n >= 1000 { 180 } else { 60 });
    let t1 = Instant::now();
    loop {
        let live = members[0].members().await.iter().filter(|m| m.live).count();
        if live == s.n {
            break;
        }
        anyhow::ensure!(
            t1.elapsed() < limit,
            "member 0 saw {live} of {} members live after {limit:?}",
            s.n
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let converge_ms = t1.elapsed().as_secs_f64() * 1e3;
    let mut conv = Row::new(&sc, "membership converged at member 0", "ms");
    conv.samples = vec![converge_ms];
    conv.median = Some(converge_ms);
    conv.note = format!(
        "after {:.0} ms to start {} members",
        started.as_secs_f64() * 1e3,
        s.n
    );

    // Steady-state traffic.
    let sent0: u64 = members
        .iter()
        .map(|m| m.stats.bytes_sent.load(Ordering::Relaxed))
        .sum();
    let window = Duration::from_secs(if s.n >= 1000 { 5 } else { 3 });
    tokio::time::sleep(window).await;
    let sent1: u64 = members
        .iter()
        .map(|m| m.stats.bytes_sent.load(Ordering::Relaxed))
        .sum();
    let kbs = (sent1 - sent0) as f64 / s.n as f64 / window.as_secs_f64() / 1e3;
    let mut traffic = Row::new(&sc, "gossip sent per member", "KB/s");
    traffic.samples = vec![kbs];
    traffic.median = Some(kbs);

    // New sessions, announced by members 1.., seen by member 0.
    let mut lat = Vec::new();
    for t in 0..s.trials {
        let k = 1 + (t * 7919) % (s.n - 1);
        let id = SessionId::generate(ids[k].unwrap_or(NodeId([k as u8; 8])));
        let rec = SessionRecord {
            n: None,
            st: tether_proto::SessionState::Running,
            c: "bench".into(),
            t: 0,
            o: None,
        };
        let start = Instant::now();
        members[k].set_session(&id, &rec).await;
        loop {
            let seen = members[0]
                .members()
                .await
                .iter()
                .any(|m| m.sessions.iter().any(|(s, _)| *s == id));
            if seen {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "a session key never reached member 0"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lat.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mut resolve = latency_row(&sc, "new session resolvable at member 0", lat);
    resolve.note = format!("{} trials", s.trials);

    // A member stops; member 0 detects it.
    let victim = s.n - 1;
    let victim_id = ids[victim].map_or(format!("m{victim}"), |id| id.to_string());
    members[victim].stop();
    let start = Instant::now();
    loop {
        let dead = members[0]
            .members()
            .await
            .iter()
            .any(|m| m.member_id == victim_id && !m.live);
        if dead {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "the stopped member was never marked dead"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dead_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut dead = Row::new(&sc, "dead member detected at member 0", "ms");
    dead.samples = vec![dead_ms];
    dead.median = Some(dead_ms);
    let rejected: u64 = members.iter().map(|m| m.stats.rejected()).sum();
    dead.note = format!("{rejected} datagrams rejected in all (expected 0)");
    for m in &members {
        m.stop();
    }
    Ok(vec![conv, resolve, dead, traffic])
}

fn latency_row(sc: &str, variant: &str, mut lat: Vec<f64>) -> Row {
    lat.sort_by(f64::total_cmp);
    let mut r = Row::new(sc, variant, "ms");
    r.p50 = percentile(&lat, 50.0);
    r.p99 = percentile(&lat, 99.0);
    r.count = Some(lat.len());
    r.min = lat.first().copied();
    r.max = lat.last().copied();
    r.median = r.p50;
    r.samples = lat;
    r
}

/// 1,000 members hold 3,000 sockets.
fn raise_fd_limit() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}
