//! A fleet on 127.0.0.x: three nodes and two relays as real processes,
//! real chitchat, real QUIC, certificates from a real fleet CA.

use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_testkit::{
    tether_ok, wait_until, Fleet, FleetSpec, KillOnDrop, OutputWithin, PtyProc, CLI_TIMEOUT,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(30);

/// Relays r1, r2 on 127.0.0.41-42; nodes n1-n3 on 127.0.0.31-33, n3
/// behind "NAT": no announced listener, one tunnel, to r1. Clients alice
/// and bob (read-only). Metrics everywhere.
fn start_fleet() -> Fleet {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 41),
        2,
        Ipv4Addr::new(127, 0, 0, 31),
        3,
    )
    .tunnel_only(2, 0)
    .client("alice")
    .read_only_client("bob")
    .with_metrics()
    .ring_size(1 << 20);
    Fleet::start(TETHER, &spec).unwrap()
}

fn ok(args: &[&str]) -> String {
    tether_ok(TETHER.as_ref(), args).unwrap()
}

fn digest(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[test]
fn attach_and_tail_through_either_relay_and_survive_a_relay_kill() {
    let mut f = start_fleet();
    // One session per node, so `ls` shows all three.
    for n in ["n1", "n3"] {
        f.client_ok(
            &[0],
            &[
                "new",
                "-d",
                "--node",
                n,
                "--name",
                &format!("idle-{n}"),
                "--",
                "sleep",
                "600",
            ],
        );
    }
    // A session on node 2, created through relay 1, read through relay 2
    // at once: the full ID routes by its owner tag before gossip spreads.
    let t0 = Instant::now();
    let id = f
        .client_ok(&[0], &["new", "-d", "--node", "n2", "--name", "counter", "--", "sh", "-c",
            "read go; i=0; while [ $i -lt 1500 ]; do i=$((i+1)); echo line $i; sleep 0.002; done"])
        .trim()
        .to_string();
    let info = f.client_ok(&[1], &["info", &id, "--json"]);
    eprintln!(
        "new session resolvable at the other relay after {:?}",
        t0.elapsed()
    );
    assert!(info.contains("\"state\": \"running\""), "{info}");
    f.wait_converged(1).unwrap();
    let ls = f.client_ok(&[1], &["ls"]);
    assert!(ls.contains("counter") && ls.contains("n2"), "{ls}");

    // A follower through relay 1 (relay 2 as fallback).
    let relays = format!("{},{}", f.relay_addr(0), f.relay_addr(1));
    let mut tail = KillOnDrop(
        Command::new(TETHER)
            .args(["--relay", &relays, "--tls-dir"])
            .arg(f.ca().join("clients/alice"))
            .args(["tail", "counter", "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = tail.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).unwrap();
        all
    });
    f.client_ok(&[1], &["send", "counter", "\n"]);
    // Kill relay 1 mid-stream.
    let n2 = &f.nodes[1];
    wait_until("some output", T, || {
        n2.info(&id)["end_offset"].as_u64().unwrap_or(0) > 5_000
    });
    f.kill_relay(0).unwrap();
    let st = tail.wait().unwrap();
    let got = reader.join().unwrap();
    let mut err = String::new();
    tail.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(st.success(), "tail failed: {err}");
    assert!(
        err.contains("resuming"),
        "the client noticed and resumed: {err}"
    );
    // What the client received is the session's own output, byte for byte.
    let own = f.nodes[1].tail(&id);
    assert!(String::from_utf8_lossy(&own).contains("line 1500"));
    assert_eq!(got.len(), own.len());
    assert_eq!(digest(&got), digest(&own));
}

#[test]
fn authorization_and_unreachable_owner() {
    let f = start_fleet();
    let id = f
        .client_ok(&[0], &["new", "-d", "--node", "n2", "--", "cat"])
        .trim()
        .to_string();
    // A stranger to the session does not see it.
    let o = f.client(&[0], "bob", &["info", &id]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    f.client_ok(&[0], &["share", &id, "--with", "bob"]);
    // A read-only client may watch but not type or create, whatever the
    // share says.
    let o = f.client(&[0], "bob", &["send", &id, "x"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("read-only"), "{e}");
    let o = f.client(&[0], "bob", &["new", "-d", "--node", "n1", "--", "true"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("read-only"), "{e}");
    let o = f.client(&[0], "bob", &["info", &id]);
    assert!(o.status.success(), "bob info after the share: {o:?}");
    // A client whose certificate comes from another CA is refused.
    let other = f.dir().join("other-ca");
    ok(&["ca", "init", other.to_str().unwrap()]);
    ok(&[
        "ca",
        "issue",
        other.to_str().unwrap(),
        "--client",
        "mallory",
    ]);
    let o = Command::new(TETHER)
        .args(["--relay", &f.relay_addr(0), "--tls-dir"])
        .arg(other.join("clients/mallory"))
        .args(["ls"])
        .output_within(CLI_TIMEOUT)
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no relay answered") && e.contains("certificate"),
        "{e}"
    );
    // A node certificate cannot pose as a client.
    let o = Command::new(TETHER)
        .args(["--relay", &f.relay_addr(0), "--tls-dir"])
        .arg(f.ca().join("nodes/n1"))
        .args(["ls"])
        .output_within(CLI_TIMEOUT)
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a client"));

    // Kill the owner: a fast, clear error, never a hang.
    let mut f = f;
    f.nodes[1].kill_daemon().unwrap();
    let t0 = Instant::now();
    let o = f.client(&[0], "alice", &["info", &id]);
    let took = t0.elapsed();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("node n2 unreachable"), "{e}");
    assert_eq!(
        o.status.code(),
        Some(69),
        "an unreachable owner exits EX_UNAVAILABLE"
    );
    eprintln!("unreachable owner reported after {took:?}: {e}");
    // Once the failure detector has marked it dead, ls marks its sessions.
    wait_until("n2 marked unreachable in ls", T, || {
        let o = f.client(&[1], "alice", &["ls", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["id"] == id.as_str() && s["unreachable"].is_string())
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_attach_through_relays_survives_a_relay_kill() {
    let mut f = start_fleet();
    let id = f
        .client_ok(
            &[0],
            &["new", "-d", "--node", "n1", "--name", "shell", "--", "cat"],
        )
        .trim()
        .to_string();
    let relays = format!("{},{}", f.relay_addr(0), f.relay_addr(1));
    let tls = f.ca().join("clients/alice");
    let mut a = PtyProc::spawn(
        TETHER,
        &[
            "--relay",
            &relays,
            "--tls-dir",
            tls.to_str().unwrap(),
            "attach",
            "shell",
        ],
        (90, 25),
    )
    .unwrap();
    let n1 = &f.nodes[0];
    wait_until("attached", T, || n1.info(&id)["clients"] == 1);
    a.write(b"before-kill\r").await;
    a.expect("before-kill\r\nbefore-kill", T).await;
    f.kill_relay(0).unwrap();
    a.expect("reconnecting", T).await;
    a.write(b"after-kill\r").await;
    a.expect("after-kill\r\nafter-kill", T).await;
    // Resumed from the last offset: nothing shown twice.
    assert_eq!(
        a.output().matches("before-kill").count(),
        2,
        "{}",
        a.output()
    );
    a.write(&[0x1c]).await;
    a.expect("[detached from shell", T).await;
    assert_eq!(a.exit_code(T).await, 0);
}

#[test]
fn tunnel_only_node_is_reachable_through_either_relay() {
    let f = start_fleet();
    // Created through r2, which has no tunnel to n3: it goes through r1.
    let id = f
        .client_ok(
            &[1],
            &["new", "-d", "--node", "n3", "--name", "natted", "--", "cat"],
        )
        .trim()
        .to_string();
    f.client_ok(&[0], &["send", "natted", "through-r1\n"]);
    f.client_ok(&[1], &["send", &id, "through-r2\n"]);
    for r in [0, 1] {
        wait_until("echoes", T, || {
            let out = f.client(&[r], "alice", &["tail", "natted"]);
            let s = String::from_utf8_lossy(&out.stdout);
            s.contains("through-r1") && s.contains("through-r2")
        });
    }
    let ls = f.client_ok(&[1], &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let s = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert_eq!(s["node_name"], "n3");
    assert!(s["unreachable"].is_null(), "{s}");
    assert!(
        s["end_offset"].as_u64().unwrap() > 0,
        "live figures, not gossip: {s}"
    );
    // Metrics: the tunnel is up at both ends; traffic was counted.
    let n3 = f.scrape("n3").unwrap();
    assert!(n3.contains("tether_tunnels_up 1"), "{n3}");
    assert!(n3.contains("tether_sessions{state=\"running\"} 1"), "{n3}");
    let r1 = f.scrape("r1").unwrap();
    assert!(r1.contains("tether_tunnels_held 1"), "{r1}");
    assert!(
        r1.contains("tether_relay_connections{kind=\"tunnel\"} 1"),
        "{r1}"
    );
    assert!(
        r1.contains("tether_gossip_rejected_total{reason=\"forged\"} 0"),
        "{r1}"
    );
    let bytes_out = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("tether_bytes_out_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    assert!(bytes_out(&r1) > 0 && bytes_out(&n3) > 0);
    // A forged datagram (right magic, wrong tag) sent to a relay process
    // is rejected, counted, and changes nothing.
    let sock = std::net::UdpSocket::bind("127.0.0.60:0").unwrap();
    let mut forged = tether_net::gossip::seal::MAGIC.to_vec();
    forged.push(0);
    forged.extend_from_slice(&[0x42; 120]);
    sock.send_to(&forged, f.relay_gossip(0)).unwrap();
    wait_until("the forged datagram counted", T, || {
        f.scrape("r1")
            .unwrap()
            .contains("tether_gossip_rejected_total{reason=\"forged\"} 1")
    });
    f.wait_members(0, 3).unwrap();
    f.client_ok(&[1], &["kill", "natted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_migrates_when_the_client_address_changes() {
    use tether_client::Client;
    use tether_proto::{AttachSpec, Frame, Reply, Request, StartAt};
    let f = start_fleet();
    let id = f
        .client_ok(&[0], &["new", "-d", "--node", "n1", "--", "cat"])
        .trim()
        .to_string();
    let (c, _) = Client::connect_relay(&[f.relay_addr(0)], &f.ca().join("clients/alice"), 0)
        .await
        .unwrap();
    let (mut rd, _wr) = c
        .open(&Request::Attach(AttachSpec {
            target: id.clone(),
            start: StartAt::Oldest,
            read_only: true,
            follow: true,
            size: None,
            snapshot: None,
            sizing: tether_proto::Sizing::Latest,
        }))
        .await
        .unwrap();
    assert!(matches!(
        rd.control::<Reply>().await.unwrap(),
        Reply::Attached { .. }
    ));
    let mut seen = Vec::new();
    let mut read_until =
        async |rd: &mut tether_net::conn::FrameReader<tether_net::tls::e2e::BoxRead>,
               text: &str| {
            tokio::time::timeout(T, async {
                while !String::from_utf8_lossy(&seen).contains(text) {
                    if let Some(Frame::Output { data, .. }) = rd.next().await.unwrap() {
                        seen.extend_from_slice(&data);
                    }
                }
            })
            .await
            .expect("output did not arrive");
        };
    f.client_ok(&[1], &["send", &id, "before-move\n"]);
    read_until(&mut rd, "before-move").await;
    let before = c.local_addr().unwrap();
    c.rebind(std::net::UdpSocket::bind("127.0.0.51:0").unwrap())
        .unwrap();
    let after = c.local_addr().unwrap();
    assert_ne!(before, after);
    f.client_ok(&[1], &["send", &id, "after-move\n"]);
    read_until(&mut rd, "after-move").await;
}
