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

/// One cluster size and its gossip interval.
struct Size {
    n: usize,
    interval: Duration,
    trials: usize,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    raise_fd_limit();
    let sizes = if ctx.smoke {
        vec![
            Size {
                n: 10,
                interval: Duration::from_millis(100),
                trials: 3,
            },
            Size {
                n: 20,
                interval: Duration::from_millis(100),
                trials: 3,
            },
        ]
    } else {
        vec![
            Size {
                n: 10,
                interval: Duration::from_millis(100),
                trials: 30,
            },
            Size {
                n: 100,
                interval: Duration::from_millis(100),
                trials: 30,
            },
            // A 1,000-member digest is ~57 KB per message: on 2 cores a
            // 100 ms interval would be 1.7 GB/s of gossip in one process.
            Size {
                n: 1000,
                interval: Duration::from_millis(1000),
                trials: 10,
            },
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
    format!("gossip N={} ({} ms interval)", s.n, s.interval.as_millis())
}

fn record(i: usize) -> NodeRecord {
    NodeRecord {
        id: format!("m{i}"),
        name: format!("m{i}"),
        role: if i == 0 { Role::Relay } else { Role::Node },
        quic: Some("127.0.0.1:1".into()),
        fp: "00".into(),
        ver: "bench".into(),
        relays: vec![],
    }
}

async fn one_size(s: &Size) -> anyhow::Result<Vec<Row>> {
    let sc = scenario(s);
    // A port per cluster size: the previous size's sockets may still be
    // closing.
    let port = 7000 + (s.n % 1000) as u16;
    // One loopback address per member, a fixed port: the transport's own
    // helper sockets take ephemeral ports on 127.0.0.1, so they can never
    // collide with these.
    let addrs: Vec<SocketAddr> = (0..s.n)
        .map(|i| SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250 + 1) as u8], port)))
        .collect();
    let seeds: Vec<String> = addrs.iter().take(3).map(|a| a.to_string()).collect();
    let mut members = Vec::new();
    let t0 = Instant::now();
    for (i, a) in addrs.iter().enumerate() {
        let settings = GossipSettings {
            member_id: format!("m{i}"),
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
        members.push(
            GossipHandle::start(settings, &record(i))
                .await
                .with_context(|| format!("starting member {i}"))?,
        );
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
        let id = SessionId::generate(NodeId([k as u8; 8]));
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
    let victim_id = format!("m{victim}");
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
