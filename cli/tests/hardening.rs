//! The smaller findings of the security review (issue #8), through the
//! real `tether` binary, each with a test that fails without its fix.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tether_node::NodeConfig;
use tether_testkit::{wait_until, OutputWithin, TestNode, CLI_TIMEOUT};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

const T: Duration = Duration::from_secs(20);

/// Exit codes of `cli/src/exit.rs`.
const USAGE: i32 = 2;
const LIMIT: i32 = 8;
const DAMAGED: i32 = 9;

/// `tether ls --json`, as an array.
fn ls(node: &TestNode) -> Vec<serde_json::Value> {
    let out = node.ok(&["ls", "--json"]);
    match serde_json::from_str(&out) {
        Ok(serde_json::Value::Array(a)) => a,
        _ => panic!("tether ls --json: not an array: {out}"),
    }
}

/// The listed session `id`.
fn listed(node: &TestNode, id: &str) -> serde_json::Value {
    ls(node)
        .into_iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("session {id} is not listed"))
}

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

#[test]
fn a_session_with_damaged_metadata_is_listed_inspected_killed_and_removed() {
    let mut node = TestNode::start(TETHER).unwrap();
    let live = node.new_session(
        &["--name", "victim"],
        &["sh", "-c", "echo alive-1; exec sleep 600"],
    );
    let ended = node.new_session(&[], &["sh", "-c", "echo ended-2"]);
    let bare = node.new_session(&[], &["sh", "-c", "echo bare-3"]);
    for id in [&ended, &bare] {
        assert_eq!(node.tether(&["wait", id]).status.code(), Some(0));
    }
    wait_until("output", T, || {
        String::from_utf8_lossy(&node.tail(&live)).contains("alive-1")
    });
    let before: Vec<serde_json::Value> = [&live, &ended, &bare]
        .iter()
        .map(|id| listed(&node, id))
        .collect();

    // Junk in two meta.json files, none in the third. The running daemon
    // holds the metadata in memory; its successor must not hide them.
    for id in [&live, &ended] {
        std::fs::write(node.session_dir(id).join("meta.json"), b"\x00junk{").unwrap();
    }
    std::fs::remove_file(node.session_dir(&bare).join("meta.json")).unwrap();
    node.kill_daemon().unwrap();
    node.start_daemon().unwrap();

    for (id, was) in [&live, &ended, &bare].into_iter().zip(&before) {
        let s = listed(&node, id);
        assert_eq!(s["state"], "damaged", "{s}");
        // What the ring file still tells.
        for k in ["start_offset", "end_offset", "ring_size"] {
            assert_eq!(s[k], was[k], "{k} of {s}");
        }
        assert_eq!(node.info(id)["state"], "damaged");
    }
    // The running one: its process from keeper.json, and what its keeper
    // still knows (the name among it).
    let s = listed(&node, &live);
    assert_eq!(s["pid"], node.keeper_record(&live).pid);
    assert_eq!(s["name"], "victim");
    let text = node.ok(&["info", "victim"]);
    assert!(
        text.contains("damaged") && text.contains("tether kill"),
        "{text}"
    );
    // The output of an ended one is still readable.
    assert!(String::from_utf8_lossy(&node.tail(&ended)).contains("ended-2"));

    // rm and kill as for any running session: rm refuses, kill signals.
    let o = node.tether(&["rm", &live]);
    assert_eq!(o.status.code(), Some(USAGE));
    assert!(stderr(&o).contains("tether kill"), "{}", stderr(&o));
    node.ok(&["kill", "victim", "--signal", "TERM"]);
    assert_eq!(node.tether(&["wait", &live]).status.code(), Some(128 + 15));
    for id in [&live, &ended, &bare] {
        node.ok(&["rm", id]);
        assert!(!node.session_dir(id).exists());
    }
    // Gone for good: the next daemon finds nothing.
    node.kill_daemon().unwrap();
    node.start_daemon().unwrap();
    assert!(ls(&node).is_empty());
}

