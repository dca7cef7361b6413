//! Fuzz bodies of the network layer's decoders, as `tether_proto::fuzz`
//! has the codec's: the stream reader every node, relay and keeper reads
//! peers with ([`FrameReader`]), the sealed gossip [`Opener`], and the
//! gossip records. Each takes arbitrary bytes and panics when a property
//! fails:
//! - [`frame_reader`]: the same frames and the same error whatever the
//!   cuts between the reads, with a frame limit below the protocol's; what
//!   a reader held of its connection's budget is given back when it goes;
//! - [`gossip_open`]: arbitrary bytes never open, never panic and never
//!   make the opener remember a sender;
//! - [`gossip_mutated`]: a sealed datagram opens once, its replay does
//!   not, and no change to it (a flipped byte, a cut) opens;
//! - [`gossip_records`]: a record that decodes encodes back to one that
//!   decodes to the same value.
//!
//! Run by the cargo-fuzz targets in `fuzz/` and by `net/tests/fuzz.rs` in
//! CI. Not a stable API.

use crate::conn::FrameReader;
use crate::gossip::seal::{ClusterKey, Keyring, Opener, Reject, Sealer, MAX_SENDERS};
use crate::limits::{Budget, LimitStats};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tether_proto::Frame;
use tokio::io::{AsyncRead, ReadBuf};

/// The frame limit [`frame_reader`] sets, below the protocol's.
pub const READER_MAX_FRAME: usize = 1000;

/// A byte stream that delivers `data` in reads cut at `cuts`.
struct Chunked<'a> {
    data: &'a [u8],
    cuts: Vec<usize>,
    at: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let at = self.at;
        let end = self
            .cuts
            .iter()
            .copied()
            .find(|&c| c > at)
            .unwrap_or(self.data.len());
        let n = (end - at).min(buf.remaining());
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Everything a reader gives for `data` read in pieces cut at `cuts`: the
/// frames, then how it ended (`None`: cleanly).
fn read_all(data: &[u8], cuts: &[usize], budget: &Budget) -> (Vec<Frame>, Option<String>) {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < data.len()).collect();
    cuts.sort_unstable();
    let stream = Chunked { data, cuts, at: 0 };
    let mut rd = FrameReader::new(stream)
        .with_max_frame(READER_MAX_FRAME)
        .with_budget(budget.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let mut frames = Vec::new();
    let end = rt.block_on(async {
        loop {
            match rd.next().await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            }
        }
    });
    (frames, end)
}

/// The stream reader: see the module doc. Reads of one byte, of seven,
/// and all at once must agree.
pub fn frame_reader(data: &[u8]) {
    let every = |step: usize| (step..data.len()).step_by(step).collect::<Vec<_>>();
    frame_reader_cut(data, &every(1));
    frame_reader_cut(data, &every(7));
}

/// [`frame_reader`] with the reads cut at `cuts`, compared to one read.
pub fn frame_reader_cut(data: &[u8], cuts: &[usize]) {
    let budget = Budget::new(usize::MAX / 2, Arc::new(LimitStats::default()));
    let whole = read_all(data, &[], &budget);
    assert_eq!(budget.held(), 0, "a reader gives its charge back");
    let split = read_all(data, cuts, &budget);
    assert_eq!(budget.held(), 0, "a reader gives its charge back");
    assert_eq!(whole, split, "cut at {cuts:?}");
    for f in &whole.0 {
        assert!(f.encode().len() <= tether_proto::frame::HEADER_LEN + READER_MAX_FRAME);
    }
    // A budget smaller than one frame: the reader refuses, and still
    // gives back what it held.
    let small = Budget::new(16, Arc::new(LimitStats::default()));
    let (frames, _) = read_all(data, cuts, &small);
    assert_eq!(small.held(), 0);
    assert!(
        whole.0.starts_with(&frames),
        "a budget only cuts the stream short"
    );
}

/// The address every fuzzed datagram is sent to.
fn own() -> SocketAddr {
    ([127, 0, 0, 1], 7000).into()
}

/// The largest payload [`gossip_mutated`] seals: one that fits a
/// datagram uncompressed.
const MAX_PAYLOAD: usize = 60_000;

/// A fixed time, in ms since the epoch.
const NOW_MS: u64 = 1_700_000_000_000;

fn opener() -> Opener {
    Opener::new(
        Keyring::new(ClusterKey::from_secret(b"fuzz secret")),
        [own()],
    )
}

/// Arbitrary bytes at a gossip socket: see the module doc.
pub fn gossip_open(data: &[u8]) {
    let mut o = opener();
    assert!(o.open(data, NOW_MS).is_err(), "arbitrary bytes opened");
    assert_eq!(o.senders(), 0);
    let _ = crate::gossip::seal::receiver_of(data);
}

/// A sealed datagram of `data`'s payload, then changed as `data`'s first
/// bytes say: see the module doc.
pub fn gossip_mutated(data: &[u8]) {
    let (ctl, payload) = data.split_at(data.len().min(4));
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let mut sealer = Sealer::new(&ClusterKey::from_secret(b"fuzz secret"), 7);
    let mut d = Vec::new();
    sealer
        .seal(NOW_MS, own(), payload, &mut d)
        .expect("a fuzz input fits a datagram");
    let mut o = opener();
    let opened = o.open(&d, NOW_MS).expect("a sealed datagram opens");
    assert_eq!(opened.payload, payload);
    assert_eq!(o.open(&d, NOW_MS), Err(Reject::Replayed));
    assert!(o.senders() <= MAX_SENDERS);
    let [a, b, c, e] = [0, 1, 2, 3].map(|i| ctl.get(i).copied().unwrap_or(0));
    let at = usize::from(u16::from_be_bytes([a, b])) % d.len();
    let mut flipped = d.clone();
    flipped[at] ^= c | 1;
    assert!(opener().open(&flipped, NOW_MS).is_err(), "flip at {at}");
    let cut = at.min(d.len() - 1);
    assert!(opener().open(&d[..cut], NOW_MS).is_err(), "cut at {cut}");
    let mut longer = d.clone();
    longer.push(e);
    assert!(opener().open(&longer, NOW_MS).is_err(), "a byte appended");
}

/// Gossip records, JSON as chitchat carries them: see the module doc.
pub fn gossip_records(data: &[u8]) {
    use tether_proto::gossip::{NodeRecord, SessionRecord};
    if let Ok(r) = serde_json::from_slice::<NodeRecord>(data) {
        let j = serde_json::to_string(&r).expect("a record encodes");
        assert_eq!(serde_json::from_str::<NodeRecord>(&j).ok(), Some(r));
    }
    if let Ok(r) = serde_json::from_slice::<SessionRecord>(data) {
        let j = serde_json::to_string(&r).expect("a record encodes");
        assert_eq!(serde_json::from_str::<SessionRecord>(&j).ok(), Some(r));
    }
}
