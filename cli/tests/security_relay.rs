//! Attacks on the fleet by a relay and by a second certificate, as an
//! attacker would try them: real node and relay processes, real QUIC on
//! 127.0.0.x, and an attacker written here with quinn and the fleet's own
//! certificates (not with tether's client).
//!
//! - a relay certificate tries to create, type and kill, straight at a
//!   node and through a node's tunnel: refused, the sessions untouched;
//! - a relay answers for a node itself, with its own certificate or with a
//!   second certificate issued for the node's name: the client refuses it
//!   and exits non-zero;
//! - a relay flips a byte of a session's output: the client fails, never
//!   prints forged output and exits 0;
//! - a second certificate for a node's name dials a relay as that node:
//!   the tunnel is refused and the real node keeps receiving its input.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::tls::e2e;
use tether_net::tls::fleet::{self, FleetTls};
use tether_proto::{CreateSpec, ErrorKind, Hello, Reply, Request, Route};
use tether_testkit::{wait_until, Fleet, FleetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(30);

fn load(dir: &Path) -> FleetTls {
    FleetTls::load(dir).unwrap()
}

/// A QUIC connection to `addr` with the credentials in `me`, expecting a
/// node called `node` (pinned to its real certificate).
async fn dial_node(me: &FleetTls, addr: SocketAddr, node: &FleetTls) -> quinn::Connection {
    let cfg = fleet::dial_config(me, Some(node.fingerprint())).unwrap();
    let ep = tether_net::endpoint::make_endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let name = fleet::dns_name(node.me.role, &node.me.name);
    ep.connect_with(cfg, addr, &name).unwrap().await.unwrap()
}

/// Sends one request on a new stream of `conn` and reads the answer.
async fn ask(conn: &quinn::Connection, req: &Request) -> Reply {
    let (s, r) = conn.open_bi().await.unwrap();
    let mut wr = FrameWriter::new(s);
    let mut rd = FrameReader::new(r);
    wr.hello("attacker").await.unwrap();
    wr.control(req).await.unwrap();
    rd.hello().await.unwrap();
    rd.control::<Reply>().await.unwrap()
}

fn assert_forbidden(reply: Reply, what: &str) {
    match reply {
        Reply::Error {
            kind: ErrorKind::Forbidden,
            message,
        } => assert!(message.contains("relay"), "{what}: {message}"),
        other => panic!("{what}: a relay certificate got {other:?}"),
    }
}

/// What a relay's certificate tries on a node: create, type, kill, remove;
/// also with the hello older relays sent, naming a client.
async fn act_as_relay(conn: &quinn::Connection, victim: &str) {
    let create = Request::Create(CreateSpec {
        command: vec!["sh".into(), "-c".into(), "echo owned > /tmp/never".into()],
        name: Some("planted".into()),
        ..CreateSpec::default()
    });
    assert_forbidden(ask(conn, &create).await, "create");
    let send = Request::Send {
        target: victim.into(),
        data: b"typed-by-the-relay\n".to_vec(),
    };
    assert_forbidden(ask(conn, &send).await, "send");
    let kill = Request::Kill {
        target: victim.into(),
        signal: 9,
    };
    assert_forbidden(ask(conn, &kill).await, "kill");
    assert_forbidden(
        ask(conn, &Request::List).await,
        "list (a relay sees gossip, not the node's sessions)",
    );

    // The hello of the old protocol, naming a client with full rights.
    #[derive(serde::Serialize)]
    struct OldHello {
        version: u32,
        agent: String,
        on_behalf_of: Option<(String, bool)>,
    }
    let (s, r) = conn.open_bi().await.unwrap();
    let mut wr = FrameWriter::new(s);
    let mut rd = FrameReader::new(r);
    wr.control(&OldHello {
        version: tether_proto::PROTOCOL_VERSION,
        agent: "old-relay".into(),
        on_behalf_of: Some(("alice".into(), false)),
    })
    .await
    .unwrap();
    wr.control(&send).await.unwrap();
    let _: Hello = rd.hello().await.unwrap();
    assert_forbidden(rd.control::<Reply>().await.unwrap(), "send naming alice");
}

/// Relay on .71, node n1 on .81 listening, node n2 on .82 behind "NAT"
/// with a tunnel to the relay; client alice.
fn fleet_with_tunnel() -> Fleet {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 71),
        1,
        Ipv4Addr::new(127, 0, 0, 81),
        2,
    )
    .tunnel_only(1, 0)
    .client("alice")
    .ring_size(1 << 16);
    Fleet::start(TETHER, &spec).unwrap()
}

