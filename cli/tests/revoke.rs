//! Revocation across a fleet of real processes (two relays, three nodes,
//! n3 behind "NAT" with a tunnel to r1; real chitchat, real QUIC): the
//! operator revokes a certificate with `tether ca revoke`, puts the CRL in
//! ONE member's tls_dir, and gossip brings it to every node and relay,
//! which refuse the revoked identity from then on and cut its open
//! connections.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::tls::fleet::{self, FleetTls};
use tether_proto::{Hello, Request};
use tether_testkit::{tether_ok, wait_until, Fleet, FleetSpec, KillOnDrop};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const T: Duration = Duration::from_secs(30);
/// Exit code of a client whose credentials are unusable (`cli/src/exit.rs`).
const CONFIG: i32 = 78;

/// Relays r1, r2 on 127.0.0.201-202; nodes n1-n3 on 127.0.0.211-213, n3
/// with no listener and a tunnel to r1. Clients alice and bob. Metrics
/// everywhere; gossip every 100 ms.
fn start_fleet() -> Fleet {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 201),
        2,
        Ipv4Addr::new(127, 0, 0, 211),
        3,
    )
    .tunnel_only(2, 0)
    .client("alice")
    .client("bob")
    .with_metrics();
    Fleet::start(TETHER, &spec).unwrap()
}

const MEMBERS: [&str; 5] = ["n1", "n2", "n3", "r1", "r2"];

/// The value of metric `name` (without labels) in a scrape.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn member_metric(f: &Fleet, member: &str, name: &str) -> u64 {
    let text = f.scrape(member).unwrap();
    metric(&text, name).unwrap_or_else(|| panic!("{member} has no {name}: {text}"))
}

/// Waits until every node and relay holds CRL number `n`.
fn wait_crl_everywhere(f: &Fleet, n: u64) -> Duration {
    let t0 = Instant::now();
    for m in MEMBERS {
        wait_until(&format!("CRL {n} in force at {m}"), T, || {
            f.scrape(m)
                .ok()
                .and_then(|t| metric(&t, "tether_crl_number"))
                == Some(n)
        });
    }
    t0.elapsed()
}

fn tls_dir_of(f: &Fleet, member: &str) -> std::path::PathBuf {
    let files = f.files();
    match files.nodes.iter().find(|m| m.name == member) {
        Some(n) => n.config.tls_dir.clone().unwrap(),
        None => {
            let r = files.relays.iter().find(|m| m.name == member).unwrap();
            r.config.tls_dir.clone()
        }
    }
}

/// Dials node `node` at `addr` directly over QUIC with `me` (as loaded
/// when it was given) and asks it for its hello: `Ok` if the node admits
/// the certificate.
fn dial_node(me: &FleetTls, addr: SocketAddr, node: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let ep = tether_net::endpoint::make_endpoint(bind, None).map_err(|e| e.to_string())?;
        let cfg = fleet::dial_config(me, None).map_err(|e| e.to_string())?;
        let attempt = async {
            let conn = ep
                .connect_with(cfg, addr, &format!("{node}.node.tether"))
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            fleet::admitted(&conn).await.map_err(|e| e.to_string())?;
            let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let mut wr = FrameWriter::new(send);
            wr.control(&Hello::current("revoke-test"))
                .await
                .map_err(|e| e.to_string())?;
            wr.control(&Request::List)
                .await
                .map_err(|e| e.to_string())?;
            let mut rd = FrameReader::new(recv);
            match rd.hello().await {
                Ok(_) => Ok(()),
                // The stream died with the connection: say why.
                Err(e) => Err(conn
                    .close_reason()
                    .map_or_else(|| e.to_string(), |r| r.to_string())),
            }
        };
        let r = tokio::time::timeout(T, attempt)
            .await
            .unwrap_or_else(|_| Err("no answer".into()));
        ep.close(0u32.into(), b"done");
        r
    })
}

/// `tether tail NAME --follow` through both relays as `who`, its stdout
/// and stderr collected on threads.
struct Follower {
    child: KillOnDrop,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
}

