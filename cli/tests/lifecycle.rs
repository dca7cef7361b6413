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
