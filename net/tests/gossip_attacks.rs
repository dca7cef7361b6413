//! An attacker on the network against real chitchat members on 127.0.0.x:
//! captured datagrams replayed, gossip read off the wire; and a rotation of
//! the cluster secret. (The junk flood is in `gossip_flood.rs`.)

mod support;

use std::sync::atomic::Ordering;
use support::*;
use tether_net::gossip::{GossipHandle, KeyRole, Reject};
use tether_proto::gossip::SessionRecord;
use tether_proto::{NodeId, SessionId, SessionState};

fn accepted(h: &GossipHandle) -> u64 {
    h.stats.accepted.load(Ordering::Relaxed)
}

/// Every datagram a member was sent, counted: accepted or rejected.
fn processed(h: &GossipHandle) -> u64 {
    accepted(h) + h.stats.rejected()
}

/// 300 datagrams captured between a and b, replayed to their original
/// receivers and to a third member: none is accepted; the original
/// receivers count them as replayed, the third as addressed to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_datagrams_replayed_to_anyone_are_refused() {
    let Pair {
        a,
        b,
        a_addr,
        b_addr,
        proxy,
    } = pair_through_proxy("replay cluster secret").await;
    wait_until("300 datagrams between a and b", || async {
        proxy.count() >= 300
    })
    .await;
    let captured = proxy.stop().await;
    // Let a and b finish what the proxy forwarded before it stopped; from
    // now on nothing reaches them but the replays.
    let to_b = captured.iter().filter(|c| c.to_b).count() as u64;
    let to_a = captured.len() as u64 - to_b;
    wait_until("a and b to process what was forwarded", || async {
        processed(&a) == to_a && processed(&b) == to_b
    })
    .await;
    assert_eq!(
        (a.stats.rejected(), b.stats.rejected()),
        (0, 0),
        "every forwarded datagram was genuine"
    );
    let cs = Spec::new("c", "127.0.0.64", "replay cluster secret");
    let c_addr = cs.addr();
    let c = cs.start().await;
    let before = [accepted(&a), accepted(&b)];
    let replays = &captured[..300];
    let attacker = tokio::net::UdpSocket::bind("127.0.0.65:0").await.unwrap();
    let replayed = |h: &GossipHandle| h.stats.rejected_for(Reject::Replayed);
    let mut sent = 0;
    // In batches: a socket's receive queue is small, and a datagram the
    // kernel drops would not be counted.
    for batch in replays.chunks(25) {
        for d in batch {
            let receiver = if d.to_b { b_addr } else { a_addr };
            attacker.send_to(&d.bytes, receiver).await.unwrap();
            attacker.send_to(&d.bytes, c_addr).await.unwrap();
        }
        sent += batch.len() as u64;
        wait_until("every replay counted", || async {
            replayed(&a) + replayed(&b) == sent && c.stats.rejected_for(Reject::Misdirected) == sent
        })
        .await;
    }
    assert_eq!([accepted(&a), accepted(&b)], before, "no replay accepted");
    assert_eq!(accepted(&c), 0, "no replay accepted by a third member");
    assert_eq!(a.stats.rejected() + b.stats.rejected(), 300);
    assert_eq!(c.stats.rejected(), 300);
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

/// A password in a session's command line crosses the wire between a and
/// b (b learns it) and appears in none of the datagrams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_not_readable_on_the_wire() {
    let Pair { a, b, proxy, .. } = pair_through_proxy("privacy cluster secret").await;
    let password = format!("Hunter2-{:x}", std::process::id() as u64 * 7_919);
    let command = format!("mysql -uroot -p{password} prod");
    let id = SessionId::generate(NodeId([4; 8]));
    let rec = SessionRecord {
        n: Some("db-console".into()),
        st: SessionState::Running,
        c: command.clone(),
        t: 1,
        o: None,
    };
    a.set_session(&id, &rec).await;
    wait_until("b to learn the command line through the proxy", || async {
        b.members().await.iter().any(|m| {
            m.member_id == "a" && m.sessions.iter().any(|(s, r)| *s == id && r.c == command)
        })
    })
    .await;
    let captured = proxy.stop().await;
    assert!(captured.iter().any(|c| c.to_b) && captured.iter().any(|c| !c.to_b));
    for needle in [&password, &command, "db-console", "mysql"] {
        let found = captured
            .iter()
            .filter(|c| {
                c.bytes
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            })
            .count();
        assert_eq!(found, 0, "{needle:?} readable in {found} datagrams");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A rotation of the cluster secret, phase by phase. x has moved to the
/// new secret and keeps the old one as previous. z holds only the old
/// secret: x accepts what z sends, but z cannot read x (why the first
/// phase must reach every member before any sends with the new secret).
/// y has not moved yet but accepts the new secret as next: x and y see
/// each other. Once x drops the previous secret, y's datagrams are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_the_cluster_together_until_the_old_secret_is_dropped() {
    const OLD: &str = "old cluster secret, 32 bytes ok";
    const NEW: &str = "new cluster secret, 32 bytes ok";
    let mut xs = Spec::new("x", "127.0.0.71", NEW);
    xs.previous = Some(OLD);
    let x_addr = xs.addr();
    let x = xs.start().await;

    // z, on the old secret only, joins through x. x answers z's Syn only
    // if it accepted it, and z refuses the answer.
    let z = Spec::new("z", "127.0.0.73", OLD)
        .seeds(&[x_addr])
        .start()
        .await;
    wait_until("z to refuse x's answers", || async {
        z.stats.rejected_for(Reject::Forged) >= 3
    })
    .await;
    assert!(x.stats.accepted_with(KeyRole::Previous) >= 1);
    assert_eq!(x.stats.rejected(), 0);
    assert!(!sees_record(&z.members().await, "x"));
    assert!(!sees_record(&x.members().await, "z"));
    z.shutdown().await;

    // y, on the old secret but accepting the new one, joins through x.
    let mut ys = Spec::new("y", "127.0.0.72", OLD).seeds(&[x_addr]);
    ys.next = Some(NEW);
    let y = ys.start().await;
    wait_until("x and y to see each other", || async {
        sees_record(&x.members().await, "y") && sees_record(&y.members().await, "x")
    })
    .await;
    assert!(y.stats.accepted_with(KeyRole::Next) > 0);
    assert_eq!(y.stats.accepted_with(KeyRole::Current), 0);
    assert_eq!(x.stats.accepted_with(KeyRole::Next), 0);
    assert_eq!(y.stats.rejected(), 0);

    // x restarts, on the same address, without the previous secret.
    x.shutdown().await;
    let x2 = Spec {
        socket: std::net::UdpSocket::bind(x_addr).unwrap(),
        ..Spec::new("x", "127.0.0.71", NEW)
    }
    .start()
    .await;
    wait_until("x to refuse y's datagrams", || async {
        x2.stats.rejected_for(Reject::Forged) >= 3
    })
    .await;
    assert_eq!(
        accepted(&x2),
        0,
        "nothing sealed with the old secret gets in"
    );
    assert!(!sees_record(&x2.members().await, "y"));
    x2.shutdown().await;
    y.shutdown().await;
}
