//! A node and a relay run in-process, from their builders, and are started
//! and stopped a hundred times: every task, socket and file descriptor
//! they opened must be gone after each shutdown.

use std::path::Path;
use std::time::{Duration, Instant};
use tether_net::gossip::GossipConfig;
use tether_net::tls::fleet::{ca_init, ca_issue, FleetRole};
use tether_node::daemon::{NodeBuilder, QuicSocket};
use tether_node::NodeConfig;
use tether_relay::{RelayBuilder, RelayConfig};

fn cycles() -> usize {
    std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn gossip(dir: &Path, cluster: &str) -> GossipConfig {
    GossipConfig {
        cluster_id: cluster.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        seeds: vec![],
        interval_ms: 50,
        secret_file: dir.join("secret"),
        next_secret_file: None,
        previous_secret_file: None,
    }
}

/// Waits until `f` gives `want` (tasks and sockets close asynchronously,
/// in quinn's and tokio's own time); returns what it saw last.
async fn settle(want: usize, f: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = f();
        if now <= want || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_relay_start_and_stop_a_hundred_times_leaving_nothing_behind() {
    let dir = tempfile::Builder::new()
        .prefix("tether-lifecycle")
        .tempdir()
        .unwrap();
    let d = dir.path();
    ca_init(&d.join("ca")).unwrap();
    let relay_tls = ca_issue(&d.join("ca"), FleetRole::Relay, "r1", None).unwrap();
    let node_tls = ca_issue(&d.join("ca"), FleetRole::Node, "n1", None).unwrap();
    std::fs::write(d.join("secret"), [7u8; 32]).unwrap();
    let state = d.join("state");

    // One warm-up cycle: the node makes its identity, the runtime its
    // worker threads' lazily made parts.
    let mut baseline = None;
    for cycle in 0..=cycles() {
        let relay = RelayBuilder::new(RelayConfig {
            name: "r1".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            tls_dir: relay_tls.clone(),
            gossip: gossip(d, "lifecycle"),
            dial_timeout_ms: 2000,
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            limits: Default::default(),
        })
        .quic_socket(QuicSocket::Udp(
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        ))
        .gossip_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .start()
        .await
        .unwrap();
        let cfg = NodeConfig {
            name: Some("n1".into()),
            tls_dir: Some(node_tls.clone()),
            relays: vec![relay.addr.to_string()],
            gossip: Some(gossip(d, "lifecycle")),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::for_test()
        };
        let quic = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let node = NodeBuilder::new(&state, cfg)
            .quic_socket(QuicSocket::Udp(quic))
            .gossip_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .start()
            .await
            .unwrap();
        // A real client on a real connection: streams, a reply, a close.
        let client = tether_client::Client::connect_local(&state, None)
            .await
            .unwrap();
        let reply = client.request(&tether_proto::Request::List).await.unwrap();
        assert!(
            matches!(reply, tether_proto::Reply::Sessions { .. }),
            "{reply:?}"
        );
        client.close().await;
        assert!(node.tasks_alive() > 0 && relay.tasks_alive() > 0);
        // The node first: a relay stopped first leaves the node's tunnel
        // waiting out QUIC's draining period towards a peer that is gone.
        node.shutdown().await;
        relay.shutdown().await;

        let (fds, tasks) = match baseline {
            None => {
                // After the warm-up: what the process holds with nothing of
                // ours running.
                tokio::time::sleep(Duration::from_millis(200)).await;
                baseline = Some((open_fds(), alive_tasks()));
                continue;
            }
            Some(b) => b,
        };
        let now_fds = settle(fds, open_fds).await;
        let now_tasks = settle(tasks, alive_tasks).await;
        assert!(
            now_fds <= fds && now_tasks <= tasks,
            "cycle {cycle}: {now_fds} fds (baseline {fds}), {now_tasks} tasks (baseline {tasks})"
        );
    }
}

/// Undoes a state dir's keepers and sessions when dropped, also on panic.
struct Undo<'a>(&'a Path);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        tether_testkit::cleanup::kill_state_dir(self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_node_starts_keepers_and_a_second_one_adopts_them() {
    let dir = tempfile::Builder::new()
        .prefix("tether-inproc")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state");
    let _undo = Undo(&state);
    let keeper = tether_node::daemon::KeeperCommand {
        program: env!("CARGO_BIN_EXE_tether-keeper").into(),
        args: vec![],
    };
    let start = || {
        NodeBuilder::new(&state, NodeConfig::for_test())
            .keeper(keeper.clone())
            .quic_socket(QuicSocket::Udp(
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            ))
            .start()
    };
    let node = start().await.unwrap();
    let client = tether_client::Client::connect_local(&state, None)
        .await
        .unwrap();
    let spec = tether_proto::CreateSpec {
        name: Some("inproc".into()),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello-$((6*7)); exec sleep 60".into(),
        ],
        ..Default::default()
    };
    let reply = client
        .request(&tether_proto::Request::Create(spec))
        .await
        .unwrap();
    let tether_proto::Reply::Session { session } = reply else {
        panic!("create: {reply:?}")
    };
    let pid = session.pid.expect("a running session has a pid");
    client.close().await;
    node.shutdown().await;
    // The keeper and its session outlive the node that started them.
    assert!(tether_testkit::cleanup::alive(pid as i32));

    let node = start().await.unwrap();
    let client = tether_client::Client::connect_local(&state, None)
        .await
        .unwrap();
    let info = match client
        .request(&tether_proto::Request::Info {
            target: "inproc".into(),
        })
        .await
        .unwrap()
    {
        tether_proto::Reply::Session { session } => session,
        other => panic!("info: {other:?}"),
    };
    assert_eq!((info.id, info.pid), (session.id, Some(pid)));
    assert_eq!(info.state, tether_proto::SessionState::Running);
    // Its output is there, written while no daemon ran for part of it.
    tether_testkit::wait_until("the session's output", Duration::from_secs(10), || {
        std::fs::read(
            state
                .join("sessions")
                .join(session.id.to_string())
                .join("ring"),
        )
        .map(|r| r.windows(8).any(|w| w == b"hello-42"))
        .unwrap_or(false)
    });
    client.close().await;
    node.shutdown().await;
}