impl Follower {
    fn start(f: &Fleet, who: &str, target: &str) -> Follower {
        let mut child = KillOnDrop(
            f.client_command(&[1, 0], who)
                .args(["tail", target, "--follow"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let read = |mut p: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = p.read_to_end(&mut b);
                b
            })
        };
        let out = read(Box::new(child.stdout.take().unwrap()));
        let err = read(Box::new(child.stderr.take().unwrap()));
        Follower { child, out, err }
    }

    /// Waits for the end: exit code, stdout, stderr.
    fn end(mut self) -> (Option<i32>, String, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < T, "the follower did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |h: std::thread::JoinHandle<Vec<u8>>| {
            String::from_utf8_lossy(&h.join().unwrap()).into_owned()
        };
        (status.code(), text(self.out), text(self.err))
    }
}

fn log_of_relay(f: &Fleet, r: &str) -> String {
    std::fs::read_to_string(f.dir().join(format!("{r}.log"))).unwrap_or_default()
}

fn copy_crl(f: &Fleet, member: &str) {
    let to = tls_dir_of(f, member).join("crl.pem");
    // As an operator would: written next to it, then moved in place.
    let tmp = to.with_extension("new");
    std::fs::copy(f.ca().join("crl.pem"), &tmp).unwrap();
    std::fs::rename(&tmp, &to).unwrap();
}