#[test]
fn an_impossible_ring_header_is_an_error_not_a_megabyte_of_zeros() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&["--name", "bad-ring"], &["sh", "-c", "echo ring-ok"]);
    assert_eq!(node.tether(&["wait", &id]).status.code(), Some(0));
    let ring = node.session_dir(&id).join("ring");
    let f = std::fs::OpenOptions::new().write(true).open(&ring).unwrap();
    f.write_all_at(&u64::MAX.to_le_bytes(), 16).unwrap();
    drop(f);

    for verb in [
        &["tail", "bad-ring"][..],
        &["tail", "bad-ring", "--json"],
        &["attach", "bad-ring"],
    ] {
        let o = node.tether(verb);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(DAMAGED), "{verb:?}: {e}");
        assert!(
            o.stdout.is_empty(),
            "{verb:?} printed {} bytes",
            o.stdout.len()
        );
        assert!(
            e.contains(&ring.display().to_string())
                && e.contains("damaged")
                && e.contains("18446744073709551615")
                && e.contains("tether rm"),
            "{verb:?}: {e}"
        );
    }
    // Listed, marked, without the impossible figure.
    let table = node.ok(&["ls"]);
    assert!(
        table.contains("damaged") && !table.contains("18446744073709551615"),
        "{table}"
    );
    let s = listed(&node, &id);
    assert_eq!(s["state"], "damaged");
    assert_ne!(s["end_offset"], u64::MAX);
    assert_eq!(node.info("bad-ring")["state"], "damaged");
    node.ok(&["rm", "bad-ring"]);
    assert!(!node.session_dir(&id).exists());
}

#[test]
fn limits_refuse_with_the_key_to_raise_and_are_counted() {
    let metrics = tether_testkit::ports::free_tcp([127, 0, 0, 1]).unwrap();
    let node = TestNode::start_with_config(
        TETHER,
        &NodeConfig {
            max_sessions: 2,
            max_ring_bytes: 1 << 20,
            metrics_listen: Some(metrics),
            ..NodeConfig::for_test()
        },
    )
    .unwrap();
    let o = node.tether(&["new", "-d", "--ring-size", "2097152", "--", "true"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(LIMIT), "{e}");
    assert!(
        e.contains("2097152")
            && e.contains("max_ring_bytes = 1048576")
            && e.contains("--ring-size"),
        "{e}"
    );
    // Up to the limit is fine.
    let ended = node.new_session(&["--ring-size", "1048576"], &["true"]);
    assert_eq!(node.tether(&["wait", &ended]).status.code(), Some(0));
    let running = node.new_session(&[], &["sleep", "600"]);
    // One running, one ended: the node is full.
    let o = node.tether(&["new", "-d", "--", "true"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(LIMIT), "{e}");
    assert!(
        e.contains("max_sessions = 2") && e.contains("tether rm") && e.contains("node.toml"),
        "{e}"
    );
    assert_eq!(ls(&node).len(), 2, "a refused creation leaves nothing");
    let m = tether_testkit::fleet::scrape(metrics).unwrap();
    for line in [
        "tether_limit_refusals_total{limit=\"max_sessions\"} 1",
        "tether_limit_refusals_total{limit=\"max_ring_bytes\"} 1",
    ] {
        assert!(m.contains(line), "no {line} in {m}");
    }
    // Removing the ended session frees its place.
    node.ok(&["rm", &ended]);
    node.new_session(&[], &["true"]);
    node.ok(&["kill", &running]);
}

#[test]
fn by_default_a_client_cannot_ask_for_a_gibibyte_ring() {
    let node = TestNode::start(TETHER).unwrap();
    let o = node.tether(&["new", "-d", "--ring-size", "1073741824", "--", "true"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(LIMIT), "{e}");
    assert!(e.contains("max_ring_bytes = 67108864"), "{e}");
    assert!(ls(&node).is_empty());
}
