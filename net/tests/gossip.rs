//! Real chitchat members over the sealed transport on 127.0.0.x.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tether_net::gossip::{GossipHandle, GossipSettings, Member, Reject};
use tether_proto::gossip::{NodeRecord, Role, SessionRecord};
use tether_proto::{NodeId, SessionId};

fn free_udp(ip: &str) -> SocketAddr {
    let s = std::net::UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.local_addr().unwrap()
}

fn settings(id: &str, addr: SocketAddr, seeds: Vec<String>, secret: &str) -> GossipSettings {
    GossipSettings {
        member_id: id.into(),
        cluster_id: "test-cluster".into(),
        listen: addr,
        advertise: addr,
        seeds,
        interval: Duration::from_millis(50),
        secret: secret.as_bytes().to_vec(),
        next_secret: None,
        previous_secret: None,
        socket: None,
    }
}

fn record(name: &str) -> NodeRecord {
    NodeRecord {
        id: name.into(),
        name: name.into(),
        role: Role::Node,
        quic: Some("127.0.0.1:1".into()),
        fp: "00".into(),
        ver: "test".into(),
        relays: vec![],
    }
}

async fn wait_for(what: &str, h: &GossipHandle, cond: impl Fn(&[Member]) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond(&h.members().await) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn has_session(ms: &[Member], member: &str, id: &SessionId) -> bool {
    ms.iter()
        .any(|m| m.member_id == member && m.sessions.iter().any(|(s, _)| s == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_records_and_sessions() {
    let a_addr = free_udp("127.0.0.21");
    let b_addr = free_udp("127.0.0.22");
    let a = GossipHandle::start(settings("a", a_addr, vec![], "s3cret"), &record("a"))
        .await
        .unwrap();
    let b = GossipHandle::start(
        settings("b", b_addr, vec![a_addr.to_string()], "s3cret"),
        &record("b"),
    )
    .await
    .unwrap();
    wait_for("b sees a's record", &b, |ms| {
        ms.iter()
            .any(|m| m.record.as_ref().is_some_and(|r| r.name == "a") && m.live)
    })
    .await;
    let id = SessionId::generate(NodeId([1; 8]));
    let rec = SessionRecord {
        n: Some("build".into()),
        st: tether_proto::SessionState::Running,
        c: "make".into(),
        t: 1,
        o: None,
    };
    a.set_session(&id, &rec).await;
    wait_for("b sees the session", &b, |ms| has_session(ms, "a", &id)).await;
    a.remove_session(&id).await;
    wait_for("b sees the removal", &b, |ms| !has_session(ms, "a", &id)).await;
    assert_eq!(b.stats.rejected(), 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_datagrams_are_rejected_and_change_nothing() {
    let b_addr = free_udp("127.0.0.23");
    let b = GossipHandle::start(settings("b", b_addr, vec![], "right"), &record("b"))
        .await
        .unwrap();

    // A member with the wrong secret tries to join and announce a session.
    let evil_addr = free_udp("127.0.0.24");
    let evil = GossipHandle::start(
        settings("evil", evil_addr, vec![b_addr.to_string()], "wrong"),
        &record("evil"),
    )
    .await
    .unwrap();
    let evil_id = SessionId::generate(NodeId([9; 8]));
    evil.set_session(
        &evil_id,
        &SessionRecord {
            n: None,
            st: tether_proto::SessionState::Running,
            c: "x".into(),
            t: 0,
            o: None,
        },
    )
    .await;
    let t0 = Instant::now();
    while b.stats.forged.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no forged datagram counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ms = b.members().await;
    assert!(
        ms.iter().all(|m| m.member_id != "evil"),
        "the forger is not a member"
    );
    evil.shutdown().await;

    // A tap, posing as a seed of a legitimate member, captures one of its
    // real sealed datagrams and plays it to b twice, then altered. It was
    // sealed for the tap: b refuses both copies as addressed to another
    // member, and the altered one as forged.
    let tap = tokio::net::UdpSocket::bind(free_udp("127.0.0.25"))
        .await
        .unwrap();
    let a_addr = free_udp("127.0.0.26");
    let a = GossipHandle::start(
        settings(
            "a",
            a_addr,
            vec![tap.local_addr().unwrap().to_string()],
            "right",
        ),
        &record("a"),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), tap.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let captured = buf[..n].to_vec();
    let count = |r: Reject| b.stats.rejected_for(r);
    let (misdirected_before, forged_before) = (count(Reject::Misdirected), count(Reject::Forged));
    let accepted_before = b.stats.accepted.load(std::sync::atomic::Ordering::Relaxed);
    tap.send_to(&captured, b_addr).await.unwrap();
    tap.send_to(&captured, b_addr).await.unwrap();
    let mut altered = captured.clone();
    let last = altered.len() - 40;
    altered[last] ^= 0x55;
    tap.send_to(&altered, b_addr).await.unwrap();
    let t0 = Instant::now();
    while count(Reject::Misdirected) < misdirected_before + 2
        || count(Reject::Forged) < forged_before + 1
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "replay or alteration not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        b.stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
        accepted_before,
        "a datagram sealed for another receiver is never accepted"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_is_listed_once() {
    let a_addr = free_udp("127.0.0.27");
    let b_addr = free_udp("127.0.0.28");
    let a = GossipHandle::start(settings("a", a_addr, vec![], "s3cret"), &record("a"))
        .await
        .unwrap();
    let b = GossipHandle::start(
        settings("b", b_addr, vec![a_addr.to_string()], "s3cret"),
        &record("b"),
    )
    .await
    .unwrap();
    wait_for("a sees b", &a, |ms| {
        ms.iter().any(|m| m.member_id == "b" && m.live)
    })
    .await;
    // Wait until its socket is closed: the new one binds the same address.
    b.shutdown().await;
    drop(b);
    // Same member, new generation (chitchat's ID carries the start time,
    // in ms: let the clock move on).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b2 = GossipHandle::start(
        settings("b", b_addr, vec![a_addr.to_string()], "s3cret"),
        &record("b"),
    )
    .await
    .unwrap();
    wait_for("a sees the new b", &a, |ms| {
        ms.iter().filter(|m| m.member_id == "b").count() == 1
            && ms.iter().any(|m| m.member_id == "b" && m.live)
    })
    .await;
    // And it stays listed once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ms = a.members().await;
    assert_eq!(ms.iter().filter(|m| m.member_id == "b").count(), 1);
    b2.stop();
}
