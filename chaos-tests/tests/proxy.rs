//! The fault proxy on real UDP sockets on loopback: datagrams pass, are
//! delayed, lost and partitioned as set, and the faults change while
//! traffic flows.

use chaos_tests::{FaultProxy, Faults, Link};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// An echo server on 127.0.0.1; returns its address.
async fn echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Sends `n` numbered datagrams through `proxy` and collects the echoes
/// that come back within `wait` after the last, reading while it sends (a
/// socket's buffer holds only a few hundred datagrams).
async fn round(proxy: SocketAddr, n: u32, wait: Duration) -> Vec<u32> {
    let c = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    c.connect(proxy).await.unwrap();
    let rx = c.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(Ok(len)) = tokio::time::timeout(wait, rx.recv(&mut buf)).await {
            if len == 4 {
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        got
    });
    for i in 0..n {
        c.send(&i.to_be_bytes()).await.unwrap();
        if i % 16 == 15 {
            // Paced, so that the kernel's socket buffers drop nothing:
            // every loss is the proxy's.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    reader.await.unwrap()
}

#[tokio::test]
async fn datagrams_pass_drop_and_come_back_as_set() {
    let server = echo().await;
    let p = FaultProxy::start("127.0.0.1:0".parse().unwrap(), server, 11)
        .await
        .unwrap();
    let quiet = Duration::from_millis(300);

    // No faults: all 200 come back, in order.
    let got = round(p.addr, 200, quiet).await;
    assert_eq!(got, (0..200).collect::<Vec<_>>());

    // A partition one way: nothing comes back; healed: all again.
    p.set(Link {
        up: Faults::none(),
        down: Faults::blackhole(),
    });
    assert!(round(p.addr, 50, quiet).await.is_empty());
    p.heal();
    assert_eq!(round(p.addr, 50, quiet).await.len(), 50);

    // 30% loss each way: about half make the round trip, none twice.
    p.set(Link::both(Faults {
        loss: 0.3,
        ..Faults::none()
    }));
    let got = round(p.addr, 1000, quiet).await;
    assert!(
        (400..600).contains(&got.len()),
        "{} of 1000 came back",
        got.len()
    );
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no datagram came back twice");

    // Reordering and duplication: every datagram comes back, some out of
    // order, some twice.
    p.set(Link::both(Faults {
        delay: Duration::from_millis(5),
        reorder: 0.2,
        duplicate: 0.2,
        ..Faults::none()
    }));
    let got = round(p.addr, 300, quiet).await;
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, (0..300).collect::<Vec<_>>());
    assert!(got.len() > 300, "duplicates: {} datagrams", got.len());
    assert!(
        got.windows(2).any(|w| w[1] < w[0]),
        "some came back out of order"
    );
    assert!(p.counts().duplicated > 0 && p.counts().dropped > 0);
}
