//! Scenario 8 of issue #11, bad input, live: a real node and relay, a
//! legitimate client streaming a session through the relay, and an
//! attacker on 127.0.0.179 throwing at both members' QUIC and gossip
//! ports junk datagrams, forged and replayed gossip, and (with a valid
//! client certificate of its own) malformed, oversized and never-finishing
//! frames. Checked: no process died or panicked, the client was served
//! all along (its stream never broke, its requests succeeded, a new
//! connection was made meanwhile, and what it received is the session's
//! output byte for byte), memory stayed bounded, and the gossip reject
//! counters counted what was forged.

use chaos_tests::abuse::{self, Forgeries, StreamAnswers, Thrown};
use chaos_tests::bins::bins;
use chaos_tests::rng::Rng;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_client::{Client, OutputStream, StreamEvent};
use tether_net::tls::fleet::{self, FleetRole, FleetTls};
use tether_proto::{AttachSpec, CreateSpec, StartAt};
use tether_testkit::probe::{alive, panics, rss_kib};
use tether_testkit::{Fleet, FleetSpec};

/// How long the client may go without new output before it counts as
/// not served. A deadline, not a measure.
const SERVED: Duration = Duration::from_secs(15);
/// Growth of a member's VmRSS over its start that fails the drill: far
/// above what its limits let a peer make it hold (a few MiB of
/// unfinished frames per identity).
const RSS_BOUND_KIB: u64 = 96 * 1024;
/// Junk datagrams per QUIC port, rounds of forged gossip per gossip port.
const JUNK: usize = 4000;
const FORGERY_ROUNDS: usize = 150;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 179);

/// What the legitimate client received, and whether its stream broke.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    trouble: Vec<String>,
}

