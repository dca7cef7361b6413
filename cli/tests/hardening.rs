//! The smaller findings of the security review (issue #8), through the
//! real `tether` binary, each with a test that fails without its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tether_testkit::{wait_until, OutputWithin, TestNode, CLI_TIMEOUT};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

const T: Duration = Duration::from_secs(20);

/// Exit codes of `cli/src/exit.rs`.
const USAGE: i32 = 2;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// This process's umask, from `/proc` (setting it to read it would change
/// it for the other tests running meanwhile).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("a Umask line in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

/// Every path under `dir` (itself excluded), directories first.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn every_file_a_node_and_its_sessions_make_is_private() {
    // No daemon yet: the first verb starts one in the background, which
    // logs to a node.log this client creates.
    let node = TestNode::empty(TETHER).unwrap();
    let running = node.new_session(
        &["--name", "running"],
        &["sh", "-c", "umask; exec sleep 600"],
    );
    let ended = node.new_session(&[], &["sh", "-c", "echo ended"]);
    assert_eq!(node.tether(&["wait", &ended]).status.code(), Some(0));
    wait_until("the session's umask printed", T, || {
        node.tail(&running).ends_with(b"\n")
    });

    let mut paths = Vec::new();
    walk(node.path(), &mut paths);
    let loose: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let mode = std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| format!("{} {mode:o}", p.display()))
        })
        .collect();
    assert!(loose.is_empty(), "readable by others: {loose:#?}");
    // The walk saw every kind of file there is.
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in [
        "node.log",
        "node.json",
        "node.lock",
        "meta.json",
        "ring",
        "keeper.sock",
        "keeper.json",
        "keeper.log",
        "exit.json",
    ] {
        assert!(names.iter().any(|n| n == f), "no {f} in {names:?}");
    }
    // The private modes are the node's own: the session's process runs
    // with the user's umask, as it would in any terminal.
    let shown = String::from_utf8(node.tail(&running)).unwrap();
    assert_eq!(
        u32::from_str_radix(shown.trim(), 8).unwrap(),
        umask(),
        "{shown:?}"
    );
}

#[test]
fn ca_verbs_ignore_an_exported_tether_relay() {
    let node = TestNode::empty(TETHER).unwrap();
    let ca = node.path().join("ca");
    let ca = ca.to_str().unwrap();
    // As `eval "$(configs/fleet/fleet.sh env)"` leaves a shell.
    let tether = |args: &[&str]| {
        Command::new(TETHER)
            .env("TETHER_RELAY", "127.0.0.41:7400")
            .env_remove("TETHER_TLS_DIR")
            .arg("--state-dir")
            .arg(node.path())
            .args(args)
            .output_within(CLI_TIMEOUT)
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = tether(args);
        assert!(o.status.success(), "tether {args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    ok(&["ca", "init", ca]);
    for (flag, name, dir) in [
        ("--client", "x", "clients"),
        ("--node", "n1", "nodes"),
        ("--relay", "r1", "relays"),
    ] {
        let out = ok(&["ca", "issue", ca, flag, name]);
        let issued = Path::new(ca).join(dir).join(name);
        assert_eq!(Path::new(&out), issued);
        assert!(issued.join("cert.pem").exists());
    }
    // A --relay before `ca` is no relay name either.
    let o = tether(&[
        "--relay",
        "127.0.0.41:7400",
        "ca",
        "issue",
        ca,
        "--client",
        "y",
    ]);
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    // The client verbs still take their relays from it: here they ask for
    // the credentials a fleet needs instead of starting a local node.
    let o = tether(&["ls"]);
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tls-dir"), "{}", stderr(&o));
    assert!(node.runtime().is_none(), "a local node was started");
}
