//! The short profile of the failover drills (issue #11): each scenario on
//! a real fleet behind fault proxies, its invariants checked, its row
//! added to the summary table printed at the end of each drill
//! (`cargo test -p chaos-tests --test drills -- --nocapture` shows it).
//!
//! The plans are kept one step a line (`rustfmt::skip`), to read as an
//! operator's drill plan. The proxies' faults replay from a seed, printed
//! at the start of each drill; `CHAOS_SEED=N` runs with seed N.

use chaos_tests::bins::bins;
use chaos_tests::drill::{secs, seed, Drill, Op, Via};
use chaos_tests::fleet::{ChaosFleet, Endpoint};
use chaos_tests::report;
use chaos_tests::{Faults, Link};
use std::net::Ipv4Addr;

/// Drills run one at a time: they share two cores, and their timings are
/// measured.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1024 * 1024;

/// A fleet for a drill: `relays` relays and `nodes` nodes from
/// `127.0.<net>.1`, rings of `ring` bytes.
struct Shape {
    net: u8,
    relays: usize,
    nodes: usize,
    ring: u64,
}

/// Runs `ops` as drill `name` on a fleet of `shape`, then checks the
/// invariants and records the row.
async fn drill(name: &str, faults: &str, shape: Shape, ops: &[Op]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = bins(env!("CARGO_BIN_EXE_chaos-writer")).unwrap();
    let seed = seed();
    let first = Ipv4Addr::new(127, 0, shape.net, 1);
    let fleet = ChaosFleet::create(
        &b.tether,
        first,
        shape.relays,
        shape.nodes,
        shape.ring,
        seed,
    )
    .await
    .unwrap();
    let mut d = Drill::new(name, faults, fleet, b.writer.clone());
    if let Err(e) = d.run(ops).await {
        panic!("{e:#}\n(seed {seed})");
    }
    match d.finish().await {
        Ok(row) => report::record(row),
        Err(e) => panic!("drill {name}: {e:#}\n(seed {seed})"),
    }
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_node_daemon_sigkill_under_heavy_output() {
    drill("1 daemon SIGKILL, restart", "n1 daemon SIGKILL during 500 KB/s output",
        Shape { net: 11, relays: 1, nodes: 1, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("n1"),
            Op::Converge(&["n1"]),
            Op::NewSession { name: "s1", node: "n1", rate: 500_000 },
            Op::Attach { client: "local", session: "s1", via: Via::Local("n1") },
            Op::Attach { client: "local-quic", session: "s1", via: Via::LocalQuic("n1") },
            Op::Attach { client: "remote", session: "s1", via: Via::Relays },
            Op::Wait(secs(1.0)),
            Op::Kill("n1"),
            // Attached through the keeper's socket: the daemon is not on
            // the path.
            Op::AssertFlowing { client: "local", within: secs(0.5) },
            Op::Start("n1"),
            // Back before the idle timeouts (1 s, 2 s): the restarted
            // daemon resets the old connections, and the clients resume.
            Op::AssertResumed { client: "local-quic", within: secs(2.0) },
            Op::AssertResumed { client: "remote", within: secs(2.0) },
            Op::Wait(secs(1.0)),
            Op::AssertComplete("local"),
            Op::AssertComplete("local-quic"),
            Op::AssertComplete("remote"),
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_relay_sigkill_mid_stream_fails_over() {
    drill("2 relay SIGKILL", "r1 SIGKILL mid-stream (500 KB/s)",
        Shape { net: 12, relays: 2, nodes: 1, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("r2"),
            Op::Start("n1"),
            Op::Converge(&["n1"]),
            Op::NewSession { name: "s1", node: "n1", rate: 500_000 },
            Op::Attach { client: "c1", session: "s1", via: Via::Relays },
            Op::Wait(secs(1.0)),
            Op::Kill("r1"),
            Op::AssertResumed { client: "c1", within: secs(2.0) },
            Op::Wait(secs(1.0)),
            Op::AssertComplete("c1"),
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_partitioned_node_is_unreachable_then_catches_up() {
    drill("3 node partition", "n1 cut from relays, gossip and clients",
        Shape { net: 13, relays: 2, nodes: 2, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("r2"),
            Op::Start("n1"),
            Op::Start("n2"),
            Op::Converge(&["n1", "n2"]),
            Op::NewSession { name: "s1", node: "n1", rate: 20_000 },
            Op::NewSession { name: "s2", node: "n2", rate: 20_000 },
            Op::Attach { client: "c2", session: "s2", via: Via::Relays },
            Op::Partition("n1"),
            Op::AssertListed { session: "s1", reachable: false, within: secs(10.0) },
            Op::AssertAttachFails { session: "s1", within: secs(3.0) },
            Op::AssertFlowing { client: "c2", within: secs(1.0) },
            Op::Heal,
            Op::AssertListed { session: "s1", reachable: true, within: secs(10.0) },
            Op::AssertAttachWorks { session: "s1", within: secs(5.0) },
            // From offset 0: what n1 wrote while cut off is all there.
            Op::Attach { client: "c1", session: "s1", via: Via::Relays },
            Op::AssertComplete("c1"),
            Op::AssertComplete("c2"),
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_loss_delay_and_reordering_keep_integrity() {
    let lossy = Faults::lossy_wan();
    drill("4 lossy client path", "5% loss, 50±10 ms each way, 5% reordered, at r1's QUIC",
        Shape { net: 14, relays: 1, nodes: 1, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("n1"),
            Op::Converge(&["n1"]),
            Op::NewSession { name: "bulk", node: "n1", rate: 0 },
            Op::NewEcho { name: "echo", node: "n1" },
            // The baseline, in the same run.
            Op::Attach { client: "clean", session: "bulk", via: Via::Relays },
            Op::MeasureThroughput { client: "clean", over: secs(3.0) },
            Op::MeasureKeystrokes { session: "echo", count: 30 },
            Op::SetLink { member: "r1", endpoint: Endpoint::Quic, link: Link::both(lossy) },
            Op::Attach { client: "lossy", session: "bulk", via: Via::Relays },
            Op::MeasureThroughput { client: "lossy", over: secs(5.0) },
            Op::MeasureKeystrokes { session: "echo", count: 30 },
            Op::Heal,
            Op::AssertFlowing { client: "lossy", within: secs(5.0) },
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_whole_fleet_restart() {
    drill("5 whole-fleet restart", "every relay and node daemon SIGKILLed, then restarted",
        Shape { net: 15, relays: 2, nodes: 2, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("r2"),
            Op::Start("n1"),
            Op::Start("n2"),
            Op::Converge(&["n1", "n2"]),
            Op::NewSession { name: "s1", node: "n1", rate: 100_000 },
            Op::NewSession { name: "s2", node: "n2", rate: 100_000 },
            Op::Attach { client: "c1", session: "s1", via: Via::Relays },
            Op::Attach { client: "c2", session: "s2", via: Via::Relays },
            Op::Kill("r1"),
            Op::Kill("r2"),
            Op::Kill("n1"),
            Op::Kill("n2"),
            Op::Wait(secs(1.0)),
            Op::Start("r1"),
            Op::Start("r2"),
            Op::Start("n1"),
            Op::Start("n2"),
            Op::Converge(&["n1", "n2"]),
            Op::AssertFlowing { client: "c1", within: secs(15.0) },
            Op::AssertFlowing { client: "c2", within: secs(15.0) },
            Op::AssertListed { session: "s1", reachable: true, within: secs(5.0) },
            Op::AssertListed { session: "s2", reachable: true, within: secs(5.0) },
            Op::AssertComplete("c1"),
            Op::AssertComplete("c2"),
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_gossip_churn_never_resurrects_a_removed_session() {
    drill("6 gossip churn", "n2 and n3 leave and join three times while sessions come and go",
        Shape { net: 16, relays: 1, nodes: 3, ring: MIB },
        &[
            Op::Start("r1"),
            Op::Start("n1"),
            Op::Start("n2"),
            Op::Start("n3"),
            Op::Converge(&["n1", "n2", "n3"]),
            Op::NewSession { name: "keep", node: "n1", rate: 10_000 },
            Op::Attach { client: "c1", session: "keep", via: Via::Relays },
            // Round 1: a session removed just before its node dies.
            Op::NewSession { name: "a", node: "n3", rate: 1_000 },
            Op::Remove("a"),
            Op::Kill("n3"),
            Op::NewSession { name: "b", node: "n2", rate: 1_000 },
            Op::Start("n3"),
            Op::Converge(&["n1", "n2", "n3"]),
            Op::AssertGone { session: "a", over: secs(1.0) },
            // Round 2: the other node leaves and comes back; one of its
            // sessions goes right after.
            Op::Kill("n2"),
            Op::NewSession { name: "c", node: "n3", rate: 1_000 },
            Op::Start("n2"),
            Op::Converge(&["n1", "n2", "n3"]),
            Op::Remove("b"),
            Op::Kill("n3"),
            Op::Start("n3"),
            Op::Converge(&["n1", "n2", "n3"]),
            // Round 3: both leave and come back together.
            Op::Remove("c"),
            Op::Kill("n2"),
            Op::Kill("n3"),
            Op::Start("n2"),
            Op::Start("n3"),
            Op::Converge(&["n1", "n2", "n3"]),
            Op::AssertGone { session: "a", over: secs(1.0) },
            Op::AssertGone { session: "b", over: secs(1.0) },
            Op::AssertGone { session: "c", over: secs(3.0) },
            Op::AssertListed { session: "keep", reachable: true, within: secs(5.0) },
            Op::AssertFlowing { client: "c1", within: secs(2.0) },
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_a_stopped_node_is_dead_until_it_continues() {
    drill("7 SIGSTOP node", "n1 daemon SIGSTOPped, then SIGCONTed",
        Shape { net: 17, relays: 1, nodes: 2, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("n1"),
            Op::Start("n2"),
            Op::Converge(&["n1", "n2"]),
            Op::NewSession { name: "s1", node: "n1", rate: 20_000 },
            Op::Attach { client: "c1", session: "s1", via: Via::Relays },
            Op::Pause("n1"),
            Op::AssertListed { session: "s1", reachable: false, within: secs(10.0) },
            Op::AssertAttachFails { session: "s1", within: secs(3.0) },
            Op::Resume("n1"),
            Op::AssertListed { session: "s1", reachable: true, within: secs(10.0) },
            // The attached client kept trying and resumes by itself.
            Op::AssertResumed { client: "c1", within: secs(10.0) },
            Op::AssertAttachWorks { session: "s1", within: secs(3.0) },
            Op::AssertComplete("c1"),
        ],
    )
    .await;
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_asymmetric_partitions_route_no_one_into_a_black_hole() {
    drill("9 asymmetric partition", "r1 reaches n1's QUIC but no gossip; then r1 has gossip but no path to n1",
        Shape { net: 19, relays: 2, nodes: 1, ring: 4 * MIB },
        &[
            Op::Start("r1"),
            Op::Start("r2"),
            Op::Start("n1"),
            Op::Converge(&["n1"]),
            Op::NewSession { name: "s1", node: "n1", rate: 20_000 },
            // r1 hears no gossip: it comes to think n1 dead and says so at
            // once; the client asks r2.
            Op::Cut { from: "r1", to: "n1", endpoint: Endpoint::Gossip },
            Op::Cut { from: "r1", to: "r2", endpoint: Endpoint::Gossip },
            Op::Wait(secs(4.0)),
            Op::AssertRefusedBy { relay: "r1", session: "s1", within: secs(0.5) },
            Op::AssertAttachWorks { session: "s1", within: secs(2.5) },
            Op::Attach { client: "c1", session: "s1", via: Via::Relays },
            Op::Heal,
            Op::AssertFlowing { client: "c1", within: secs(2.0) },
            Op::Converge(&["n1"]),
            // r1 sees n1 live through gossip but cannot reach it: a client
            // it routes waits out its dial timeout (2 s), is told, and asks
            // r2; an attached client's path breaks within the members' idle
            // timeout (2 s) and resumes through r2.
            Op::Cut { from: "r1", to: "n1", endpoint: Endpoint::Quic },
            Op::AssertRefusedBy { relay: "r1", session: "s1", within: secs(2.5) },
            Op::AssertAttachWorks { session: "s1", within: secs(3.0) },
            Op::Attach { client: "c2", session: "s1", via: Via::Relays },
            Op::AssertFlowing { client: "c1", within: secs(3.0) },
            Op::Heal,
            Op::AssertComplete("c1"),
            Op::AssertComplete("c2"),
        ],
    )
    .await;
}
