//! Sessions on one host, through the real `tether` binary: create, attach,
//! detach, reattach; daemon and keeper deaths; bad input.

use std::time::Duration;
use tether_node::NodeConfig;
use tether_testkit::{wait_until, OutputWithin, PtyProc, TestNode, CLI_TIMEOUT};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

const T: Duration = Duration::from_secs(20);

/// Checks that `out` (PTY output of `seq`) is consecutive numbers ending at
/// `last`, the first (maybe partial) line excepted. Returns the count.
fn check_consecutive(out: &[u8], last: u64) -> usize {
    let text = String::from_utf8_lossy(out).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 2, "too little output: {text:?}");
    let nums: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        .collect();
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "lines out of order or doubled");
    }
    assert_eq!(*nums.last().unwrap(), last);
    nums.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_detach_reattach_with_replay() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&["--name", "echo"], &["cat"]);
    let dir = node.path().to_str().unwrap();

    let mut a = PtyProc::spawn(TETHER, &["--state-dir", dir, "attach", "echo"], (100, 30)).unwrap();
    wait_until("client attached", T, || node.info("echo")["clients"] == 1);
    a.write(b"hello-tether\r").await;
    a.expect("hello-tether", T).await;
    a.write(&[0x1c]).await; // Ctrl-\
    a.expect("[detached from echo (", T).await;
    assert_eq!(a.exit_code(T).await, 0);
    assert_eq!(node.state("echo"), "running");

    // A new client gets the earlier output replayed, then the live stream.
    let mut b =
        PtyProc::spawn(TETHER, &["--state-dir", dir, "attach", &id[..6]], (100, 30)).unwrap();
    b.expect("hello-tether", T).await;
    b.write(b"second\r").await;
    b.expect("second", T).await;
    // The window size of the read-write client reached the session.
    let info = node.info(&id);
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(100), Some(30))
    );
    assert_eq!(info["clients"], 1);
    b.write(&[0x04]).await; // EOF: cat exits
    b.expect("[exited: 0]", T).await;
    assert_eq!(b.exit_code(T).await, 0);
    let info = node.info(&id);
    assert_eq!(info["state"], "exited");
    assert_eq!(info["exit_code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reports_exit_code_and_resets_terminal() {
    let node = TestNode::start(TETHER).unwrap();
    node.new_session(&["--name", "x"], &["sh", "-c", "read l; exit 9"]);
    let dir = node.path().to_str().unwrap();
    let mut a = PtyProc::spawn(TETHER, &["--state-dir", dir, "attach", "x"], (80, 24)).unwrap();
    // Wait until attached (the raw-mode client forwards keystrokes).
    wait_until("client attached", T, || node.info("x")["clients"] == 1);
    a.write(b"\r").await;
    a.expect("[exited: 9]", T).await;
    assert_eq!(a.exit_code(T).await, 9);
}

#[test]
fn sigkill_of_daemon_loses_nothing() {
    let mut node = TestNode::start(TETHER).unwrap();
    // Prints 1..N as fast as it can, into a 64 KiB ring.
    let n = 400_000u64;
    let seq = node.new_session(&["--name", "seq"], &["seq", "1", &n.to_string()]);
    // Exits with 42 once a file appears: that happens while no daemon runs.
    let flag = node.path().join("flag");
    let flag_s = flag.to_str().unwrap().to_string();
    let waiter = node.new_session(
        &["--name", "waiter"],
        &[
            "sh",
            "-c",
            &format!("while [ ! -e {flag_s} ]; do sleep 0.02; done; exit 42"),
        ],
    );
    let pid_before = node.keeper_record(&seq).pid;
    wait_until("output", T, || {
        node.info("seq")["end_offset"].as_u64().unwrap() > 0
    });

    node.kill_daemon().unwrap();
    std::fs::write(&flag, b"").unwrap();
    wait_until("exit recorded while the daemon is down", T, || {
        node.session_dir(&waiter).join("exit.json").exists()
    });
    node.start_daemon().unwrap();

    // Re-adopted, same process.
    let info = node.info(&seq);
    assert!(
        info["state"] == "running" || info["state"] == "exited",
        "{info}"
    );
    assert_eq!(node.keeper_record(&seq).pid, pid_before);
    // The exit that happened while the daemon was down is reported.
    let o = node.tether(&["wait", "waiter"]);
    assert_eq!(o.status.code(), Some(42));
    assert_eq!(node.info("waiter")["exit_code"], 42);

    let o = node.tether(&["wait", "seq", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0));
    let out = node.tail("seq");
    assert_eq!(out.len(), 65536, "tail gives exactly the ring");
    check_consecutive(&out, n);
    let info = node.info("seq");
    assert!(info["end_offset"].as_u64().unwrap() > 2_000_000);
}

#[test]
fn sigkill_of_keeper_makes_session_lost_with_output_readable() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["sh", "-c", "echo last-words-42; exec sleep 600"]);
    wait_until("output", T, || {
        String::from_utf8_lossy(&node.tail(&id)).contains("last-words-42")
    });
    let k = node.keeper_record(&id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(k.keeper_pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_until("lost", T, || node.state(&id) == "lost");
    assert!(String::from_utf8_lossy(&node.tail(&id)).contains("last-words-42"));
    // Lost sessions cannot take input, and say why.
    let err = node.fails(&["send", &id, "x"]);
    assert!(err.contains("lost"), "{err}");
    // A restarted daemon still knows it as lost, output readable.
    let mut node = node;
    node.kill_daemon().unwrap();
    node.start_daemon().unwrap();
    assert_eq!(node.state(&id), "lost");
    assert!(String::from_utf8_lossy(&node.tail(&id)).contains("last-words-42"));
    node.ok(&["rm", &id]);
    assert!(!node.session_dir(&id).exists());
}

#[test]
fn second_daemon_refuses() {
    let node = TestNode::start(TETHER).unwrap();
    let o = std::process::Command::new(TETHER)
        .arg("--state-dir")
        .arg(node.path())
        .arg("node")
        .output_within(CLI_TIMEOUT)
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already running"), "{err}");
}

#[test]
fn embedded_default_on_empty_state_dir() {
    // An empty state dir, no daemon, no config: the first verb starts one.
    let node = TestNode::empty(TETHER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(node.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(TETHER)
            .env("TETHER_STATE_DIR", node.path())
            .args(args)
            .output_within(CLI_TIMEOUT)
            .unwrap()
    };
    let o = run(&["new", "-d", "--", "sh", "-c", "echo embedded-ok"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 26, "the ID alone on stdout: {id:?}");
    assert_eq!(run(&["wait", &id]).status.code(), Some(0));
    let o = run(&["tail", &id]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("embedded-ok"));
    // The node it started runs in the background, logging to the state dir
    // (the TestNode drop kills it).
    let rt = node.runtime().expect("node.json");
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(rt.pid as i32), None).is_ok());
    assert!(std::fs::read_to_string(node.path().join("node.log"))
        .unwrap()
        .contains("ready"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn targets_names_and_bad_input() {
    let node = TestNode::start(TETHER).unwrap();
    // Unknown target.
    let e = node.fails(&["info", "nosuchsession"]);
    assert!(
        e.contains("no session matches 'nosuchsession'") && e.contains("tether ls"),
        "{e}"
    );
    // A name already taken.
    node.new_session(&["--name", "svc"], &["sleep", "600"]);
    let e = node.fails(&["new", "-d", "--name", "svc", "--", "true"]);
    assert!(e.contains("taken"), "{e}");
    // A bad name, a bad ring size, a missing cwd, a missing program.
    assert!(node
        .fails(&["new", "-d", "--name", "a b", "--", "true"])
        .contains("not a valid name"));
    assert!(node
        .fails(&["new", "-d", "--ring-size", "10", "--", "true"])
        .contains("ring size"));
    assert!(node
        .fails(&["new", "-d", "--cwd", "/no/such/dir", "--", "true"])
        .contains("/no/such/dir"));
    let e = node.fails(&["new", "-d", "--", "/no/such/program"]);
    assert!(e.contains("/no/such/program"), "{e}");
    // Ambiguous prefix: 33 sessions share a first character somewhere.
    let mut ids = Vec::new();
    for _ in 0..33 {
        ids.push(node.new_session(&[], &["true"]));
    }
    ids.sort();
    // Fewer than 4 characters are a name, never an ID prefix.
    let e = node.fails(&["info", &ids[0][..3]]);
    assert!(e.contains("at least 4 characters"), "{e}");
    // A unique prefix works.
    let full = &ids[0];
    let prefix = (4..=full.len())
        .map(|n| &full[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(node.info(prefix)["id"], full.as_str());
    // rm of a running session is refused with what to do.
    let e = node.fails(&["rm", "svc"]);
    assert!(e.contains("tether kill"), "{e}");
    node.ok(&["kill", "svc", "--signal", "TERM"]);
    assert_eq!(node.tether(&["wait", "svc"]).status.code(), Some(128 + 15));
    node.ok(&["rm", "svc"]);
    assert!(node
        .fails(&["kill", "x", "--signal", "NOPE"])
        .contains("unknown signal"));
}

#[test]
fn config_typo_names_key_and_line() {
    let node = TestNode::empty(TETHER).unwrap();
    let cfg = node.path().join("node.toml");
    std::fs::write(&cfg, "ring_size = 8192\nlisten_addr = \"127.0.0.1:0\"\n").unwrap();
    let o = std::process::Command::new(TETHER)
        .arg("--state-dir")
        .arg(node.path())
        .args(["node", "--config", cfg.to_str().unwrap()])
        .output_within(CLI_TIMEOUT)
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("listen_addr") && e.contains("line 2"), "{e}");
}

#[test]
fn corrupt_metadata_hurts_only_its_session() {
    let mut node = TestNode::start(TETHER).unwrap();
    let good = node.new_session(&["--name", "good"], &["sleep", "600"]);
    let bad = node.new_session(&["--name", "bad"], &["true"]);
    assert_eq!(node.tether(&["wait", "bad"]).status.code(), Some(0));
    node.kill_daemon().unwrap();
    std::fs::write(node.session_dir(&bad).join("meta.json"), b"{not json").unwrap();
    node.start_daemon().unwrap();
    assert_eq!(node.state(&good), "running");
    assert!(node.log().contains("corrupt"), "{}", node.log());
    node.ok(&["kill", "good"]);
}

#[test]
fn unwritable_state_dir_is_a_clear_error() {
    let node = TestNode::empty(TETHER).unwrap();
    let file = node.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = std::process::Command::new(TETHER)
        .arg("--state-dir")
        .arg(file.join("state"))
        .args(["ls"])
        .output_within(CLI_TIMEOUT)
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot create") && e.contains("--state-dir"),
        "{e}"
    );
}

#[test]
fn send_tail_json_and_offsets() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["cat"]);
    node.ok(&["send", &id, "abc\n"]);
    wait_until("echo", T, || {
        String::from_utf8_lossy(&node.tail(&id))
            .matches("abc")
            .count()
            >= 2
    });
    let out = node.ok(&["tail", &id, "--json"]);
    let mut expected = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(o) = v["offset"].as_u64() {
            assert_eq!(o, expected);
            expected += v["len"].as_u64().unwrap();
        }
    }
    assert_eq!(expected, node.info(&id)["end_offset"].as_u64().unwrap());
    // --from skips what the client has.
    let from3 = node.ok(&["tail", &id, "--from", "3"]);
    assert_eq!(from3.as_bytes(), &node.tail(&id)[3..]);
    node.ok(&["kill", &id]);
}

#[test]
fn launcher_wraps_commands_and_retention_prunes() {
    let mut node = TestNode::empty(TETHER).unwrap();
    node.write_config(&NodeConfig {
        launcher: vec!["env".into(), "TETHER_LAUNCHED=yes".into()],
        retain_exited: 2,
        ..NodeConfig::for_test()
    })
    .unwrap();
    node.start_daemon().unwrap();
    let id = node.new_session(&[], &["sh", "-c", "echo launched=$TETHER_LAUNCHED"]);
    assert_eq!(node.tether(&["wait", &id]).status.code(), Some(0));
    assert!(String::from_utf8_lossy(&node.tail(&id)).contains("launched=yes"));
    // The command is shown as the user gave it.
    assert_eq!(node.info(&id)["command"][0], "sh");
    for _ in 0..3 {
        let s = node.new_session(&[], &["true"]);
        node.tether(&["wait", &s]);
    }
    let count = || {
        serde_json::from_str::<serde_json::Value>(&node.ok(&["ls", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    wait_until("pruning to 2 ended sessions", T, || count() == 2);
    // The oldest went first.
    assert!(node.tether(&["info", &id]).status.code() != Some(0));
}

/// Unmounts on drop (after the node, declared later, has been dropped).
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_is_a_clear_error_and_loses_nothing() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let _mount = Mount(mnt.clone());
    let mut node = TestNode::empty(TETHER).unwrap();
    // The node's state dir lives on the small file system.
    let state = mnt.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink(&state, node.path().join("s")).unwrap();
    let node_dir = node.path().join("s");
    let tether = |args: &[&str]| {
        std::process::Command::new(TETHER)
            .arg("--state-dir")
            .arg(&node_dir)
            .args(args)
            .output_within(CLI_TIMEOUT)
            .unwrap()
    };
    let o = tether(&["new", "-d", "--ring-size", "262144", "--", "cat"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let o = tether(&["new", "-d", "--ring-size", "524288", "--", "cat"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("disk is full"), "{e}");
    // The first session is untouched.
    assert!(tether(&["send", &first, "still-here\n"]).status.success());
    wait_until("echo", T, || {
        String::from_utf8_lossy(&tether(&["tail", &first]).stdout).contains("still-here")
    });
    let ls = String::from_utf8(tether(&["ls", "--json"]).stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "the failed session left nothing behind"
    );
    // Let TestNode's drop find the daemon and keepers.
    std::fs::remove_file(node.path().join("s")).unwrap();
    node.adopt_dir(&state);
}
