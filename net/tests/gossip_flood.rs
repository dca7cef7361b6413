//! A flood of junk datagrams at a member: every one counted, a handful
//! logged.
//!
//! A test binary of its own: it installs the process's global log
//! subscriber, and reads back everything logged.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use support::*;
use tether_net::gossip::Reject;

/// A log that the test reads back.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// 50,000 junk datagrams (half not even shaped like ours, half with our
/// magic and nonsense after it) are all counted, by reason, and make a
/// handful of log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_flood_is_counted_and_barely_logged() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let ms = Spec::new("m", "127.0.0.66", "flood cluster secret");
    let m_addr = ms.addr();
    let m = ms.start().await;
    let attacker = tokio::net::UdpSocket::bind("127.0.0.67:0").await.unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const TOTAL: u64 = 50_000;
    const BATCH: u64 = 100;
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        for i in sent..sent + BATCH {
            let len = 1 + (random() % 200) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| random() as u8).collect();
            if i % 2 == 0 {
                d[0] = b'x';
            } else {
                d.splice(0..0, *b"TGS2");
                d.resize(d.len().max(71), 0);
            }
            attacker.send_to(&d, m_addr).await.unwrap();
        }
        sent += BATCH;
        // A socket's receive queue is small: let the member catch up.
        wait_until("the member to count the batch", || async {
            m.stats.rejected() == sent
        })
        .await;
    }
    let elapsed = t0.elapsed();
    assert_eq!(m.stats.rejected_for(Reject::Malformed), TOTAL / 2);
    assert_eq!(m.stats.rejected_for(Reject::Forged), TOTAL / 2);
    assert_eq!(m.stats.accepted.load(Ordering::Relaxed), 0);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    // One line per reason, plus one per reason per 10 s that passed.
    let most = 2 * (1 + elapsed.as_secs() as usize / 10);
    assert!(
        (2..=most).contains(&lines.len()),
        "{} warnings in {elapsed:?} (at most {most}):\n{text}",
        lines.len()
    );
    for reason in ["malformed", "forged"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("gossip datagram rejected") && l.contains(reason)),
            "no line for {reason}:\n{text}"
        );
    }
    assert!(text.len() < 8 * 1024, "{} bytes of log", text.len());
    m.shutdown().await;
}
