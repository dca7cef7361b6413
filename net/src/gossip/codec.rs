//! chitchat's envelope codec, reached through two loopback sockets that
//! no one else can reach.
//!
//! chitchat 0.13 keeps its codec to itself: `ChitchatEnvelope::serialize`
//! and `deserialize` are `pub(crate)`, and the digest inside a Syn or a
//! SynAck has no public codec at all (so we cannot write our own). The only
//! public code that turns an envelope into bytes and back is its own
//! `transport::UdpSocket`, which binds a real UDP socket. So a member holds
//! that socket (`inner`) and one of ours (`tap`), both on 127.0.0.1:
//!
//! - encode: `inner` sends the envelope to `tap`, which reads the bytes;
//! - decode: `tap` sends bytes that passed the seal to `inner`, whose
//!   `recv` decodes them.
//!
//! Each of the two is `connect`ed to the other, so the kernel drops a
//! datagram from any other source before it is queued. A local user could
//! only get one in by forging a 127.0.0.1 source address, which takes
//! CAP_NET_RAW (root, who can read the cluster secret anyway). chitchat's
//! socket is created before we can connect it (it binds inside
//! `UdpSocket::open`, and exposes no file descriptor), so we find it by its
//! address among the process's descriptors, connect it, and then drain
//! whatever reached it in between. `net/tests/gossip_local_attacker.rs`
//! sends plaintext chitchat to every UDP socket of the process.

use chitchat::transport::{RecvOutcome, Socket};
use chitchat::ChitchatEnvelope;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;
use tokio::time::Instant;

/// How long a loopback hop through chitchat's socket may take. A hop is a
/// copy within the kernel; what takes longer is a payload chitchat could
/// not decode (it drops those silently and waits for the next one).
const HOP_TIMEOUT: Duration = Duration::from_millis(500);

/// Where this process's descriptors are listed.
#[cfg(target_os = "linux")]
const FD_DIR: &str = "/proc/self/fd";
#[cfg(not(target_os = "linux"))]
const FD_DIR: &str = "/dev/fd";

/// chitchat's codec behind a private pair of loopback sockets.
pub(crate) struct Codec {
    inner: chitchat::transport::UdpSocket,
    tap: tokio::net::UdpSocket,
    /// Set while a payload handed to `inner` is not read back: the peer it
    /// came from, and when to give up on it.
    pending: Option<(SocketAddr, Instant)>,
    buf: Vec<u8>,
}

/// A payload that passed the seal but that chitchat did not decode.
pub(crate) struct Undecodable {
    /// The peer it came from.
    pub from: SocketAddr,
}

impl Codec {
    /// Opens the two sockets and connects each to the other.
    pub(crate) async fn open() -> anyhow::Result<Codec> {
        let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
        let hint = "gossip needs two UDP sockets on 127.0.0.1 for chitchat's codec; check that the loopback interface is up";
        let tap = tokio::net::UdpSocket::bind(lo)
            .await
            .map_err(|e| anyhow::anyhow!("binding 127.0.0.1:0/udp: {e}; {hint}"))?;
        let inner = chitchat::transport::UdpSocket::open(lo)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}; {hint}"))?;
        let inner_addr = inner.local_addr()?;
        let tap_addr = tap.local_addr()?;
        tap.connect(inner_addr).await?;
        connect_socket_bound_to(inner_addr, tap_addr).map_err(|e| {
            anyhow::anyhow!(
                "cannot restrict chitchat's codec socket {inner_addr} to this process: {e}; \
                 gossip refuses to run with a socket other local users could write to \
                 (this needs {FD_DIR} to list the process's descriptors)"
            )
        })?;
        let mut buf = vec![0u8; super::seal::MAX_DATAGRAM];
        while tap.try_recv(&mut buf).is_ok() {}
        Ok(Codec {
            inner,
            tap,
            pending: None,
            buf,
        })
    }

    /// The bytes of `env`, as chitchat serializes it.
    pub(crate) async fn encode(&mut self, env: ChitchatEnvelope) -> anyhow::Result<&[u8]> {
        // Drop what a cancelled encode left behind.
        while self.tap.try_recv(&mut self.buf).is_ok() {}
        self.inner.send(self.tap.local_addr()?, env).await?;
        let n = tokio::time::timeout(HOP_TIMEOUT, self.tap.recv(&mut self.buf))
            .await
            .map_err(|_| anyhow::anyhow!("chitchat's serializer did not answer over loopback"))??;
        Ok(&self.buf[..n])
    }

    /// Hands a payload that passed the seal to chitchat's decoder; read
    /// the envelope back with [`Codec::decoded`].
    pub(crate) fn submit(&mut self, from: SocketAddr, payload: &[u8]) -> std::io::Result<()> {
        self.tap.try_send(payload)?;
        self.pending = Some((from, Instant::now() + HOP_TIMEOUT));
        Ok(())
    }

    /// The envelope of the submitted payload, with its true peer; `None`
    /// if nothing is pending. Cancel-safe: a cancelled call leaves the
    /// payload pending, with its original deadline.
    pub(crate) async fn decoded(&mut self) -> Option<Result<RecvOutcome, Undecodable>> {
        let (from, deadline) = self.pending?;
        let r = tokio::time::timeout_at(deadline, self.inner.recv()).await;
        self.pending = None;
        Some(match r {
            Ok(Ok(mut out)) => {
                out.from_addr = from;
                Ok(out)
            }
            _ => Err(Undecodable { from }),
        })
    }
}

/// Connects this process's UDP socket bound to `local` to `peer`, then
/// drops what it had queued.
fn connect_socket_bound_to(local: SocketAddr, peer: SocketAddr) -> std::io::Result<()> {
    for entry in std::fs::read_dir(FD_DIR)? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: `fd` was open when listed. If another thread closes it
        // meanwhile, the two queries below fail or describe whatever reuses
        // the number; either way they change nothing. We `connect` only a
        // UDP socket bound to `local`, which is chitchat's: our caller
        // holds it open, and it was bound without SO_REUSEADDR, so no other
        // socket can share that address.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        if sock.r#type().ok() != Some(socket2::Type::DGRAM) {
            continue;
        }
        if sock.local_addr().ok().and_then(|a| a.as_socket()) != Some(local) {
            continue;
        }
        sock.connect(&peer.into())?;
        // The socket is non-blocking (tokio's): read until it is empty.
        let mut scrap = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        while sock.recv(&mut scrap).is_ok() {}
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no UDP socket bound to {local} among the process's descriptors"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket of this process bound to an address is found and connected;
    /// what was queued before is dropped, and afterwards only its peer gets
    /// through.
    #[tokio::test]
    async fn a_socket_is_found_by_its_address_and_closed_to_others() {
        let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = target.local_addr().unwrap();
        stranger.send_to(b"early", t).unwrap();
        connect_socket_bound_to(t, peer.local_addr().unwrap()).unwrap();
        stranger.send_to(b"late", t).unwrap();
        peer.send_to(b"peer", t).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = target.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"peer"[..], peer.local_addr().unwrap())
        );
        assert!(target.recv_from(&mut buf).is_err(), "nothing else queued");
        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = unbound.local_addr().unwrap();
        drop(unbound);
        assert!(connect_socket_bound_to(gone, t).is_err());
    }
}
