//! Floods a peer could use to make a node or a relay hold memory, streams
//! or connections: each refused at its limit with a clear error, with the
//! server's memory measured before and after, and the server still
//! serving. Real processes, real QUIC on 127.0.0.x.

use std::net::Ipv4Addr;
use std::time::Duration;
use tether_client::Client;
use tether_proto::frame::HEADER_LEN;
use tether_proto::{ErrorKind, Reply, MAX_FRAME_SIZE};
use tether_testkit::{Fleet, FleetSpec, TestNode};
use tokio::io::AsyncWriteExt;

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const STREAMS: usize = 300;

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    tether_testkit::probe::rss_kib(pid).unwrap() as f64 / 1024.0
}

/// Opens `STREAMS` streams on `client`, each holding a largest frame but
/// one byte, and returns how many were refused: answered with an error,
/// or not let open by QUIC's cap on streams (the rest are held).
async fn partial_frames(client: &Client) -> usize {
    let mut tasks = Vec::new();
    let mut unopened = 0;
    for i in 0..STREAMS {
        // QUIC's own cap on open streams holds back the rest.
        let Ok(Ok((mut s, r))) =
            tokio::time::timeout(Duration::from_secs(2), client.open_raw()).await
        else {
            unopened = STREAMS - i;
            break;
        };
        tasks.push(tokio::spawn(async move {
            let mut head = vec![1u8];
            head.extend_from_slice(&(MAX_FRAME_SIZE as u32).to_be_bytes());
            let body = vec![0x81u8; MAX_FRAME_SIZE - 1];
            let write = async {
                s.write_all(&head).await?;
                s.write_all(&body).await
            };
            // Flow control may hold the writer: what the server reads is
            // what it holds.
            let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
            let mut rd = tether_net::conn::FrameReader::new(r);
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = rd.hello().await;
                rd.control::<Reply>().await
            })
            .await;
            // Keep the stream (and what it holds) to the end of the test.
            (matches!(answer, Ok(Ok(Reply::Error { .. }))), s)
        }));
    }
    let mut refused = unopened;
    let mut held = Vec::new();
    for t in tasks {
        let (r, s) = t.await.unwrap();
        refused += r as usize;
        held.push(s);
    }
    // Give the server every byte it will take, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::mem::forget(held);
    refused
}

#[test]
fn partial_frame_floods_are_bounded_at_a_node_and_a_relay() {
    let rt = tether_testkit::runtime();
    // A node alone, flooded by its own local client.
    let node = TestNode::start(TETHER).unwrap();
    let pid = node.daemon_pid().unwrap();
    let before = rss_mib(pid);
    let refused = rt.block_on(async {
        let c = node.client_quic().await;
        partial_frames(&c).await
    });
    let after = rss_mib(pid);
    eprintln!(
        "node: {STREAMS} streams of {} bytes but one: {refused} refused, RSS {before:.1} -> {after:.1} MiB",
        MAX_FRAME_SIZE + HEADER_LEN
    );
    assert!(refused >= STREAMS - 2, "{refused} of {STREAMS} refused");
    assert!(
        after - before < 48.0,
        "the node grew by {:.1} MiB",
        after - before
    );
    // The same over the daemon's unix socket: a connection per stream, so
    // only the owner's budget of partial bytes (8 MiB) holds them.
    let refused = rt.block_on(async {
        let c = node.client().await;
        assert!(c.is_local_fast_path());
        partial_frames(&c).await
    });
    let after_unix = rss_mib(pid);
    eprintln!(
        "node, unix socket: {refused} of {STREAMS} refused, RSS {after:.1} -> {after_unix:.1} MiB"
    );
    // The budget holds about 7 such frames; a few more answers may come
    // late on a loaded machine, and late counts as held here.
    assert!(refused >= STREAMS - 16, "{refused} of {STREAMS} refused");
    assert!(
        after_unix - before < 48.0,
        "the node grew by {:.1} MiB",
        after_unix - before
    );
    node.ok(&["ls"]);

    // A relay, flooded by a fleet client.
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 91),
        1,
        Ipv4Addr::new(127, 0, 0, 95),
        1,
    )
    .client("mallory");
    let f = Fleet::start(TETHER, &spec).unwrap();
    let pid = f.relay_pid(0).unwrap();
    let before = rss_mib(pid);
    let tls = f.files().client_tls("mallory");
    let refused = rt.block_on(async {
        let (c, _) = Client::connect_relay(&[f.relay_addr(0)], &tls, 0)
            .await
            .unwrap();
        partial_frames(&c).await
    });
    let after = rss_mib(pid);
    eprintln!("relay: {refused} refused, RSS {before:.1} -> {after:.1} MiB");
    assert!(refused >= STREAMS - 2, "{refused} of {STREAMS} refused");
    assert!(
        after - before < 48.0,
        "the relay grew by {:.1} MiB",
        after - before
    );
    f.client_ok(&[0], &["nodes"]);
}

