//! Replay of an ended session: its keeper is gone, so the daemon reads the
//! ring file itself and streams it with the same [`OutputEncoder`] the
//! keeper uses.

use super::entry::{Entry, Life};
use crate::ring::{Ring, RingError};
use crate::store::{self, ExitRecord};
use tether_net::conn::{FrameWriter, StreamError};
use tether_proto::output::{Ending, OutputEncoder, RingRead};
use tether_proto::{AttachSpec, Offset};
use tokio::io::AsyncWrite;

/// A ring file that could not be read: an empty ring at offset 0.
struct NoRing;

impl RingRead for NoRing {
    fn start(&self) -> Offset {
        Offset(0)
    }
    fn end(&self) -> Offset {
        Offset(0)
    }
    fn read_at(&self, _: Offset, _: usize) -> &[u8] {
        &[]
    }
}

/// Streams an ended session's ring to a client: `Attached`, the output
/// (with a `Gap` if the client asked for bytes overwritten), then `Exited`
/// or `Lost`; or only an error naming the ring file, if its header is
/// damaged.
pub(crate) async fn replay_ended<W: AsyncWrite + Unpin>(
    e: &Entry,
    spec: &AttachSpec,
    wr: &mut FrameWriter<W>,
) -> Result<(), StreamError> {
    let life = match store::read_json::<ExitRecord>(&e.paths.exit()) {
        Ok(Some(r)) => Life::Exited(r),
        _ => Life::Lost,
    };
    if !matches!(*e.life.borrow(), Life::Exited(_)) {
        e.life.send_replace(life.clone());
    }
    match Ring::open(&e.paths.ring()) {
        Ok(ring) => stream(e, spec, &ring, &life, wr).await,
        // An impossible header: refuse, rather than stream what it points
        // at (a megabyte of zeros for an end of 2^64 - 1).
        Err(err @ RingError::Corrupt { .. }) => {
            wr.control(&e.unreadable_ring(&err)).await?;
            Ok(())
        }
        Err(_) => stream(e, spec, &NoRing, &life, wr).await,
    }
}

async fn stream<W: AsyncWrite + Unpin>(
    e: &Entry,
    spec: &AttachSpec,
    ring: &impl RingRead,
    life: &Life,
    wr: &mut FrameWriter<W>,
) -> Result<(), StreamError> {
    let mut enc = OutputEncoder::new(spec.start, spec.follow, ring);
    wr.control(&enc.attached(e.static_info())).await?;
    // What the ring holds is all there is: the exit record may say more
    // if the keeper died before its last write reached the file.
    let end = ring.end();
    let ending = match life {
        Life::Exited(r) => Ending::Exited {
            end: r.end.min(end),
            status: r.status,
        },
        _ => Ending::Lost { end },
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if enc.encode(ring, super::WRITE_BATCH, &mut buf) == 0 && buf.is_empty() {
            break;
        }
        wr.send_raw(&buf).await?;
    }
    if let Some(last) = enc.closing(Some(&ending)) {
        wr.control(&last).await?;
    }
    Ok(())
}
