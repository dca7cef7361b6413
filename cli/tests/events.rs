//! `tether events`: a session's life as events, locally and through a
//! relay, where a node's death is an event too.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tether_testkit::{Fleet, FleetSpec, KillOnDrop, TestNode};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(30);

/// `tether events --json` running, its lines as they come.
struct Follower {
    _child: KillOnDrop,
    lines: mpsc::Receiver<Value>,
}

impl Follower {
    fn start(mut cmd: Command) -> Follower {
        let mut child = cmd
            .args(["events", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Follower {
            _child: KillOnDrop(child),
            lines: rx,
        }
    }

    /// The next event of kind `kind`, skipping others; panics after `T`.
    fn expect(&self, kind: &str) -> Value {
        let deadline = std::time::Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {kind} event within {T:?}"));
            if v["kind"] == kind {
                return v;
            }
        }
    }
}

fn ok(mut cmd: Command, args: &[&str]) -> String {
    let o = cmd.args(args).output().unwrap();
    assert!(
        o.status.success(),
        "tether {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A session's life, on whichever path `cli` takes.
fn life(cli: &dyn Fn() -> Command, follower: &Follower, new: &[&str]) {
    let mut args = vec!["new", "-d", "--name", "ev"];
    args.extend_from_slice(new);
    args.extend_from_slice(&["--", "bash", "--norc", "--noprofile"]);
    let id = ok(cli(), &args);
    let id = id.trim();
    let created = follower.expect("created");
    assert_eq!(
        (created["session"].as_str(), created["name"].as_str()),
        (Some(id), Some("ev"))
    );
    ok(
        cli(),
        &["send", "ev", "sleep 0.3; echo done", "--keys", "Enter"],
    );
    let waits = follower.expect("awaiting_input");
    assert!(waits["offset"].as_u64().unwrap() > 0, "{waits}");
    ok(cli(), &["send", "ev", "exit 4", "--keys", "Enter"]);
    let exited = follower.expect("exited");
    assert_eq!(exited["exit"]["code"], 4, "{exited}");
    ok(cli(), &["rm", "ev"]);
    follower.expect("removed");
}

#[test]
fn a_session_s_life_locally_with_clients_and_sizes() {
    let node = TestNode::start(TETHER).unwrap();
    let follower = Follower::start(node.command());
    // Subscribed before anything happens: the first session's creation is
    // seen.
    std::thread::sleep(Duration::from_millis(300));
    life(&|| node.command(), &follower, &[]);

    let id = node.new_session(&["--name", "watched"], &["cat"]);
    follower.expect("created");
    // A one-shot read is not an attach: no event, and the next two events
    // are the attach's.
    node.ok(&["read", &id, "--from", "0"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let spec = tether_proto::AttachSpec {
            size: Some(tether_proto::WinSize {
                cols: 120,
                rows: 40,
            }),
            ..tether_proto::AttachSpec::new(&id, tether_proto::StartAt::End)
        };
        let s = tether_client::OutputStream::open(node.client().await, spec)
            .await
            .unwrap();
        let next = || follower.lines.recv_timeout(T).expect("an event");
        let a = next();
        assert_eq!(
            (a["kind"].as_str(), a["clients"].as_u64()),
            (Some("attached"), Some(1))
        );
        let r = next();
        assert_eq!(r["kind"], "resized", "{r}");
        assert_eq!(
            (r["size"]["cols"].as_u64(), r["size"]["rows"].as_u64()),
            (Some(120), Some(40))
        );
        s.detach().await;
        assert_eq!(follower.expect("detached")["clients"], 0);
    });
}

#[test]
fn a_fleet_s_sessions_and_a_node_s_death_through_a_relay() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 91),
        1,
        Ipv4Addr::new(127, 0, 0, 81),
        2,
    )
    .client("alice")
    .interval_ms(100);
    let mut f = Fleet::start(TETHER, &spec).unwrap();
    f.wait_members(0, 2).unwrap();
    let follower = Follower::start(f.client_command(&[0], "alice"));
    std::thread::sleep(Duration::from_millis(1500));
    life(
        &|| f.client_command(&[0], "alice"),
        &follower,
        &["--node", "n1"],
    );
    f.kill_node(1).unwrap();
    let down = follower.expect("node_down");
    assert_eq!(down["node"], "n2", "{down}");
}