#[test]
fn stream_connection_and_hello_limits_refuse_with_the_key_to_raise() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 92),
        1,
        Ipv4Addr::new(127, 0, 0, 96),
        1,
    )
    .client("mallory")
    .client("alice")
    .with_metrics();
    let f = Fleet::start(TETHER, &spec).unwrap();
    let mallory = f.files().client_tls("mallory");
    let relay = f.relay_addr(0);
    let limits = tether_net::limits::Limits::default();
    let rt = tether_testkit::runtime();
    rt.block_on(async {
        // Streams: one connection opens one more than its limit, each
        // stopping after the hello.
        let (c, _) = Client::connect_relay(std::slice::from_ref(&relay), &mallory, 0)
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..limits.streams_per_connection {
            let (mut s, r) = c.open_raw().await.unwrap();
            let mut w = tether_net::conn::FrameWriter::new(&mut s);
            w.hello("flood").await.unwrap();
            held.push((s, r));
        }
        let (mut s, r) = c.open_raw().await.unwrap();
        tether_net::conn::FrameWriter::new(&mut s)
            .hello("one more")
            .await
            .unwrap();
        let mut rd = tether_net::conn::FrameReader::new(r);
        rd.hello().await.unwrap();
        match rd.control::<Reply>().await.unwrap() {
            Reply::Error {
                kind: ErrorKind::Limit,
                message,
            } => assert!(message.contains("streams_per_connection"), "{message}"),
            other => panic!("stream beyond the limit: {other:?}"),
        }

        // The hello timeout: a stream that said nothing is closed with the
        // reason.
        let (_s, r) = held.pop().unwrap();
        let mut rd = tether_net::conn::FrameReader::new(r);
        let answer = tokio::time::timeout(limits.hello_timeout() + Duration::from_secs(5), async {
            rd.hello().await.unwrap();
            rd.control::<Reply>().await.unwrap()
        })
        .await
        .expect("the relay answers a silent stream at its hello timeout");
        match answer {
            Reply::Error { message, .. } => {
                assert!(message.contains("hello_timeout_ms"), "{message}")
            }
            other => panic!("silent stream: {other:?}"),
        }
        drop(held);

        // Connections: one identity opens one more than its limit.
        let mut conns = vec![c];
        let refused = loop {
            match Client::connect_relay(std::slice::from_ref(&relay), &mallory, 0).await {
                Ok((c, _)) => {
                    // The refusal comes as a close right after the handshake.
                    match c.nodes().await {
                        Ok(_) => conns.push(c),
                        Err(e) => break e.to_string(),
                    }
                }
                Err(e) => break e.to_string(),
            }
            assert!(
                conns.len() <= limits.connections_per_identity,
                "{} connections admitted",
                conns.len()
            );
        };
        assert_eq!(conns.len(), limits.connections_per_identity);
        assert!(refused.contains("connections_per_identity"), "{refused}");
    });
    // Another identity is not affected.
    let o = f.client(&[0], "alice", &["nodes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = f.scrape("r1").unwrap();
    for line in [
        "tether_limit_refusals_total{limit=\"connections_per_identity\"} 1",
        "tether_limit_refusals_total{limit=\"streams_per_connection\"} 1",
        "tether_limit_refusals_total{limit=\"hello_timeout\"} 1",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
}
