//! The protocol against a real daemon and real keepers: read-only
//! clients, malformed frames, slow clients, several clients at once.

use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_proto::{
    AttachSpec, ErrorKind, Frame, Hello, Offset, Reply, Request, StartAt, StreamControl, WinSize,
};
use tether_testkit::{wait_until, TestNode};
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(20);
const TETHER: &str = env!("CARGO_BIN_EXE_tether");

fn attach(target: &str, read_only: bool, size: Option<WinSize>) -> Request {
    Request::Attach(AttachSpec {
        target: target.into(),
        start: StartAt::Oldest,
        read_only,
        follow: true,
        size,
        snapshot: None,
        sizing: tether_proto::Sizing::Latest,
    })
}

/// Reads output until it contains `text`, checking offsets; returns all.
async fn read_until<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
    expected: &mut Offset,
    text: &str,
) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&got).contains(text) {
            match rd.next().await.unwrap().expect("stream ended") {
                Frame::Output { offset, data } => {
                    assert_eq!(offset, *expected, "offsets must be contiguous");
                    *expected = Offset(offset.0 + data.len() as u64);
                    got.extend_from_slice(&data);
                }
                Frame::Control(_) => {}
                Frame::Input(_) => panic!("input from the node"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {text:?} in {:?}", String::from_utf8_lossy(&got)));
    got
}

async fn attached<R: tokio::io::AsyncRead + Unpin>(rd: &mut FrameReader<R>) -> Offset {
    match rd.control::<Reply>().await.unwrap() {
        Reply::Attached { start, .. } => start,
        other => panic!("expected Attached, got {other:?}"),
    }
}

/// The two ways a local client reaches a session: its keeper's socket
/// (the fast path), and QUIC to the daemon, as a remote client.
async fn both_paths(node: &TestNode) -> [(&'static str, tether_client::Client); 2] {
    let fast = node.client().await;
    assert!(fast.is_local_fast_path());
    let quic = node.client_quic().await;
    assert!(!quic.is_local_fast_path());
    [("unix sockets", fast), ("QUIC", quic)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_client_cannot_write_or_resize() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["cat"]);
    for (path, c) in both_paths(&node).await {
        read_only_refused(&node, &id, path, c).await;
    }
    // A read-write client can.
    node.ok(&["send", &id, "public-input\n"]);
    wait_until("echo", T, || {
        String::from_utf8_lossy(&node.tail(&id)).contains("public-input")
    });
    node.ok(&["kill", &id]);
}

async fn read_only_refused(node: &TestNode, id: &str, path: &str, c: tether_client::Client) {
    let (mut rd, mut wr) = c
        .open(&attach(id, true, Some(WinSize { cols: 33, rows: 11 })))
        .await
        .unwrap();
    attached(&mut rd).await;
    wr.control(&StreamControl::Resize(WinSize { cols: 44, rows: 12 }))
        .await
        .unwrap();
    wr.send(&Frame::Input(b"secret-input\n".to_vec()))
        .await
        .unwrap();
    let reply = loop {
        if let Frame::Control(b) = rd.next().await.unwrap().unwrap() {
            break tether_proto::msg::decode::<Reply>(&b).unwrap();
        }
    };
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::ReadOnly,
                ..
            }
        ),
        "{path}: {reply:?}"
    );
    let info = node.info(id);
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(80), Some(24)),
        "{path}: a read-only client resized the session"
    );
    assert!(
        !String::from_utf8_lossy(&node.tail(id)).contains("secret"),
        "{path}: a read-only client typed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_hurt_only_their_stream() {
    let node = TestNode::start(TETHER).unwrap();
    let id = node.new_session(&[], &["cat"]);
    let c = node.client().await;
    // Two healthy clients, attached.
    let (mut a_rd, _a_wr) = c.open(&attach(&id, false, None)).await.unwrap();
    let mut a_off = attached(&mut a_rd).await;
    let c2 = node.client().await;
    let (mut b_rd, _b_wr) = c2.open(&attach(&id, true, None)).await.unwrap();
    let mut b_off = attached(&mut b_rd).await;

    for (path, c) in both_paths(&node).await {
        malformed(&c, &id, path).await;
    }

    // The healthy clients, the session and the node go on.
    node.ok(&["send", &id, "still-alive\n"]);
    let a = read_until(&mut a_rd, &mut a_off, "still-alive").await;
    let b = read_until(&mut b_rd, &mut b_off, "still-alive").await;
    assert_eq!(a, b, "both clients see the same bytes");
    assert_eq!(node.state(&id), "running");
    node.ok(&["kill", &id]);
}

