//! A local `tether attach` outlives its node daemon: the daemon is
//! SIGKILLed under a running attach, and the client carries on, every line
//! of the session's output shown once, and what was typed meanwhile
//! delivered once. They attach with `--replay raw`, so that the client
//! shows the byte stream itself (a snapshot would redraw the screen).
//!
//! - On the fast path (the default) the client talks to the session's
//!   keeper and never notices: no reconnect, no status line, input and
//!   output go on while no daemon runs.
//! - Over QUIC to the daemon (`TETHER_LOCAL_QUIC=1`, the path of a remote
//!   client) it notices, says so once, and resumes by itself when a new
//!   daemon is up.

use std::time::Duration;
use tether_testkit::{wait_until, PtyProc, TestNode};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

const T: Duration = Duration::from_secs(30);

/// The line the client prints while its daemon is away.
const STATUS: &str = "\r\n[tether: the node daemon went away; reconnecting...]\r\n";

/// The numbers the session printed, as the client showed them, in order.
/// The status line goes first: it may have cut a line of output in two.
fn numbers(out: &str) -> Vec<u64> {
    out.replace(STATUS, "")
        .split('\n')
        .filter_map(|l| l.trim_end_matches('\r').parse().ok())
        .collect()
}

/// Counts until the file `stop` appears, then says how far it got.
fn counter(stop: &std::path::Path) -> String {
    format!(
        "i=0; while [ ! -e {} ]; do i=$((i+1)); echo $i; sleep 0.01; done; echo done-$i",
        stop.display()
    )
}

/// Stops the counter, waits for the client's exit, and checks that it
/// showed every number once, in order.
async fn stop_and_check(a: &mut PtyProc, stop: &std::path::Path) -> String {
    std::fs::write(stop, b"").unwrap();
    a.expect("[exited: 0]", T).await;
    assert_eq!(a.exit_code(T).await, 0);
    let out = a.output();
    let last: u64 = out
        .split("done-")
        .nth(1)
        .and_then(|s| s.split('\r').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no done-N line in {out:?}"));
    let nums = numbers(&out);
    assert!(
        nums.iter().copied().eq(1..=last),
        "every line from 1 to {last} exactly once, in order; got {} lines: {out:?}",
        nums.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_attach_does_not_notice_a_sigkill_of_the_daemon() {
    let mut node = TestNode::start(TETHER).unwrap();
    let stop = node.path().join("stop");
    node.new_session(&["--name", "count"], &["sh", "-c", &counter(&stop)]);
    let dir = node.path().to_str().unwrap().to_string();
    let mut a = PtyProc::spawn(
        TETHER,
        &["--state-dir", &dir, "attach", "--replay", "raw", "count"],
        (80, 24),
    )
    .unwrap();
    a.expect("\r\n50\r\n", T).await;

    // No daemon at all now: output and input go on regardless.
    node.kill_daemon().unwrap();
    assert!(node.runtime().is_none_or(|r| !pid_alive(r.pid)));
    let seen = *numbers(&a.output()).last().unwrap();
    a.expect(&format!("\r\n{}\r\n", seen + 50), T).await;
    a.write(b"typed-while-dead\r").await;
    a.expect("typed-while-dead", T).await;

    // A new daemon re-adopts the session; the client never knew. The
    // daemon counts it, from the keeper's status page.
    node.start_daemon().unwrap();
    assert_eq!(node.state("count"), "running");
    assert_eq!(node.info("count")["clients"], 1);
    let ls: serde_json::Value = serde_json::from_str(&node.ok(&["ls", "--json"])).unwrap();
    assert_eq!(ls[0]["clients"], 1, "{ls}");
    let out = stop_and_check(&mut a, &stop).await;
    assert!(!out.contains("[tether:"), "the client noticed: {out:?}");
    assert_eq!(out.matches("typed-while-dead").count(), 1, "{out:?}");
}

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_attach_resumes_after_the_daemon_is_killed_and_restarted() {
    let mut node = TestNode::start(TETHER).unwrap();
    let stop = node.path().join("stop");
    node.new_session(&["--name", "count"], &["sh", "-c", &counter(&stop)]);
    let line = format!(
        "TETHER_LOCAL_QUIC=1 exec {TETHER} --state-dir {} attach --replay raw count",
        node.path().display()
    );
    let mut a = PtyProc::spawn("/bin/sh", &["-c", &line], (80, 24)).unwrap();
    a.expect("\r\n50\r\n", T).await;

    let before = node.runtime().unwrap().pid;
    node.kill_daemon().unwrap();
    node.start_daemon().unwrap();
    assert_ne!(node.runtime().unwrap().pid, before);

    // The client notices, says so once, and attaches to the new daemon.
    // What is typed meanwhile arrives once (the terminal echoes it).
    a.expect(STATUS, T).await;
    a.write(b"typed-while-away\r").await;
    wait_until("the client attached to the new daemon", T, || {
        node.info("count")["clients"] == 1
    });
    a.expect("typed-while-away", T).await;
    // Live output flows again.
    let seen = *numbers(&a.output()).last().unwrap();
    a.expect(&format!("\r\n{}\r\n", seen + 50), T).await;

    let out = stop_and_check(&mut a, &stop).await;
    assert_eq!(out.matches(STATUS).count(), 1, "{out:?}");
    assert_eq!(out.matches("typed-while-away").count(), 1, "{out:?}");
}