fn new_cat(f: &Fleet, node: &str, name: &str) -> String {
    f.client_ok(
        &[0],
        &["new", "-d", "--node", node, "--name", name, "--", "cat"],
    )
    .trim()
    .to_string()
}

fn output_of(f: &Fleet, id: &str) -> String {
    f.client_ok(&[0], &["tail", id])
}

#[test]
fn a_relay_certificate_cannot_act_on_a_node_directly_or_through_its_tunnel() {
    let mut f = fleet_with_tunnel();
    let v1 = new_cat(&f, "n1", "victim1");
    let v2 = new_cat(&f, "n2", "victim2");
    let relay = load(&f.ca().join("relays/r1"));
    let n1 = load(&f.ca().join("nodes/n1"));
    let rt = tether_testkit::runtime();

    // Straight at the node, with the relay's certificate.
    let n1_addr = f.files().nodes[0].config.listen;
    rt.block_on(async {
        let conn = dial_node(&relay, n1_addr, &n1).await;
        act_as_relay(&conn, &v1).await;
    });

    // Through the tunnel: the real relay goes, an attacker with its
    // certificate takes its address, and the node behind NAT dials it.
    let relay_addr: SocketAddr = f.relay_addr(0).parse().unwrap();
    f.kill_relay(0).unwrap();
    // A runtime of its own, dropped (with the attacker's socket) before
    // the real relay takes its address back.
    tether_testkit::runtime().block_on(async {
        let server = fleet::accept_config(&relay, vec![], |_| true).unwrap();
        let ep = tether_net::endpoint::make_endpoint(relay_addr, Some(server)).unwrap();
        let tunnel = tokio::time::timeout(T, async {
            loop {
                let c = ep.accept().await.unwrap().await.unwrap();
                if fleet::peer_of_connection(&c).is_some_and(|p| p.name == "n2") {
                    break c;
                }
            }
        })
        .await
        .expect("the node behind NAT dialed the relay's address again");
        act_as_relay(&tunnel, &v2).await;
        ep.close(0u32.into(), b"done");
    });

    // The real relay comes back; the sessions run, and nothing was typed.
    f.start_relay(0).unwrap();
    wait_until("the tunnel is back", T, || {
        f.client(&[0], "alice", &["info", &v2]).status.success()
    });
    for id in [&v1, &v2] {
        let info = f.client_ok(&[0], &["info", id, "--json"]);
        assert!(info.contains("\"state\": \"running\""), "{info}");
        assert!(!output_of(&f, id).contains("typed-by-the-relay"));
    }
    let ls = f.client_ok(&[0], &["ls"]);
    assert!(!ls.contains("planted"), "{ls}");
}

/// What an attacker relay does with a client's routed stream.
#[derive(Clone, Copy)]
enum Betrayal {
    /// Answers as the node itself, with the certificate it has.
    Impersonate,
    /// Forwards to the real node, flipping one byte of what comes back
    /// after `at` bytes.
    Flip { at: usize },
}

