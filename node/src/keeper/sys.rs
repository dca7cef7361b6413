//! The few system calls the keeper's loop makes, on raw descriptors:
//! non-blocking reads and writes (`EINTR` retried, `EAGAIN` as
//! `WouldBlock`), gathered socket writes without `SIGPIPE`, `poll`, the
//! peer's user, and a descriptor that becomes readable when the session's
//! process ends.

use std::io::{self, IoSlice};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn retry(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        match check(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Puts `fd` in non-blocking mode.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller holds; no memory involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable for the call.
    retry(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` of `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, readable for the call.
    retry(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// Writes the slices in order with one `sendmsg(2)` on a socket; a peer
/// that left is `EPIPE`, never a signal.
pub fn send(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on unix; sendmsg only
    // reads through the pointer.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs`, alive for the call.
    retry(|| unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

/// `poll(2)` with a timeout in milliseconds (-1: none). An interrupted
/// wait returns 0, as if it timed out.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `fds`, writable for the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match check(r as isize) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        r => r,
    }
}

/// The user ID of the process at the other end of a unix socket.
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: a zeroed ucred is valid; getsockopt writes at most `len`
    // bytes into it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    check(r as isize).map(|_| cred.uid)
}

/// A descriptor that becomes readable when child `pid` ends: a pidfd
/// (Linux 5.3 and later), else the read end of a pipe that a `SIGCHLD`
/// handler writes to (the keeper has one child).
pub fn exit_watch(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    sigchld_pipe()
}

static SIGCHLD_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_FD.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; errno is saved around it.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, b"x".as_ptr().cast(), 1);
        *libc::__errno_location() = errno;
    }
}

fn sigchld_pipe() -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    SIGCHLD_FD.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    // SAFETY: installs a handler that only calls write(2); the child
    // may already have ended, so the caller checks once after this.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigchld as *const () as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        if libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::write(fds[1], b"x".as_ptr().cast(), 1);
        Ok(OwnedFd::from_raw_fd(fds[0]))
    }
}
