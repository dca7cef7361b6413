//! Bad input for live drills (issue #11, scenario 8): what a hostile or
//! broken peer throws at a node's or a relay's sockets.
//!
//! - [`junk_datagrams`]: random, truncated and oversized datagrams, and
//!   random garbage that looks like QUIC (long headers of any version,
//!   short headers), at a QUIC port;
//! - [`gossip_forgeries`]: datagrams at a gossip port with a bad tag, of
//!   another cluster, truncated, without the magic, replayed, stale and
//!   addressed to another member;
//! - [`bad_streams`]: QUIC streams, on a connection made with a valid
//!   certificate, that carry malformed, truncated and oversized frames.
//!   [`never_finishing`] opens streams that start a large frame and never
//!   end it, held until the caller drops them.
//!
//! Everything is bounded in count and seeded ([`Rng`]), so a drill throws
//! the same bytes each run. Sends are paced (a yield every few datagrams)
//! so that the kernel's socket buffers, not the endpoint, do not drop
//! them: what the endpoint counts is then what was thrown.

use crate::rng::Rng;
use std::net::SocketAddr;
use std::time::Duration;
use tether_net::gossip::seal::{self, ClusterKey, Sealer};
use tether_proto::{frame::MAX_FRAME_SIZE, msg, Frame, Hello, Request, StreamControl, WinSize};
use tokio::net::UdpSocket;

/// How long a bad stream waits for the peer's answer before giving up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Datagrams sent between two yields.
const BURST: usize = 32;
/// Copies of the authentic gossip datagram sent, at most.
const MAX_REPLAYS: usize = 50;

/// What a thrower sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thrown {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Thrown {
    async fn send(&mut self, sock: &UdpSocket, d: &[u8], to: SocketAddr) -> std::io::Result<()> {
        sock.send_to(d, to).await?;
        self.datagrams += 1;
        self.bytes += d.len() as u64;
        if self.datagrams.is_multiple_of(BURST as u64) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// `n` junk datagrams at `to`, from `sock`: in turn random (1-1500
/// bytes), truncated (1-20), oversized (up to the largest UDP payload,
/// one in four of these), a QUIC long header (Initial-sized, any version,
/// connection ID lengths up to 255) and a QUIC short header.
pub async fn junk_datagrams(
    sock: &UdpSocket,
    to: SocketAddr,
    n: usize,
    rng: &mut Rng,
) -> std::io::Result<Thrown> {
    let mut t = Thrown::default();
    for i in 0..n {
        let d = match i % 5 {
            0 => rng.bytes_in(1, 1501),
            1 => rng.bytes_in(1, 21),
            2 if i % 20 == 2 => rng.bytes_in(1501, seal::MAX_DATAGRAM + 1),
            2 => rng.bytes_in(1200, 1500),
            3 => quic_long_header(rng),
            _ => {
                // Short header: fixed bit set, an 8-byte connection ID
                // (quinn's length) no connection has, then junk.
                let mut d = vec![0x40 | (rng.next_u64() as u8 & 0x3f)];
                d.extend(rng.bytes_in(8, 1208));
                d
            }
        };
        t.send(sock, &d, to).await?;
    }
    Ok(t)
}

/// A datagram that parses as the start of a QUIC long-header packet: a
/// type, a version (QUIC v1, a version-negotiation 0, or anything), and
/// connection IDs of random lengths, padded to an Initial's 1200 bytes.
fn quic_long_header(rng: &mut Rng) -> Vec<u8> {
    let mut d = vec![0xc0 | (rng.next_u64() as u8 & 0x3f)];
    let version: u32 = match rng.below(3) {
        0 => 1,
        1 => 0,
        _ => rng.next_u64() as u32,
    };
    d.extend(version.to_be_bytes());
    for _ in 0..2 {
        let len = if rng.below(4) == 0 {
            rng.below(256)
        } else {
            rng.below(21)
        };
        d.push(len as u8);
        d.extend(rng.bytes(len));
    }
    // A token length and a packet length (varints), then junk.
    d.extend(rng.bytes(4));
    let pad = 1200usize.saturating_sub(d.len()) + rng.below(100);
    d.extend(rng.bytes(pad));
    d
}

/// What [`gossip_forgeries`] sent, by the reason the member should
/// reject each for (the metrics' `reason` labels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgeries {
    /// A flipped byte, or another cluster's secret: `forged`.
    pub forged: u64,
    /// Too short, no magic: `malformed`.
    pub malformed: u64,
    /// Copies of one authentic datagram, after the first: `replayed`.
    pub replayed: u64,
    /// Authentic, sent ten minutes ago: `stale`.
    pub stale: u64,
    /// Authentic, addressed to another member: `misdirected`.
    pub misdirected: u64,
    /// Everything, with the one authentic datagram.
    pub total: Thrown,
}

