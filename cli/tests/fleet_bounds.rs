//! A fleet `ls` when gossip announces many live nodes nobody can reach:
//! one real node and relay (real processes), and "ghost" nodes that are
//! real gossip members of the fleet (this test's `GossipHandle`s, with the
//! fleet's secret) announcing a session each and a QUIC address where a
//! socket reads nothing. The relay's dial to each takes its whole dial
//! timeout; `ls` asks a bounded number at a time and stops at its
//! deadline, showing every ghost's session from gossip, marked.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_net::gossip::{GossipHandle, GossipSettings};
use tether_proto::gossip::{NodeRecord, Role, SessionRecord};
use tether_proto::{NodeId, SessionId, SessionState};
use tether_testkit::{Fleet, FleetSpec};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Ghost nodes: at 2 at a time and a 2 s dial timeout each, asking them
/// all would take 8 s.
const GHOSTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_stops_at_its_deadline_and_marks_the_nodes_it_could_not_hear() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 61),
        1,
        Ipv4Addr::new(127, 0, 0, 62),
        1,
    )
    .client("alice");
    let f = Fleet::start(TETHER, &spec).unwrap();
    let relay = f.files().relays[0].config.clone();
    let mut ghosts = Vec::new();
    for k in 0..GHOSTS {
        // Takes the relay's QUIC handshake and never answers.
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let id = NodeId::from_public_key(format!("ghost {k}").as_bytes());
        let settings = GossipSettings {
            member_id: id.to_string(),
            cluster_id: relay.gossip.cluster_id.clone(),
            listen: addr,
            advertise: addr,
            seeds: vec![f.relay_gossip(0).to_string()],
            interval: relay.gossip.interval(),
            secret: relay.gossip.secret().unwrap(),
            next_secret: None,
            previous_secret: None,
            socket: Some(sock),
        };
        let record = NodeRecord {
            id: id.to_string(),
            name: format!("x-ghost-{k}"),
            role: Role::Node,
            quic: Some(hole.local_addr().unwrap().to_string()),
            fp: "ab".repeat(32),
            ver: env!("CARGO_PKG_VERSION").into(),
            relays: vec![],
        };
        let g = GossipHandle::start(settings, &record).await.unwrap();
        let session = SessionRecord {
            n: Some(format!("ghost-job-{k}")),
            st: SessionState::Running,
            c: "sleep 600".into(),
            t: 1_700_000_000,
            o: Some("alice".into()),
        };
        g.set_session(&SessionId::generate(id), &session).await;
        ghosts.push((g, hole));
    }
    let tls = f.files().client_tls("alice");
    let (client, _) = Client::connect_relay(&[f.relay_addr(0)], &tls, 0)
        .await
        .unwrap();
    let t0 = Instant::now();
    loop {
        let nodes = client.nodes().await.unwrap();
        let live = nodes.iter().filter(|m| m.role == Role::Node && m.live);
        let sessions: u32 = nodes.iter().map(|m| m.sessions).sum();
        if live.count() == GHOSTS + 1 && sessions as usize == GHOSTS {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the relay did not see {GHOSTS} ghosts live with their sessions: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = Duration::from_secs(3);
    let t = Instant::now();
    let list = client.list_within(2, deadline).await.unwrap();
    let took = t.elapsed();
    for k in 0..GHOSTS {
        let name = format!("ghost-job-{k}");
        let s = list
            .iter()
            .find(|s| s.name.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} is missing from {list:?}"));
        let why = s.unreachable.as_deref().unwrap_or_default();
        assert!(
            why.contains(&format!("x-ghost-{k}")),
            "{name} not marked: {why:?}"
        );
    }
    let late = list
        .iter()
        .filter(|s| {
            s.unreachable
                .as_deref()
                .is_some_and(|u| u.contains("did not answer within"))
        })
        .count();
    assert!(late > 0, "no node was cut by the deadline: {list:?}");
    // Asking all of them, 2 at a time, would take GHOSTS / 2 dial
    // timeouts; the deadline cut it short.
    let all = Duration::from_millis(relay.dial_timeout_ms) * (GHOSTS as u32 / 2);
    assert!(took < all, "ls took {took:?}, as long as asking everyone");
    drop(ghosts);
}
