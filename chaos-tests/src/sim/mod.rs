//! A fleet in simulated time: hundreds or a thousand gossip members in one
//! process, on virtual time, running the product's own gossip and the
//! relay's own resolution.
//!
//! # How it works
//! 1. A current-thread tokio runtime with its clock paused
//!    ([`run_virtual`]): when every task waits, the clock jumps to the next
//!    timer. A gossip round costs CPU, not time, so 1,000 members at the
//!    product's 200 ms interval run on 2 cores, just slower than real time.
//! 2. Every member is a real [`tether_net::gossip::GossipHandle`] (chitchat
//!    0.13 with the product's settings), started through
//!    [`tether_net::gossip::GossipBuilder`] on the [`SimNet`] instead of the
//!    sealed UDP transport, with a generation ID from the virtual clock.
//! 3. The [`SimNet`] is chitchat's `ChannelTransport` (its real codec: every
//!    envelope is serialized, counted, and parsed back) with seeded delay,
//!    jitter, loss and partitions per link ([`net`]).
//! 4. Member 0 is a relay; the others are nodes with real
//!    [`NodeId`](tether_proto::NodeId)s, records as the daemon builds them,
//!    and 10 sessions each with real session IDs ([`fleet`]). What the
//!    relay sees goes through the relay's own code
//!    (`tether_relay::view::FleetView`) and is
//!    compared with the truth the fleet keeps.
//! 5. The drills ([`scenarios`]): converge and steady traffic, new sessions
//!    resolvable, a silent node, a partition, churn; every wait bounded in
//!    virtual time, every figure in a [`Report`].
//!
//! # What the seed reproduces, and what not
//! One seed ([`seed`]: `CHAOS_SEED`, else drawn and printed) drives the
//! schedule: node IDs, session IDs and records, start times, which node
//! goes silent or leaves, which sessions are created and removed, and the
//! network's delays, jitter and losses. It does not drive chitchat's own
//! choices: chitchat 0.13 picks gossip peers with `rand::rng()` (seeded by
//! the OS) and iterates `HashSet`s whose hash keys are random per process,
//! and neither can be reached from outside. So a rerun replays the same
//! drill, but not the same gossip exchange by exchange, and the figures of
//! two runs of one seed differ a little. The drills' assertions are bounds
//! with margin, not exact values, for that reason.
//!
//! What is not virtual: `tether_net::time::now_ms` (wall clock) is used by
//! the seal, which the simulation does not run, and for the default
//! generation ID, which the simulation replaces. chitchat's failure
//! detector and intervals use tokio's clock, which is virtual here.
//!
//! What it does not simulate: QUIC (clients, relay-to-node dials); the seal
//! itself (its exact per-datagram overhead is added to the byte counts);
//! CPU contention between members (a round costs no virtual time).

pub mod fleet;
pub mod net;
pub mod report;
pub mod scenarios;

pub use fleet::{Fleet, FleetConfig};
pub use net::{LinkFaults, SimNet, Traffic};
pub use report::{Figure, Report};
pub use scenarios::Bounds;

use crate::rng::Rng;
use std::future::Future;
use std::time::Duration;

/// The seed of a run: `CHAOS_SEED` if set, else drawn from the OS.
pub fn seed() -> u64 {
    if let Some(s) = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source failed");
    u64::from_le_bytes(b)
}

/// Runs `f` on a current-thread runtime whose clock is paused: time
/// advances only when every task waits.
pub fn run_virtual<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// What a drill does, and at what size.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The fleet.
    pub fleet: FleetConfig,
    /// The bounds its waits fail at.
    pub bounds: Bounds,
    /// New sessions timed until resolvable.
    pub trials: usize,
    /// Seconds of churn.
    pub churn_rounds: usize,
    /// Steady state over which traffic is measured.
    pub traffic_window: Duration,
    /// How long the partition lasts after the relay has seen it.
    pub partition_hold: Duration,
}

impl Plan {
    /// Every scenario at `members` members, at full length.
    pub fn new(members: usize) -> Plan {
        Plan {
            fleet: FleetConfig::new(members),
            bounds: Bounds::for_members(members),
            trials: 30,
            churn_rounds: 30,
            traffic_window: Duration::from_secs(10),
            partition_hold: Duration::from_secs(10),
        }
    }

    /// Every scenario, shortened for CI (about 35 s of virtual time).
    pub fn short(members: usize) -> Plan {
        Plan {
            trials: 12,
            churn_rounds: 12,
            traffic_window: Duration::from_secs(5),
            partition_hold: Duration::from_secs(5),
            ..Plan::new(members)
        }
    }
}

/// Runs every scenario of `plan`, its schedule from `seed`. The error
/// names the seed and how to rerun it.
pub async fn drill(plan: Plan, seed: u64) -> anyhow::Result<Report> {
    let wall = std::time::Instant::now();
    let mut r = Report {
        seed,
        members: plan.fleet.members,
        ..Report::default()
    };
    let mut f = Fleet::new(plan.fleet.clone(), Rng::new(seed));
    let b = &plan.bounds;
    let res = async {
        let step = |f: &Fleet, what: &str| {
            eprintln!(
                "sim: {what} at {:.1} s virtual, {:.1} s wall",
                f.now().as_secs_f64(),
                wall.elapsed().as_secs_f64()
            )
        };
        step(&f, "converge");
        scenarios::converge(&mut f, b, plan.traffic_window, &mut r).await?;
        step(&f, "new sessions");
        scenarios::new_sessions(&mut f, b, plan.trials, &mut r).await?;
        step(&f, "dead node");
        scenarios::dead_node(&mut f, b, &mut r).await?;
        step(&f, "partition");
        scenarios::partition(&mut f, b, plan.partition_hold, &mut r).await?;
        step(&f, "churn");
        scenarios::churn(&mut f, b, plan.churn_rounds, &mut r).await
    }
    .await;
    r.virtual_time = f.now();
    r.wall_time = wall.elapsed();
    r.dropped = f.net.dropped();
    f.shutdown().await;
    res.map_err(|e| {
        e.context(format!(
            "simulated fleet of {} failed at {:.1} s virtual; seed {seed}: rerun with CHAOS_SEED={seed} \
             (chitchat's own peer picks are not seeded; see chaos_tests::sim)",
            plan.fleet.members,
            r.virtual_time.as_secs_f64()
        ))
    })?;
    Ok(r)
}