/// The value of the sample of `name` whose labels include `label`.
fn metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until the client has received more than `than` bytes.
async fn progressed(rx: &Mutex<Received>, than: usize) -> usize {
    let deadline = tokio::time::Instant::now() + SERVED;
    loop {
        let len = {
            let r = rx.lock().unwrap();
            assert!(r.trouble.is_empty(), "the client's stream: {:?}", r.trouble);
            r.bytes.len()
        };
        if len > than {
            return len;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client received nothing new for {SERVED:?} (stuck at {than} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The client is served: new output on its stream, its requests answered
/// on its connection and on a new one.
async fn served(f: &Fleet, probe: &Client, rx: &Mutex<Received>, seen: &mut usize, what: &str) {
    *seen = progressed(rx, *seen).await;
    let info = probe.info("ticker").await;
    assert!(info.is_ok(), "info during {what}: {info:?}");
    let fresh = Client::connect_relay(&[f.relay_addr(0)], &f.files().client_tls("alice"), 0).await;
    let (fresh, _) = fresh.unwrap_or_else(|e| panic!("a new connection during {what}: {e}"));
    let list = fresh.list().await;
    assert!(
        list.is_ok_and(|l| l.iter().any(|s| s.name.as_deref() == Some("ticker"))),
        "ls on a new connection during {what}"
    );
    fresh.close().await;
    eprintln!("served during {what}: {seen} bytes so far");
}

/// A QUIC connection from the attacker's address with its own valid
/// client certificate, to `name` of `role` at `addr`.
async fn dial(me: &FleetTls, addr: SocketAddr, role: FleetRole, name: &str) -> quinn::Connection {
    let cfg = fleet::dial_config(me, None).unwrap();
    let ep = tether_net::endpoint::make_endpoint((ATTACKER, 0).into(), None).unwrap();
    let server = fleet::dns_name(role, name);
    ep.connect_with(cfg, addr, &server).unwrap().await.unwrap()
}

#[test]
fn nodes_and_relays_shrug_off_bad_input() {
    let tether = bins(env!("CARGO_BIN_EXE_chaos-writer")).unwrap().tether;
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 171),
        1,
        Ipv4Addr::new(127, 0, 0, 175),
        1,
    )
    .client("alice")
    .client("mallory")
    .with_metrics();
    let f = Fleet::start(&tether, &spec).unwrap();
    let relay_pid = f.relay_pid(0).unwrap();
    let node_pid = f.nodes[0].daemon_pid().unwrap();
    let node_cfg = &f.files().nodes[0].config;
    let relay_quic: SocketAddr = f.relay_addr(0).parse().unwrap();
    let node_quic = node_cfg.listen;
    let (relay_gossip, node_gossip) = (f.relay_gossip(0), node_cfg.gossip.as_ref().unwrap().listen);
    let secret = std::fs::read(f.dir().join("secret")).unwrap();
    let mallory = FleetTls::load(&f.files().client_tls("mallory")).unwrap();
    let pids = [("relay r1", relay_pid), ("node n1", node_pid)];

    let rt = tether_testkit::runtime();
    rt.block_on(async {
        let alice = f.files().client_tls("alice");
        let (probe, _) = Client::connect_relay(&[f.relay_addr(0)], &alice, 0)
            .await
            .unwrap();
        let session = probe
            .create(CreateSpec {
                name: Some("ticker".into()),
                node: Some("n1".into()),
                command: [
                    "sh",
                    "-c",
                    "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.02; done",
                ]
                .map(String::from)
                .to_vec(),
                ..CreateSpec::default()
            })
            .await
            .unwrap();
        let (watcher, _) = Client::connect_relay(&[f.relay_addr(0)], &alice, 0)
            .await
            .unwrap();
        let mut stream = OutputStream::open(watcher, AttachSpec::new("ticker", StartAt::Oldest))
            .await
            .unwrap();
        let rx = Arc::new(Mutex::new(Received::default()));
        let rx2 = rx.clone();
        let reader = tokio::spawn(async move {
            loop {
                let ev = stream.next().await;
                let mut r = rx2.lock().unwrap();
                match ev {
                    Ok(StreamEvent::Output { data, .. }) => r.bytes.extend(data),
                    Ok(other) => r.trouble.push(format!("{other:?}")),
                    Err(e) => {
                        r.trouble.push(e.to_string());
                        return;
                    }
                }
            }
        });
        let mut seen = 0;
        served(&f, &probe, &rx, &mut seen, "warm-up").await;
        let before: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p).unwrap()).collect();
        let mut peak = before.clone();
        let sample = |peak: &mut Vec<u64>| {
            for (i, (_, p)) in pids.iter().enumerate() {
                peak[i] = peak[i].max(rss_kib(*p).unwrap());
            }
        };

        // 1. Junk datagrams at both QUIC ports.
        let sock = tokio::net::UdpSocket::bind((ATTACKER, 0)).await.unwrap();
        let mut rng = Rng::new(0x5eed_0008);
        let mut junk = Thrown::default();
        for to in [relay_quic, node_quic] {
            let t = abuse::junk_datagrams(&sock, to, JUNK, &mut rng)
                .await
                .unwrap();
            junk.datagrams += t.datagrams;
            junk.bytes += t.bytes;
        }
        sample(&mut peak);
        served(&f, &probe, &rx, &mut seen, "junk datagrams").await;

        // 2. Forged, truncated, replayed, stale and misdirected gossip.
        let mut forged = Vec::new();
        for to in [relay_gossip, node_gossip] {
            forged.push(
                abuse::gossip_forgeries(&sock, to, &secret, FORGERY_ROUNDS, &mut rng)
                    .await
                    .unwrap(),
            );
        }
        sample(&mut peak);
        served(&f, &probe, &rx, &mut seen, "forged gossip").await;

        // 3. Bad streams, with a valid certificate, at the relay and the
        // node; then never-finishing frames, held while the client is
        // checked.
        let to_relay = dial(&mallory, relay_quic, FleetRole::Relay, "r1").await;
        let to_node = dial(&mallory, node_quic, FleetRole::Node, "n1").await;
        let mut answers = Vec::new();
        for c in [&to_relay, &to_node] {
            answers.push(abuse::bad_streams(c, 3, &mut rng).await.unwrap());
        }
        sample(&mut peak);
        served(&f, &probe, &rx, &mut seen, "bad streams").await;
        let mut held = Vec::new();
        for c in [&to_relay, &to_node] {
            held.push(abuse::never_finishing(c, 24, 256 * 1024).await.unwrap());
        }
        sample(&mut peak);
        served(&f, &probe, &rx, &mut seen, "never-finishing frames").await;
        sample(&mut peak);
        drop(held);
        to_relay.close(0u32.into(), b"done");
        to_node.close(0u32.into(), b"done");
        served(&f, &probe, &rx, &mut seen, "after the attack").await;
        sample(&mut peak);
        let after: Vec<u64> = pids.iter().map(|(_, p)| rss_kib(*p).unwrap()).collect();

        // Report, then check.
        eprintln!("junk datagrams thrown at the QUIC ports: {junk:?}");
        for (who, (to, fg)) in ["r1", "n1"]
            .iter()
            .zip([relay_gossip, node_gossip].iter().zip(&forged))
        {
            eprintln!("gossip at {who} ({to}): {fg:?}");
        }
        for (who, a) in ["r1", "n1"].iter().zip(&answers) {
            eprintln!("bad streams at {who}: {a:?}");
        }
        for (i, (who, _)) in pids.iter().enumerate() {
            eprintln!(
                "{who}: VmRSS {} KiB before, {} KiB peak, {} KiB after",
                before[i], peak[i], after[i]
            );
        }
        for (i, (who, pid)) in pids.iter().enumerate() {
            assert!(alive(*pid), "{who} died");
            assert!(
                peak[i] < before[i] + RSS_BOUND_KIB,
                "{who}'s memory grew from {} to {} KiB",
                before[i],
                peak[i]
            );
        }
        for (who, a) in ["r1", "n1"].iter().zip(&answers) {
            check_answers(who, a);
        }
        for (who, fg) in ["r1", "n1"].iter().zip(&forged) {
            check_rejects(&f.scrape(who).unwrap(), who, fg);
        }

        // The client's bytes are the session's own, from its first.
        let own = f.nodes[0].tail(&session.id.to_string());
        let got = rx.lock().unwrap().bytes.clone();
        assert!(
            got.len() > 1000 && own.starts_with(&got),
            "the client's {} bytes",
            got.len()
        );
        reader.abort();
        probe.close().await;
    });
    let logs = [
        (
            "relay r1",
            std::fs::read_to_string(f.dir().join("r1.log")).unwrap(),
        ),
        ("node n1", f.nodes[0].log()),
    ];
    for (who, log) in &logs {
        assert!(panics(log).is_empty(), "{who} panicked: {:?}", panics(log));
    }
}

/// Every bad stream got an end: an answer, a close or a reset; none was
/// left hanging.
fn check_answers(who: &str, a: &StreamAnswers) {
    assert!(a.streams > 0);
    assert_eq!(a.silent, 0, "{who} left bad streams hanging: {a:?}");
    assert!(a.answered > 0, "{who} never answered a bad stream: {a:?}");
}

/// Each kind of forgery was counted under its reason, at least half of
/// what was thrown (loopback UDP may drop some under load; the pacing
/// keeps it to few), and no more than was thrown.
fn check_rejects(metrics: &str, who: &str, fg: &Forgeries) {
    const M: &str = "tether_gossip_rejected_total";
    for (reason, sent) in [
        ("forged", fg.forged),
        // The one authentic datagram's junk payload, which chitchat drops.
        ("malformed", fg.malformed + 1),
        ("replayed", fg.replayed),
        ("stale", fg.stale),
        ("misdirected", fg.misdirected),
    ] {
        let counted = metric(metrics, M, &format!("reason=\"{reason}\""));
        eprintln!("{who} rejected {counted} of {sent} {reason}");
        assert!(
            counted * 2 >= sent && counted <= sent,
            "{who} counted {counted} {reason} gossip datagrams of the {sent} thrown"
        );
    }
}