#[test]
fn a_revoked_identity_is_refused_fleet_wide_and_cut() {
    let f = start_fleet();
    let ca = f.ca().to_str().unwrap().to_string();
    let node_addr = |i: usize| f.files().nodes[i].config.listen;
    let id = f
        .client_ok(
            &[0],
            &["new", "-d", "--node", "n1", "--name", "pad", "--", "cat"],
        )
        .trim()
        .to_string();
    f.client_ok(
        &[1],
        &["new", "-d", "--node", "n3", "--name", "natted", "--", "cat"],
    );
    // They are alice's; bob follows and types into them as she shares.
    for s in ["pad", "natted"] {
        f.client_ok(&[0], &["share", s, "--with", "bob"]);
    }

    // Before: alice and bob work through either relay, and straight to
    // the nodes that listen.
    for who in ["alice", "bob"] {
        for r in [0, 1] {
            let o = f.client(&[r], who, &["ls"]);
            assert!(o.status.success(), "{who} via r{}: {o:?}", r + 1);
        }
    }
    let alice = FleetTls::load(&f.files().client_tls("alice")).unwrap();
    let bob = FleetTls::load(&f.files().client_tls("bob")).unwrap();
    for (i, n) in [(0, "n1"), (1, "n2")] {
        dial_node(&alice, node_addr(i), n).unwrap();
    }
    // Live connections: alice and bob follow the session through r2.
    let alice_follows = Follower::start(&f, "alice", "pad");
    let bob_follows = Follower::start(&f, "bob", "pad");
    let n1 = &f.nodes[0];
    wait_until("both followers attached", T, || {
        n1.info(&id)["clients"] == 2
    });
    f.client_ok(&[0], &["send", "pad", "before\n"]);

    // The operator revokes alice and puts the list in n1's tls_dir only.
    let said = tether_ok(TETHER.as_ref(), &["ca", "revoke", &ca, "alice"]).unwrap();
    assert!(said.contains("revoked client alice, serial"), "{said}");
    assert!(
        said.contains("number 1") && said.contains("crl.pem"),
        "{said}"
    );
    assert!(said.contains("gossip"), "says how members get it: {said}");
    copy_crl(&f, "n1");
    let took = wait_crl_everywhere(&f, 1);
    eprintln!("CRL 1 in force at every node and relay after {took:?}");
    for m in MEMBERS {
        // Written just after it is put in force.
        let kept = tls_dir_of(&f, m).join("crl.pem");
        wait_until(&format!("{m} to keep the CRL"), T, || kept.exists());
    }

    // alice's open connection was cut; her reconnects are refused; the
    // follower ends with a clear error.
    let (code, _, err) = alice_follows.end();
    assert_eq!(code, Some(CONFIG), "{err}");
    assert!(
        err.contains("revoked this client's certificate") && err.contains("tether ca issue"),
        "{err}"
    );
    // bob is untouched and still following.
    let o = f.client(&[0], "bob", &["send", "pad", "after\n"]);
    assert!(o.status.success(), "{o:?}");
    wait_until("bob follows on", T, || n1.info(&id)["clients"] == 1);

    // Each relay refuses alice, again and again; bob still works.
    for r in [0, 1] {
        for attempt in 0..2 {
            let o = f.client(&[r], "alice", &["ls"]);
            let e = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(CONFIG), "r{} #{attempt}: {e}", r + 1);
            assert!(e.contains("revoked"), "{e}");
        }
        let o = f.client(&[r], "bob", &["ls"]);
        assert!(o.status.success(), "{o:?}");
    }
    // Each node that accepts connections refuses her too.
    for (i, n) in [(0, "n1"), (1, "n2")] {
        let e = dial_node(&alice, node_addr(i), n).unwrap_err();
        assert!(e.contains("Revoked"), "{n}: {e}");
        dial_node(&bob, node_addr(i), n).unwrap();
    }
    let r2 = log_of_relay(&f, "r2");
    assert!(
        r2.contains("closed a connection: its peer's certificate is revoked")
            && r2.contains("client alice"),
        "{r2}"
    );
    assert!(member_metric(&f, "r2", "tether_revoked_cut_total") >= 1);
    for m in ["r1", "r2", "n1", "n2"] {
        assert!(
            member_metric(&f, m, "tether_revoked_refused_total") >= 1,
            "{m}"
        );
    }

    // A revoked node: n3's tunnel to r1 is dropped, and not let in again.
    assert_eq!(member_metric(&f, "r1", "tether_tunnels_held"), 1);
    let said = tether_ok(TETHER.as_ref(), &["ca", "revoke", &ca, "--node", "n3"]).unwrap();
    assert!(
        said.contains("revoked node n3") && said.contains("number 2"),
        "{said}"
    );
    copy_crl(&f, "r2");
    let took = wait_crl_everywhere(&f, 2);
    eprintln!("CRL 2 in force at every node and relay after {took:?}");
    wait_until("r1 drops n3's tunnel", T, || {
        member_metric(&f, "r1", "tether_tunnels_held") == 0
    });
    let r1 = log_of_relay(&f, "r1");
    assert!(
        r1.contains("closed a connection: its peer's certificate is revoked")
            && r1.contains("node n3"),
        "{r1}"
    );
    wait_until("n3 to say it is revoked", T, || {
        f.nodes[2].log().contains("own certificate is revoked")
    });
    let o = f.client(&[0], "bob", &["info", "natted"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(69), "{e}");
    assert!(e.contains("node n3 unreachable"), "{e}");
    // bob's follower of n1's session lived through all of it.
    assert!(n1.info(&id)["clients"] == 1);
    drop(bob_follows);
    assert!(Path::new(&f.ca().join("issued.json")).exists());

    // A crl.pem that another CA signed, or that is no CRL at all, stops a
    // member at start, saying what to do.
    let other = f.dir().join("other-ca");
    let other = other.to_str().unwrap();
    tether_ok(TETHER.as_ref(), &["ca", "init", other]).unwrap();
    tether_ok(TETHER.as_ref(), &["ca", "issue", other, "--node", "n2"]).unwrap();
    tether_ok(TETHER.as_ref(), &["ca", "revoke", other, "n2"]).unwrap();
    let mut f = f;
    f.kill_node(1).unwrap();
    std::fs::copy(
        Path::new(other).join("crl.pem"),
        tls_dir_of(&f, "n2").join("crl.pem"),
    )
    .unwrap();
    let e = format!("{:#}", f.restart_node(1).unwrap_err());
    assert!(
        e.contains("crl.pem is unusable") && e.contains("does not verify") && e.contains("remove"),
        "{e}"
    );
    f.kill_relay(1).unwrap();
    std::fs::write(tls_dir_of(&f, "r2").join("crl.pem"), "not a CRL").unwrap();
    let e = format!("{:#}", f.start_relay(1).unwrap_err());
    assert!(e.contains("not a valid CRL"), "{e}");
}
