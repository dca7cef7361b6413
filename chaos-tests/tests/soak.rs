//! The soak: a fleet of 2 relays and 3 nodes, sessions written and
//! watched without a break, and a seeded random fault every round (a
//! relay or a node daemon killed and restarted, a node partitioned or
//! stopped, a lossy client path, a relay cut from gossip). After each
//! round every watcher must flow again and every session be listed; at
//! the end the drill's invariants hold (no byte lost, doubled or altered;
//! every session still runs its first process; memory bounded).
//!
//! Bounded in time: `CHAOS_SOAK_SECS` (default 600) of rounds, then it
//! stops by itself.
//!
//! ```text
//! cargo test -p chaos-tests --test soak -- --ignored --nocapture
//! ```

use chaos_tests::bins::bins;
use chaos_tests::drill::{secs, seed, Drill, Op, Via};
use chaos_tests::fleet::{ChaosFleet, Endpoint};
use chaos_tests::report;
use chaos_tests::rng::Rng;
use chaos_tests::{Faults, Link};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const RELAYS: [&str; 2] = ["r1", "r2"];
const WATCHERS: [&str; 3] = ["w1", "w2", "w3"];
const SESSIONS: [&str; 3] = ["s1", "s2", "s3"];

/// One round's fault and its repair, from `pick`.
fn round(pick: u64) -> (String, Vec<Op>) {
    let node = NODES[(pick / 7 % 3) as usize];
    let relay = RELAYS[(pick / 11 % 2) as usize];
    let all_flowing = WATCHERS.iter().map(|&w| Op::AssertFlowing {
        client: w,
        within: secs(15.0),
    });
    let (what, mut ops) = match pick % 6 {
        0 => (
            format!("{relay} SIGKILL, restart"),
            vec![Op::Kill(relay), Op::Wait(secs(1.0)), Op::Start(relay)],
        ),
        1 => (
            format!("{node} daemon SIGKILL, restart"),
            vec![Op::Kill(node), Op::Wait(secs(1.0)), Op::Start(node)],
        ),
        2 => (
            format!("{node} partitioned 4 s"),
            vec![Op::Partition(node), Op::Wait(secs(4.0)), Op::Heal],
        ),
        3 => (
            format!("{node} SIGSTOP 4 s"),
            vec![Op::Pause(node), Op::Wait(secs(4.0)), Op::Resume(node)],
        ),
        4 => {
            let lossy = Faults::lossy_wan();
            (
                format!("{relay} QUIC lossy 4 s"),
                vec![
                    Op::SetLink {
                        member: relay,
                        endpoint: Endpoint::Quic,
                        link: Link::both(lossy),
                    },
                    Op::Wait(secs(4.0)),
                    Op::Heal,
                ],
            )
        }
        _ => (
            format!("{relay} cut from gossip 4 s"),
            vec![
                Op::Cut {
                    from: relay,
                    to: "n1",
                    endpoint: Endpoint::Gossip,
                },
                Op::Cut {
                    from: relay,
                    to: "n2",
                    endpoint: Endpoint::Gossip,
                },
                Op::Cut {
                    from: relay,
                    to: "n3",
                    endpoint: Endpoint::Gossip,
                },
                Op::Wait(secs(4.0)),
                Op::Heal,
            ],
        ),
    };
    ops.push(Op::Converge(&NODES));
    ops.extend(all_flowing);
    (what, ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of CHAOS_SOAK_SECS (600 s by default); run it with --ignored"]
async fn soak() {
    let limit = std::env::var("CHAOS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600u64);
    let seed = seed();
    eprintln!("soak of {limit} s, seed {seed} (rerun with CHAOS_SEED={seed})");
    let b = bins(env!("CARGO_BIN_EXE_chaos-writer")).unwrap();
    let fleet = ChaosFleet::create(&b.tether, Ipv4Addr::new(127, 0, 20, 1), 2, 3, 4 << 20, seed)
        .await
        .unwrap();
    let mut d = Drill::new(
        "soak",
        "a random fault every round",
        fleet,
        b.writer.clone(),
    );
    let mut setup = vec![Op::Start("r1"), Op::Start("r2")];
    setup.extend(NODES.iter().map(|&n| Op::Start(n)));
    setup.push(Op::Converge(&NODES));
    for i in 0..3 {
        setup.push(Op::NewSession {
            name: SESSIONS[i],
            node: NODES[i],
            rate: 20_000,
        });
        setup.push(Op::Attach {
            client: WATCHERS[i],
            session: SESSIONS[i],
            via: Via::Relays,
        });
    }
    d.run(&setup)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n(seed {seed})"));
    let t = Instant::now();
    let mut rng = Rng::new(seed);
    let mut rounds = Vec::new();
    while t.elapsed() < Duration::from_secs(limit) {
        let (what, ops) = round(rng.next_u64());
        eprintln!(
            "soak round {} at {:?}: {what}",
            rounds.len() + 1,
            t.elapsed()
        );
        if let Err(e) = d.run(&ops).await {
            panic!("round {} ({what}): {e:#}\n(seed {seed})", rounds.len() + 1);
        }
        rounds.push(what);
    }
    let mut row = d
        .finish()
        .await
        .unwrap_or_else(|e| panic!("soak: {e:#}\n(seed {seed})"));
    row.faults = format!("{} random faults in {:?}", rounds.len(), t.elapsed());
    report::record(row);
}
