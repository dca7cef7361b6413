//! Tests of revocation: kept apart so that the module reads as
//! the mechanism alone.
use super::*;
use crate::tls::fleet::{accept_config, ca_init, ca_issue, dial_config, FleetRole, FleetTls};
use crate::tls::issued::ca_revoke;

const T: Duration = Duration::from_secs(10);

struct Ca {
    _d: tempfile::TempDir,
    dir: PathBuf,
}

/// A CA with node n1 and clients alice and bob.
fn fleet() -> Ca {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ca");
    ca_init(&dir).unwrap();
    ca_issue(&dir, FleetRole::Node, "n1", None).unwrap();
    for c in ["alice", "bob"] {
        ca_issue(&dir, FleetRole::Client { read_only: false }, c, None).unwrap();
    }
    Ca { _d: d, dir }
}

impl Ca {
    fn tls(&self, sub: &str) -> FleetTls {
        FleetTls::load(&self.dir.join(sub)).unwrap()
    }
    fn revoke(&self, target: &str) -> Vec<u8> {
        ca_revoke(&self.dir, target, None).unwrap();
        read_pem(&self.dir.join(CRL_FILE)).unwrap()
    }
}

fn localhost() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server of `me` on 127.0.0.1 that admits clients and serves each
/// connection under `guard` until it closes.
fn serve(me: &FleetTls) -> quinn::Endpoint {
    let cfg = accept_config(me, vec![], |r| matches!(r, FleetRole::Client { .. })).unwrap();
    let ep = crate::endpoint::make_endpoint(localhost(), Some(cfg)).unwrap();
    let (e, rev) = (ep.clone(), me.revocations.clone());
    tokio::spawn(async move {
        while let Some(inc) = e.accept().await {
            let rev = rev.clone();
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                rev.guard(&conn, conn.closed()).await;
            });
        }
    });
    ep
}

/// Dials `server` as `me`, expecting node n1, until the server has
/// accepted or refused the client certificate.
async fn dial(me: &FleetTls, server: &quinn::Endpoint) -> Result<quinn::Connection, String> {
    let ep = crate::endpoint::make_endpoint(localhost(), None).unwrap();
    let addr = server.local_addr().unwrap();
    let attempt = async {
        let conn = ep
            .connect_with(dial_config(me, None).unwrap(), addr, "n1.node.tether")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        // A refused client certificate closes the connection just
        // after the client's side of the handshake.
        crate::tls::fleet::admitted(&conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    };
    tokio::time::timeout(T, attempt)
        .await
        .expect("the dial ends")
}

#[tokio::test]
async fn a_crl_in_force_refuses_new_handshakes_and_cuts_open_connections() {
    let ca = fleet();
    let node = ca.tls("nodes/n1");
    let server = serve(&node);
    let (alice, bob) = (ca.tls("clients/alice"), ca.tls("clients/bob"));
    let open = dial(&alice, &server).await.expect("alice is admitted");
    let bobs = dial(&bob, &server).await.expect("bob is admitted");

    // The CRL arrives after the configs were built: it applies at once.
    let crl = ca.revoke("alice");
    let offered = node.revocations.offer(&crl).unwrap();
    assert!(matches!(offered, Offer::Adopted { number: 1, .. }));
    let why = tokio::time::timeout(T, open.closed()).await.unwrap();
    match &why {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, REVOKED_CLOSE.into());
            assert_eq!(&c.reason[..], REVOKED_REASON);
        }
        other => panic!("alice's connection ended otherwise: {other}"),
    }
    assert_eq!(node.revocations.cut_total(), 1);
    assert!(bobs.close_reason().is_none(), "bob's connection stays");

    assert!(refused_as_revoked(&why));
    let e = dial(&alice, &server).await.expect_err("alice is refused");
    assert!(e.contains("revoked") || e.contains("44"), "{e}");
    assert_eq!(node.revocations.refused_total(), 1);
    dial(&bob, &server).await.expect("bob still comes in");

    // The dialing side: a client holding a CRL that revokes the node
    // refuses it.
    ca.revoke("n1");
    let bob_dir = ca.dir.join("clients/bob");
    std::fs::copy(ca.dir.join(CRL_FILE), bob_dir.join(CRL_FILE)).unwrap();
    let bob2 = FleetTls::load(&ca.dir.join("clients/bob")).unwrap();
    let e = dial(&bob2, &server).await.expect_err("bob refuses n1");
    assert!(e.to_lowercase().contains("revoked"), "{e}");
    assert_eq!(bob2.revocations.refused_total(), 1);
}

