//! A fleet in simulated time (see `chaos_tests::sim`): 100 members in the
//! short profile; 1,000 on demand:
//!
//! ```text
//! cargo test --release -p chaos-tests --test sim -- --ignored --nocapture
//! ```
//!
//! A failure prints its seed; `CHAOS_SEED=<seed>` reruns the same schedule.

use chaos_tests::sim::{drill, run_virtual, seed, Plan, Report};

fn run(name: &str, plan: Plan) -> Report {
    let seed = seed();
    eprintln!("{name}: seed {seed} (rerun: CHAOS_SEED={seed} cargo test -p chaos-tests --test sim {name})");
    let report = run_virtual(drill(plan, seed)).unwrap_or_else(|e| {
        panic!("{e:#}\nrerun: CHAOS_SEED={seed} cargo test -p chaos-tests --test sim {name}")
    });
    println!("{report}");
    report
}

/// Every scenario at 100 members: converge, new sessions, a silent node,
/// a partition, churn; bounds checked inside.
#[test]
fn fleet_of_100() {
    let r = run("fleet_of_100", Plan::short(100));
    let traffic = r
        .figure("traffic", "gossip sent per node (chitchat bytes)")
        .expect("traffic measured");
    assert_eq!(traffic.samples.len(), 99, "every node's traffic measured");
    assert!(traffic.percentile(50.0).unwrap() > 0.0);
}

/// The same at 1,000 members (the short plan): tens of minutes of wall
/// time in release, about 7 GB of memory. `CHAOS_SIM_INTERVAL_MS` sets the
/// gossip interval (default the product's 200 ms; a large fleet may run a
/// longer one, and each virtual second then costs less wall time); the
/// time bounds scale with it.
#[test]
#[ignore = "1,000 members: run with --release -- --ignored"]
fn fleet_of_1000() {
    let mut plan = Plan::short(1000);
    if let Some(ms) = std::env::var("CHAOS_SIM_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let k = ms as f64 / plan.fleet.interval.as_millis() as f64;
        plan.fleet.interval = std::time::Duration::from_millis(ms);
        plan.bounds = plan.bounds.scaled(k.max(1.0));
    }
    run("fleet_of_1000", plan);
}
