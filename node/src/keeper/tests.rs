//! The follower's stream over a real socket that takes little at a time:
//! every byte once, in order, from the ring as it was when the frame was
//! promised, gaps told, the stream closed with the right reply.

use super::out::{Flow, Follower};
use crate::ring::Ring;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use tether_proto::output::Ending;
use tether_proto::{msg, ExitStatus, Frame, Offset, Reply, StartAt};

/// A socket pair whose writing end is non-blocking with a small buffer.
fn narrow_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let size: libc::c_int = 4096;
    // SAFETY: sets an int socket option from a valid pointer.
    let r = unsafe {
        libc::setsockopt(
            a.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    (a, b)
}

/// What a client made of the stream so far.
#[derive(Default)]
struct Seen {
    wire: Vec<u8>,
    /// (offset, bytes) of each output frame, and the control replies.
    output: Vec<(u64, Vec<u8>)>,
    replies: Vec<Reply>,
}

impl Seen {
    fn take(&mut self, from: &mut UnixStream, max: usize) {
        let mut buf = vec![0u8; max];
        from.set_nonblocking(true).unwrap();
        if let Ok(n) = from.read(&mut buf) {
            self.wire.extend_from_slice(&buf[..n]);
        }
        self.decode();
    }

    /// Everything left, once the writer is gone.
    fn rest(&mut self, from: &mut UnixStream) {
        from.set_nonblocking(false).unwrap();
        from.read_to_end(&mut self.wire).unwrap();
        self.decode();
        assert!(self.wire.is_empty(), "no half frame at the end");
    }

    fn decode(&mut self) {
        while let Some((f, used)) = Frame::decode(&self.wire).unwrap() {
            self.wire.drain(..used);
            match f {
                Frame::Output { offset, data } => self.output.push((offset.0, data)),
                Frame::Control(b) => self.replies.push(msg::decode(&b).unwrap()),
                Frame::Input(_) => panic!("input from the keeper"),
            }
        }
    }
}

/// Pumps until the follower is idle, waits or closes, flushing notices
/// and promised rests into the socket as the connection does.
fn pump(
    f: &mut Follower,
    fd: i32,
    ring: &Ring,
    ending: Option<&Ending>,
    pending: &mut Vec<u8>,
) -> Option<Reply> {
    let mut heads = Vec::new();
    loop {
        if !pending.is_empty() {
            let n = super::sys::send(fd, &[std::io::IoSlice::new(pending)]).unwrap_or(0);
            pending.drain(..n);
            if !pending.is_empty() {
                return None;
            }
        }
        match f.pump(fd, ring, ending, pending, &mut heads).unwrap() {
            Flow::Flush => continue,
            Flow::Wait | Flow::More | Flow::Idle => return None,
            Flow::Close(r) => return Some(*r),
        }
    }
}

fn model(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) ^ seed) as u8)
        .collect()
}

#[test]
fn a_slow_socket_gets_every_byte_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = Ring::create(&dir.path().join("ring"), 1 << 20).unwrap();
    let data = model(300_000, 7);
    ring.append(&data[..200_000]);
    let (a, mut b) = narrow_pair();
    let (mut f, start) = Follower::new(StartAt::Oldest, false, &ring);
    assert_eq!(start, Offset(0));
    let mut pending = Vec::new();
    let mut seen = Seen::default();
    let mut closed = None;
    for round in 0..100_000 {
        if round == 50 {
            // More output meanwhile: a stream that does not follow stops
            // at the end it saw.
            ring.append(&data[200_000..]);
        }
        closed = pump(&mut f, a.as_raw_fd(), &ring, None, &mut pending);
        seen.take(&mut b, 1000 + round % 3000);
        if closed.is_some() && pending.is_empty() {
            break;
        }
    }
    drop(a);
    seen.rest(&mut b);
    assert_eq!(
        closed,
        Some(Reply::End {
            offset: Offset(200_000)
        })
    );
    let mut at = 0;
    for (o, bytes) in &seen.output {
        assert_eq!(*o, at, "no hole, no repeat");
        assert!(bytes.len() <= tether_proto::frame::MAX_OUTPUT_CHUNK);
        assert_eq!(&bytes[..], &data[at as usize..at as usize + bytes.len()]);
        at += bytes.len() as u64;
    }
    assert_eq!(at, 200_000);
    assert!(seen.replies.is_empty());
}

#[test]
fn a_promised_frame_keeps_its_bytes_when_the_ring_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * 1024;
    let mut ring = Ring::create(&dir.path().join("ring"), cap).unwrap();
    let data = model(cap as usize * 4, 3);
    ring.append(&data[..cap as usize]);
    let (a, mut b) = narrow_pair();
    let (mut f, _) = Follower::new(StartAt::Offset(Offset(0)), true, &ring);
    let mut pending = Vec::new();
    // The socket takes part of the first frame; the rest is promised.
    pump(&mut f, a.as_raw_fd(), &ring, None, &mut pending);
    assert!(!pending.is_empty(), "a partial frame is kept aside");
    // The session writes three rings' worth meanwhile.
    let mut w = cap as usize;
    while w < data.len() {
        ring.append(&data[w..w + 4096]);
        w += 4096;
    }
    let status = ExitStatus {
        code: Some(0),
        signal: None,
    };
    let ending = Ending::Exited {
        end: ring.end(),
        status,
    };
    let mut seen = Seen::default();
    let mut closed = None;
    for _ in 0..100_000 {
        closed = pump(&mut f, a.as_raw_fd(), &ring, Some(&ending), &mut pending);
        seen.take(&mut b, 5000);
        if closed.is_some() && pending.is_empty() {
            break;
        }
    }
    drop(a);
    seen.rest(&mut b);
    // The first frame arrives whole and as it was; then the gap; then the
    // ring from its start to the end; then the exit.
    let (o, first) = &seen.output[0];
    assert_eq!(*o, 0);
    assert_eq!(&first[..], &data[..first.len()]);
    let resume = ring.start();
    assert_eq!(
        seen.replies[0],
        Reply::Gap {
            missed: Offset(first.len() as u64),
            resume
        }
    );
    let mut at = resume.0;
    for (o, bytes) in &seen.output[1..] {
        assert_eq!(*o, at);
        assert_eq!(&bytes[..], &data[at as usize..at as usize + bytes.len()]);
        at += bytes.len() as u64;
    }
    assert_eq!(at, ring.end().0);
    assert_eq!(
        closed,
        Some(Reply::Exited {
            end: ring.end(),
            status
        })
    );
}

#[test]
fn a_round_of_pty_reads_fits_in_the_ring_headroom() {
    use super::{pty_round, PTY_ROUND};
    // The default ring gets the full round; a small one a quarter of it.
    assert_eq!(pty_round(crate::ring::DEFAULT_RING_SIZE), PTY_ROUND);
    assert_eq!(pty_round(8192), 2048);
    assert_eq!(pty_round(crate::ring::MIN_RING_SIZE), 1024);
    for cap in [
        crate::ring::MIN_RING_SIZE,
        8192,
        1 << 20,
        crate::ring::MAX_RING_SIZE,
    ] {
        assert!(pty_round(cap) as u64 <= crate::grace::headroom(cap));
    }
}