fn member(id: &str, seeds: Vec<String>) -> (crate::gossip::GossipSettings, String) {
    let sock = std::net::UdpSocket::bind(localhost()).unwrap();
    let addr = sock.local_addr().unwrap();
    (
        crate::gossip::GossipSettings {
            member_id: id.into(),
            cluster_id: "crl-test".into(),
            listen: addr,
            advertise: addr,
            seeds,
            interval: Duration::from_millis(50),
            secret: b"the crl test's cluster secret...".to_vec(),
            next_secret: None,
            previous_secret: None,
            socket: Some(sock),
        },
        addr.to_string(),
    )
}

fn record(id: &str) -> tether_proto::gossip::NodeRecord {
    tether_proto::gossip::NodeRecord {
        id: id.into(),
        name: id.into(),
        role: tether_proto::gossip::Role::Node,
        quic: None,
        fp: String::new(),
        ver: "test".into(),
        relays: Vec::new(),
    }
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !ok() {
        assert!(t0.elapsed() < T, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_crl_spreads_by_gossip_and_nothing_else_does() {
    let ca = fleet();
    ca_issue(&ca.dir, FleetRole::Node, "n2", None).unwrap();
    let (s1, a1) = member("m1", vec![]);
    let (s2, _) = member("m2", vec![a1.clone()]);
    let g1 = Arc::new(GossipHandle::start(s1, &record("m1")).await.unwrap());
    let g2 = Arc::new(GossipHandle::start(s2, &record("m2")).await.unwrap());
    let (n1, n2) = (ca.tls("nodes/n1"), ca.tls("nodes/n2"));
    let every = Duration::from_millis(50);
    let t1 = tokio::spawn(spread(n1.revocations.clone(), Some(g1.clone()), every));
    let t2 = tokio::spawn(spread(n2.revocations.clone(), Some(g2.clone()), every));

    // The operator copies crl.pem into n1's tls_dir only.
    let first = ca.revoke("alice");
    std::fs::copy(
        ca.dir.join(CRL_FILE),
        ca.dir.join("nodes/n1").join(CRL_FILE),
    )
    .unwrap();
    until("n1 to read the file", || n1.revocations.number() == 1).await;
    until("n2 to adopt it", || n2.revocations.number() == 1).await;
    // Written just after it is put in force.
    until("n2 to keep it in its tls_dir", || {
        read_pem(&ca.dir.join("nodes/n2").join(CRL_FILE)).ok() == Some(first.clone())
    })
    .await;

    // An older CRL in a tls_dir does not win, and is written over.
    let second = ca.revoke("bob");
    std::fs::copy(
        ca.dir.join(CRL_FILE),
        ca.dir.join("nodes/n2").join(CRL_FILE),
    )
    .unwrap();
    until("n1 to adopt CRL 2", || n1.revocations.number() == 2).await;
    std::fs::write(
        ca.dir.join("nodes/n1").join(CRL_FILE),
        Crl::parse(&first, n1.ca.as_ref()).unwrap().pem(),
    )
    .unwrap();
    until("n1 to write CRL 2 over CRL 1", || {
        read_pem(&ca.dir.join("nodes/n1").join(CRL_FILE)).ok() == Some(second.clone())
    })
    .await;
    assert_eq!(n1.revocations.number(), 2);

    // A member publishing a forged or foreign "newer" CRL changes nothing.
    let other = tempfile::tempdir().unwrap();
    let oca = other.path().join("ca");
    ca_init(&oca).unwrap();
    ca_issue(&oca, FleetRole::Node, "n1", None).unwrap();
    for _ in 0..5 {
        ca_revoke(&oca, "n1", None).unwrap();
    }
    let other_ca = FleetTls::load(&oca.join("nodes/n1")).unwrap().ca;
    let foreign = Crl::parse(&read_pem(&oca.join(CRL_FILE)).unwrap(), &other_ca).unwrap();
    assert_eq!(foreign.number(), 5);
    let (s3, _) = member("m3", vec![a1.clone()]);
    let g3 = GossipHandle::start(s3, &record("m3")).await.unwrap();
    g3.set_key(GOSSIP_KEY, foreign.gossip_value()).await;
    let garbage = format!("9:{}", "A".repeat(40));
    let (s4, _) = member("m4", vec![a1]);
    let g4 = GossipHandle::start(s4, &record("m4")).await.unwrap();
    g4.set_key(GOSSIP_KEY, garbage).await;
    let t0 = std::time::Instant::now();
    while g1.values_of(GOSSIP_KEY).await.len() < 4 {
        assert!(t0.elapsed() < T, "m1 never saw the bad CRLs");
        tokio::time::sleep(every).await;
    }
    tokio::time::sleep(every * 6).await;
    assert_eq!((n1.revocations.number(), n2.revocations.number()), (2, 2));
    t1.abort();
    t2.abort();
}