/// Garbage, an oversized frame, an undecodable control message and a
/// wrong version, each on its own stream of `c`.
async fn malformed(c: &tether_client::Client, id: &str, path: &str) {
    // 1. Garbage instead of a hello.
    let (mut s, r) = c.open_raw().await.unwrap();
    s.write_all(&[0xff, 1, 2, 3, 4, 5, 6]).await.unwrap();
    let mut rd = FrameReader::new(r);
    let _hello: Hello = rd.control().await.unwrap();
    let reply: Reply = rd.control().await.unwrap();
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ),
        "{path}: {reply:?}"
    );

    // 2. An oversized frame after a valid hello.
    let (s, r) = c.open_raw().await.unwrap();
    let mut w = FrameWriter::new(s);
    w.hello("test").await.unwrap();
    let mut huge = vec![3u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    w.send_raw(&huge).await.unwrap();
    let mut rd = FrameReader::new(r);
    let _hello: Hello = rd.control().await.unwrap();
    match rd.control::<Reply>().await.unwrap() {
        Reply::Error { message, .. } => assert!(message.contains("exceeds"), "{path}: {message}"),
        other => panic!("{path}: {other:?}"),
    }

    // 3. A control message that is not msgpack, in the middle of an attach.
    let (mut rd, mut w) = c.open(&attach(id, false, None)).await.unwrap();
    attached(&mut rd).await;
    w.send(&Frame::Control(vec![0xc1, 0xc1])).await.unwrap();
    let err = tokio::time::timeout(T, async {
        loop {
            if let Some(Frame::Control(b)) = rd.next().await.unwrap() {
                if let Ok(r @ Reply::Error { .. }) = tether_proto::msg::decode::<Reply>(&b) {
                    return r;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(
            err,
            Reply::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ),
        "{path}: {err:?}"
    );

    // 4. A wrong protocol version.
    let (s, r) = c.open_raw().await.unwrap();
    let mut w = FrameWriter::new(s);
    w.control(&Hello {
        version: 99,
        agent: "future".into(),
    })
    .await
    .unwrap();
    let mut rd = FrameReader::new(r);
    let _hello: Hello = rd.control().await.unwrap();
    match rd.control::<Reply>().await.unwrap() {
        Reply::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::Version);
            assert!(message.contains("upgrade"), "{path}: {message}");
        }
        other => panic!("{path}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_gets_a_gap_and_goes_on() {
    let node = TestNode::start(TETHER).unwrap();
    let n = 3_000_000;
    let id = node.new_session(
        &["--ring-size", "65536"],
        &["sh", "-c", &format!("read go; seq 1 {n}")],
    );
    let c = node.client().await;
    let (mut rd, _wr) = c.open(&attach(&id, false, None)).await.unwrap();
    let mut expected = attached(&mut rd).await;
    // Output starts; this client reads nothing until the session ended.
    node.ok(&["send", &id, "\n"]);
    let w = node.tether(&["wait", &id, "--timeout", "120"]);
    assert_eq!(
        w.status.code(),
        Some(0),
        "the session was never blocked by the client"
    );
    let end = node.info(&id)["end_offset"].as_u64().unwrap();
    let mut gaps = 0;
    let mut tail = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rd.next().await.unwrap().expect("stream ended early") {
                Frame::Output { offset, data } => {
                    assert_eq!(offset, expected);
                    expected = Offset(offset.0 + data.len() as u64);
                    tail.extend_from_slice(&data);
                    if tail.len() > 200_000 {
                        tail.drain(..100_000);
                    }
                }
                Frame::Control(b) => match tether_proto::msg::decode::<Reply>(&b).unwrap() {
                    Reply::Gap { missed, resume } => {
                        assert_eq!(missed, expected);
                        assert!(resume > missed);
                        expected = resume;
                        gaps += 1;
                    }
                    Reply::Exited { end: e, status } => {
                        assert_eq!(e.0, end);
                        assert_eq!(status.code, Some(0));
                        break;
                    }
                    other => panic!("{other:?}"),
                },
                Frame::Input(_) => panic!(),
            }
        }
    })
    .await
    .unwrap();
    assert!(gaps >= 1, "a client far behind must get a gap notice");
    assert_eq!(expected.0, end);
    let text = String::from_utf8_lossy(&tail).replace('\r', "");
    assert!(
        text.ends_with(&format!("{n}\n")),
        "the client caught up to the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_size_follows_the_latest_read_write_client_with_sigwinch() {
    let node = TestNode::start(TETHER).unwrap();
    let script = "trap 'echo WINCH $(stty size)' WINCH; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
    let id = node.new_session(&[], &["sh", "-c", script]);
    let c = node.client().await;
    let (mut rd, mut wr) = c
        .open(&attach(
            &id,
            false,
            Some(WinSize {
                cols: 100,
                rows: 30,
            }),
        ))
        .await
        .unwrap();
    let mut at = attached(&mut rd).await;
    read_until(&mut rd, &mut at, "WINCH 30 100").await;
    wr.control(&StreamControl::Resize(WinSize {
        cols: 120,
        rows: 40,
    }))
    .await
    .unwrap();
    read_until(&mut rd, &mut at, "WINCH 40 120").await;
    // A read-only client's size is ignored.
    let (mut ro, _ro_wr) = c
        .open(&attach(&id, true, Some(WinSize { cols: 50, rows: 10 })))
        .await
        .unwrap();
    attached(&mut ro).await;
    let info = node.info(&id);
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(120), Some(40))
    );
    // The latest read-write client to attach sets the size.
    let (mut rw2, _rw2_wr) = c
        .open(&attach(&id, false, Some(WinSize { cols: 90, rows: 20 })))
        .await
        .unwrap();
    attached(&mut rw2).await;
    read_until(&mut rd, &mut at, "WINCH 20 90").await;
    node.ok(&["kill", &id]);
}