/// `n` rounds of bad gossip at `to`, a member of the cluster of `secret`,
/// then one authentic datagram addressed to `to` (its payload is junk,
/// which chitchat drops: counted as `malformed` too) and up to
/// [`MAX_REPLAYS`] copies of it. Every datagram but that one is refused
/// by the seal. Returns what was sent, by expected reason.
pub async fn gossip_forgeries(
    sock: &UdpSocket,
    to: SocketAddr,
    secret: &[u8],
    n: usize,
    rng: &mut Rng,
) -> std::io::Result<Forgeries> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64;
    let key = ClusterKey::from_secret(secret);
    let mut sealer = Sealer::new(
        &key,
        u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
    );
    let mut other = Sealer::new(&ClusterKey::from_secret(b"another cluster"), 1);
    let elsewhere: SocketAddr = ([127, 0, 0, 254], 9).into();
    let seal = |s: &mut Sealer, time: u64, to: SocketAddr, len: usize, rng: &mut Rng| {
        let mut d = Vec::new();
        s.seal(time, to, &rng.bytes(len), &mut d)
            .expect("a small payload fits");
        d
    };
    let mut f = Forgeries::default();
    for _ in 0..n {
        let len = 1 + rng.below(1000);
        let mut d = seal(&mut sealer, now, to, len, rng);
        let at = 4 + rng.below(d.len() - 4);
        d[at] ^= 1 << rng.below(8);
        f.total.send(sock, &d, to).await?;
        let len = 1 + rng.below(1000);
        let d = seal(&mut other, now, to, len, rng);
        f.total.send(sock, &d, to).await?;
        f.forged += 2;

        let mut short = seal::MAGIC.to_vec();
        short.extend(rng.bytes_in(0, seal::OVERHEAD - 4));
        f.total.send(sock, &short, to).await?;
        let mut nomagic = rng.bytes_in(1, 1401);
        nomagic[0] = b'X';
        f.total.send(sock, &nomagic, to).await?;
        f.malformed += 2;

        let d = seal(&mut sealer, now - 600_000, to, 32, rng);
        f.total.send(sock, &d, to).await?;
        f.stale += 1;
        let d = seal(&mut sealer, now, elsewhere, 32, rng);
        f.total.send(sock, &d, to).await?;
        f.misdirected += 1;
    }
    // Last, as the member holds its socket while chitchat fails to
    // decode the authentic one (up to half a second): a few small copies
    // of it fit the socket's buffer meanwhile.
    let authentic = seal(&mut sealer, now, to, 64, rng);
    f.total.send(sock, &authentic, to).await?;
    for _ in 0..n.min(MAX_REPLAYS) {
        f.total.send(sock, &authentic, to).await?;
        f.replayed += 1;
    }
    Ok(f)
}

/// How the peer answered the bad streams of [`bad_streams`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamAnswers {
    /// Streams opened.
    pub streams: u64,
    /// Answered with bytes (an `Error` reply) and closed.
    pub answered: u64,
    /// Closed or reset without an answer.
    pub closed: u64,
    /// No answer within the timeout (the stream was then dropped).
    pub silent: u64,
}

/// The bad streams [`bad_streams`] sends, one of each per round.
fn bad_payloads(rng: &mut Rng) -> Vec<Vec<u8>> {
    let frame = |f: Frame| f.encode();
    let hello = frame(Frame::Control(msg::encode(&Hello::current("abuse"))));
    let with_hello = |rest: Vec<u8>| [hello.clone(), rest].concat();
    let control = |m: Vec<u8>| frame(Frame::Control(m));
    let tail = rng.bytes(64);
    let huge = |len: u32| [&[1u8][..], &len.to_be_bytes(), &tail].concat();
    let big_target = "x".repeat(MAX_FRAME_SIZE - 100);
    vec![
        rng.bytes_in(1, 4097),
        hello[..hello.len() / 2].to_vec(),
        huge(u32::MAX),
        huge(MAX_FRAME_SIZE as u32 + 1),
        vec![9, 0, 0, 0, 4, 1, 2, 3, 4],
        vec![2, 0, 0, 0, 3, 1, 2, 3],
        frame(Frame::Input(rng.bytes(100))),
        with_hello(control(rng.bytes_in(1, 201))),
        with_hello(control(msg::encode(&Hello {
            version: 999,
            agent: "future".into(),
        }))),
        with_hello(control(msg::encode(&Request::Info { target: big_target }))),
        with_hello(control(msg::encode(&StreamControl::Resize(WinSize {
            cols: u16::MAX,
            rows: u16::MAX,
        })))),
        with_hello(frame(Frame::Output {
            offset: tether_proto::Offset(u64::MAX),
            data: rng.bytes(10),
        })),
        with_hello(control(msg::encode(&Request::Route(
            tether_proto::Route::Session {
                target: "\u{0}\u{ffff}@@".into(),
            },
        )))),
    ]
}

/// `rounds` rounds of bad streams on `conn`, each stream finished after
/// its bytes, its answer read (bounded) and dropped; see the module doc.
pub async fn bad_streams(
    conn: &quinn::Connection,
    rounds: usize,
    rng: &mut Rng,
) -> anyhow::Result<StreamAnswers> {
    let mut a = StreamAnswers::default();
    for _ in 0..rounds {
        for p in bad_payloads(rng) {
            let (mut send, mut recv) = conn.open_bi().await?;
            a.streams += 1;
            // The peer may reset the stream before it has read it all.
            let _ = send.write_all(&p).await;
            let _ = send.finish();
            match tokio::time::timeout(ANSWER_TIMEOUT, recv.read_to_end(64 * 1024)).await {
                Err(_) => a.silent += 1,
                Ok(Ok(b)) if !b.is_empty() => a.answered += 1,
                Ok(_) => a.closed += 1,
            }
        }
    }
    Ok(a)
}

/// `n` streams on `conn` that each announce a frame of the protocol's
/// largest size, send `send` bytes of it, and never finish; returned to
/// be held (dropping them resets them).
pub async fn never_finishing(
    conn: &quinn::Connection,
    n: usize,
    send: usize,
) -> anyhow::Result<Vec<(quinn::SendStream, quinn::RecvStream)>> {
    let mut held = Vec::new();
    let mut start = vec![3u8];
    start.extend((MAX_FRAME_SIZE as u32).to_be_bytes());
    start.resize(send.min(MAX_FRAME_SIZE), b'z');
    for _ in 0..n {
        let (mut s, r) = conn.open_bi().await?;
        // Refused once the connection's budget is spent: that is the
        // point; the stream is held all the same.
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, s.write_all(&start)).await;
        held.push((s, r));
    }
    Ok(held)
}
