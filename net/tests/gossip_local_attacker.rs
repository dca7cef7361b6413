//! A local user against a member's sockets: every UDP socket the process
//! holds (listed from /proc/self/fd and /proc/net/udp) gets well-formed
//! plaintext chitchat announcing a forged member, and no member ever
//! learns of it.
//!
//! A test binary of its own: it writes to every UDP socket of the process.

mod support;

use chitchat::transport::{Socket, UdpSocket as ChitchatSocket, UdpTransport};
use chitchat::{ChitchatConfig, ChitchatEnvelope, ChitchatId, ChitchatMessage, ProtocolVersion};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use support::*;
use tether_net::gossip::{GossipHandle, Member, Reject};
use tether_proto::gossip::{session_key, SessionRecord, NODE_KEY};
use tether_proto::{NodeId, SessionId, SessionState};

const CLUSTER: &str = "test-cluster";
const FORGED_QUIC: &str = "127.0.0.1:9";
const FORGED_SESSION: &str = "forged-session";

/// The UDP sockets this process holds, as addresses to send to (a
/// wildcard-bound socket is reached on loopback).
fn process_udp_sockets() -> Vec<SocketAddr> {
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut out = Vec::new();
    for (table, v6) in [("/proc/net/udp", false), ("/proc/net/udp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !inodes.contains(&f[9].parse().unwrap()) {
                continue;
            }
            let (ip, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            // The kernel prints each 32-bit word of the address as a
            // number in host byte order.
            let words: Vec<[u8; 4]> = (0..ip.len() / 8)
                .map(|i| {
                    u32::from_str_radix(&ip[8 * i..8 * i + 8], 16)
                        .unwrap()
                        .to_ne_bytes()
                })
                .collect();
            let ip: IpAddr = if v6 {
                Ipv6Addr::from(<[u8; 16]>::try_from(words.concat()).unwrap()).into()
            } else {
                Ipv4Addr::from(words[0]).into()
            };
            let ip = if ip.is_unspecified() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                ip
            };
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

fn chitchat_config(id: &str, listen: SocketAddr, seeds: Vec<String>) -> ChitchatConfig {
    ChitchatConfig {
        chitchat_id: ChitchatId::new(id, 1, listen),
        cluster_id: CLUSTER.into(),
        gossip_interval: Duration::from_millis(20),
        listen_addr: listen,
        seed_nodes: seeds,
        failure_detector_config: Default::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    }
}

/// What the rogue announces: a member whose QUIC address is 127.0.0.1:9,
/// and a session of a fake name.
fn forged_state() -> Vec<(String, String)> {
    let mut rec = record("rogue");
    rec.quic = Some(FORGED_QUIC.into());
    let session = SessionRecord {
        n: Some(FORGED_SESSION.into()),
        st: SessionState::Running,
        c: "sh".into(),
        t: 1,
        o: None,
    };
    vec![
        (NODE_KEY.into(), serde_json::to_string(&rec).unwrap()),
        (
            session_key(&SessionId::generate(NodeId([6; 8]))),
            serde_json::to_string(&session).unwrap(),
        ),
    ]
}

fn forged_anywhere(ms: &[Member]) -> bool {
    ms.iter().any(|m| {
        m.member_id == "rogue"
            || m.record
                .as_ref()
                .is_some_and(|r| r.quic.as_deref() == Some(FORGED_QUIC))
            || m.sessions
                .iter()
                .any(|(_, s)| s.n.as_deref() == Some(FORGED_SESSION))
    })
}

/// Plaintext chitchat datagrams, made by chitchat itself, that announce
/// the forged state: the rogue's Syn, and its SynAck to an empty digest
/// (whose delta carries every key). Also returns the attacker's sockets.
async fn attack_datagrams() -> (Vec<Vec<u8>>, Vec<SocketAddr>, chitchat::ChitchatHandle) {
    let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tap_addr = tap.local_addr().unwrap();
    let rogue_listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let rogue = chitchat::spawn_chitchat(
        chitchat_config("rogue", rogue_listen, vec![tap_addr.to_string()]),
        forged_state(),
        &UdpTransport,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, rogue_addr) = tokio::time::timeout(PATIENCE, tap.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let syn = buf[..n].to_vec();
    // An empty Syn of the cluster, serialized by chitchat, asks the rogue
    // for everything.
    let mut codec = ChitchatSocket::open("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let codec_addr = codec.local_addr().unwrap();
    let empty_syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: CLUSTER.into(),
            digest: Default::default(),
        },
    };
    codec.send(tap_addr, empty_syn).await.unwrap();
    let ask = loop {
        let (n, from) = tap.recv_from(&mut buf).await.unwrap();
        if from == codec_addr {
            break buf[..n].to_vec();
        }
    };
    tap.send_to(&ask, rogue_addr).await.unwrap();
    // The rogue's answer, recognized by decoding it with chitchat.
    let syn_ack = loop {
        let (n, from) = tokio::time::timeout(PATIENCE, tap.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if from != rogue_addr {
            continue;
        }
        tap.send_to(&buf[..n], codec_addr).await.unwrap();
        let out = tokio::time::timeout(PATIENCE, codec.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(out.envelope.message, ChitchatMessage::SynAck { .. }) {
            break buf[..n].to_vec();
        }
    };
    (
        vec![syn, syn_ack],
        vec![tap_addr, rogue_addr, codec_addr],
        rogue,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_chitchat_reaches_no_member_through_any_socket() {
    let (attack, attacker_sockets, rogue) = attack_datagrams().await;
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Control: the same datagrams make a plaintext chitchat member adopt
    // the forged state.
    let control = chitchat::spawn_chitchat(
        chitchat_config("control", "127.0.0.1:0".parse().unwrap(), vec![]),
        vec![],
        &UdpTransport,
    )
    .await
    .unwrap();
    let control_addr = process_udp_sockets()
        .into_iter()
        .find(|a| !attacker_sockets.contains(a) && *a != sender.local_addr().unwrap())
        .expect("the control member's socket");
    for d in &attack {
        sender.send_to(d, control_addr).await.unwrap();
    }
    wait_until("the control member to adopt the forged record", || async {
        let cc = control.chitchat();
        let c = cc.lock().await;
        c.node_states().iter().any(|(id, st)| {
            &*id.node_id == "rogue" && st.get(NODE_KEY).is_some_and(|v| v.contains(FORGED_QUIC))
        })
    })
    .await;
    control.shutdown().await.unwrap();

    // Two sealed members that see each other.
    let a_spec = Spec::new("a", "127.0.0.51", "local attacker cluster secret");
    let a_addr = a_spec.addr();
    let a = a_spec.start().await;
    let b = Spec::new("b", "127.0.0.52", "local attacker cluster secret")
        .seeds(&[a_addr])
        .start()
        .await;
    wait_until("a and b to see each other", || async {
        sees_record(&a.members().await, "b") && sees_record(&b.members().await, "a")
    })
    .await;

    // Every UDP socket of the process but the attacker's own gets the
    // attack, three times over.
    let mut ours = attacker_sockets.clone();
    ours.push(sender.local_addr().unwrap());
    let targets: Vec<SocketAddr> = process_udp_sockets()
        .into_iter()
        .filter(|a| !ours.contains(a))
        .collect();
    assert!(
        targets.len() >= 6,
        "expected each member's public socket and chitchat's codec pair, found {targets:?}"
    );
    for _ in 0..3 {
        for t in &targets {
            for d in &attack {
                sender.send_to(d, *t).await.unwrap();
            }
        }
    }

    // The public sockets refuse them (counted); the codec sockets never
    // see them. Gossip goes on: a session set now reaches b.
    let per_public_socket = 3 * attack.len() as u64;
    wait_until("the public sockets to count the attack", || async {
        a.stats.rejected_for(Reject::Malformed) == per_public_socket
            && b.stats.rejected_for(Reject::Malformed) == per_public_socket
    })
    .await;
    let canary = SessionId::generate(NodeId([7; 8]));
    a.set_session(
        &canary,
        &SessionRecord {
            n: Some("canary".into()),
            st: SessionState::Running,
            c: "true".into(),
            t: 1,
            o: None,
        },
    )
    .await;
    wait_until("b to see a's session set after the attack", || async {
        b.members()
            .await
            .iter()
            .any(|m| m.sessions.iter().any(|(id, _)| *id == canary))
    })
    .await;
    // And a round back: b's view of a at a now postdates the attack too.
    let rounds = |h: &GossipHandle| h.stats.accepted.load(std::sync::atomic::Ordering::Relaxed);
    let (ra, rb) = (rounds(&a), rounds(&b));
    wait_until("a few more rounds", || async {
        rounds(&a) > ra + 10 && rounds(&b) > rb + 10
    })
    .await;
    for (name, h) in [("a", &a), ("b", &b)] {
        let ms = h.members().await;
        assert!(
            !forged_anywhere(&ms),
            "{name} adopted the forged state: {ms:?}"
        );
        assert_eq!(
            h.stats.rejected(),
            per_public_socket,
            "{name}: {:?}",
            h.stats
        );
    }
    rogue.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}