/// An attacker relay at a new address with relay r1's certificate: it
/// accepts clients and betrays their streams as told. With
/// `Impersonate`, it serves `impostor`'s certificate and names the
/// fingerprint `claimed`.
async fn attacker_relay(
    relay_dir: PathBuf,
    impostor_dir: PathBuf,
    claimed: String,
    node_addr: SocketAddr,
    node_dir: PathBuf,
    how: Betrayal,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let server = fleet::accept_config(&load(&relay_dir), vec![], |_| true).unwrap();
    let ep =
        tether_net::endpoint::make_endpoint("127.0.0.75:0".parse().unwrap(), Some(server)).unwrap();
    let addr = ep.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            let Ok(conn) = inc.await else { continue };
            let (relay, impostor, claimed, node) = (
                load(&relay_dir),
                load(&impostor_dir),
                claimed.clone(),
                load(&node_dir),
            );
            tokio::spawn(async move {
                while let Ok((s, r)) = conn.accept_bi().await {
                    let mut wr = FrameWriter::new(s);
                    let mut rd = FrameReader::new(r);
                    let _ = rd.hello().await;
                    let _: Request = rd.control().await.unwrap();
                    wr.hello("evil-relay").await.unwrap();
                    match how {
                        Betrayal::Impersonate => {
                            wr.control(&Reply::Routed {
                                node: "n1".into(),
                                fp: claimed.clone(),
                            })
                            .await
                            .unwrap();
                            let acceptor = e2e::Acceptor::clients(&impostor).unwrap();
                            let (r, ahead) = rd.into_parts();
                            // The client refuses the handshake.
                            let _ =
                                e2e::accept(e2e::prefixed(ahead, r), wr.into_inner(), &acceptor)
                                    .await;
                        }
                        Betrayal::Flip { at } => {
                            let c = dial_node(&relay, node_addr, &node).await;
                            let (ns, nr) = c.open_bi().await.unwrap();
                            let mut nwr = FrameWriter::new(ns);
                            let mut nrd = FrameReader::new(nr);
                            nwr.hello("evil-relay").await.unwrap();
                            nwr.control(&Request::Route(Route::Node {
                                name: Some("n1".into()),
                            }))
                            .await
                            .unwrap();
                            nrd.hello().await.unwrap();
                            let routed: Reply = nrd.control().await.unwrap();
                            wr.control(&routed).await.unwrap();
                            // Up: as is. Down: one byte flipped.
                            let (mut crd, cahead) = rd.into_parts();
                            let (mut ndr, nahead) = nrd.into_parts();
                            let mut cw = wr.into_inner();
                            let mut nw = nwr.into_inner();
                            let up = async move {
                                nw.write_all(&cahead).await?;
                                tokio::io::copy(&mut crd, &mut nw).await?;
                                nw.shutdown().await
                            };
                            let down = async move {
                                let mut seen = 0usize;
                                let mut buf = nahead.to_vec();
                                let mut chunk = vec![0u8; 16 * 1024];
                                loop {
                                    if seen <= at && at < seen + buf.len() {
                                        buf[at - seen] ^= 0x20;
                                    }
                                    seen += buf.len();
                                    cw.write_all(&buf).await?;
                                    let n = AsyncReadExt::read(&mut ndr, &mut chunk).await?;
                                    if n == 0 {
                                        break;
                                    }
                                    buf = chunk[..n].to_vec();
                                }
                                cw.shutdown().await
                            };
                            let _ = tokio::join!(up, down);
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

#[test]
fn a_relay_cannot_answer_for_a_node_or_alter_its_output() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 72),
        1,
        Ipv4Addr::new(127, 0, 0, 83),
        1,
    )
    .client("alice")
    .ring_size(1 << 20);
    let f = Fleet::start(TETHER, &spec).unwrap();
    let id = new_cat(&f, "n1", "secret");
    // 200 KB of output to carry, so a flipped byte lands after the
    // handshake, in the records of the output itself.
    let out = f
        .client_ok(
            &[0],
            &["new", "-d", "--node", "n1", "--name", "big", "--", "sh", "-c",
              "i=0; while [ $i -lt 4000 ]; do i=$((i+1)); echo line $i of fifty bytes.........; done; sleep 600"],
        )
        .trim()
        .to_string();
    wait_until("the output is written", T, || {
        output_of(&f, &out).contains("line 4000 ")
    });
    // A second certificate issued for n1's name, as a careless operator
    // (or an insider at the CA) would.
    let dup = f.dir().join("dup-n1");
    let o = std::process::Command::new(TETHER)
        .args(["ca", "issue"])
        .arg(f.ca())
        .args(["--node", "n1", "--out"])
        .arg(&dup)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let relay_dir = f.ca().join("relays/r1");
    let n1 = load(&f.ca().join("nodes/n1"));
    let n1_addr = f.files().nodes[0].config.listen;
    let alice = f.files().client_tls("alice");
    let rt = tether_testkit::runtime();
    let cases = [
        // Its own certificate, its own fingerprint named.
        (
            "relay's own certificate",
            relay_dir.clone(),
            load(&relay_dir).fingerprint().to_string(),
            Betrayal::Impersonate,
        ),
        // A CA-issued certificate for n1, named with the fingerprint
        // gossip announced for the real n1 (a tunnel impostor).
        (
            "second n1 certificate",
            dup.clone(),
            n1.fingerprint().to_string(),
            Betrayal::Impersonate,
        ),
    ];
    for (what, impostor_dir, claimed, how) in cases {
        let (addr, task) = rt.block_on(attacker_relay(
            relay_dir.clone(),
            impostor_dir,
            claimed,
            n1_addr,
            f.ca().join("nodes/n1"),
            how,
        ));
        let o = std::process::Command::new(TETHER)
            .args(["--relay", &addr.to_string(), "--tls-dir"])
            .arg(&alice)
            .args(["send", &id, "the-password\n"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(76), "{what}: {err}");
        assert!(
            err.contains("could not be verified end to end"),
            "{what}: {err}"
        );
        task.abort();
    }
    assert!(!output_of(&f, &id).contains("the-password"));

    // A relay that forwards honestly but flips one byte of the output.
    let (addr, task) = rt.block_on(attacker_relay(
        relay_dir.clone(),
        relay_dir.clone(),
        String::new(),
        n1_addr,
        f.ca().join("nodes/n1"),
        Betrayal::Flip { at: 100_000 },
    ));
    let o = std::process::Command::new(TETHER)
        .args(["--relay", &addr.to_string(), "--tls-dir"])
        .arg(&alice)
        .args(["tail", &out])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a tampered stream must not end well: {err}"
    );
    assert!(err.contains("altered on the way"), "{err}");
    // What was printed before the failure is the session's own output.
    let own = output_of(&f, &out);
    assert!(
        own.as_bytes().starts_with(&o.stdout),
        "forged bytes printed"
    );
    task.abort();
}

#[test]
fn a_second_certificate_for_a_node_name_cannot_take_its_tunnel() {
    let f = fleet_with_tunnel();
    let id = new_cat(&f, "n2", "pw");
    let dup = f.dir().join("dup-n2");
    let o = std::process::Command::new(TETHER)
        .args(["ca", "issue"])
        .arg(f.ca())
        .args(["--node", "n2", "--out"])
        .arg(&dup)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let impostor = load(&dup);
    let relay_addr: SocketAddr = f.relay_addr(0).parse().unwrap();
    let rt = tether_testkit::runtime();
    rt.block_on(async {
        let cfg = fleet::relay_dial_config(&impostor).unwrap();
        let ep = tether_net::endpoint::make_endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let conn = ep
            .connect_with(cfg, relay_addr, "relay.tether")
            .unwrap()
            .await
            .unwrap();
        // The relay closes it as soon as it sees the certificate is not
        // the one gossip announces for n2, and never sends it a stream.
        let closed = tokio::time::timeout(T, async {
            tokio::select! {
                reason = conn.closed() => reason,
                s = conn.accept_bi() => match s {
                    Ok(_) => panic!("the relay sent the impostor a stream"),
                    Err(reason) => reason,
                },
            }
        })
        .await
        .expect("the relay closes the impostor's tunnel");
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => {
                let why = String::from_utf8_lossy(&c.reason);
                assert!(why.contains("not the one gossip announces"), "{why}");
            }
            other => panic!("closed by {other:?}"),
        }
    });
    // The real node still gets its input through the relay.
    f.client_ok(&[0], &["send", &id, "still-mine\n"]);
    wait_until("the input reached the real session", T, || {
        output_of(&f, &id).contains("still-mine")
    });
}
