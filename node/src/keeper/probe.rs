//! Who is in the foreground of the session's terminal, and whether it
//! waits for input: from the kernel's view of the PTY and the processes,
//! never from the text on the screen.
//!
//! - The foreground process group is the PTY's (`tcgetpgrp` on the
//!   master).
//! - The line discipline's flags (`ICANON`, `ECHO`) say whether a line is
//!   being edited by the kernel (a shell's `read`, a password prompt) or
//!   the program reads keys itself (an editor, a pager, a REPL).
//! - The group waits for input when none of its processes is running or
//!   stopped, and one is blocked in a `read` of the terminal, or in a
//!   `poll`-family call while holding the terminal open (how editors,
//!   pagers and readline wait for keys). A `sleep` or a compiler is in
//!   neither, so a command that merely takes long is not waiting.

use std::os::fd::RawFd;
use tether_proto::{Foreground, Offset};

/// The foreground of the PTY whose master is `master`, whose session
/// `leader` started, if it has one.
pub fn probe(master: RawFd, leader: u32, offset: Offset) -> Option<Foreground> {
    // SAFETY: plain ioctl on a descriptor the keeper owns.
    let pgrp = unsafe { libc::tcgetpgrp(master) };
    if pgrp <= 0 {
        return None;
    }
    let pgrp = pgrp as u32;
    let name = std::fs::read_to_string(format!("/proc/{pgrp}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    // SAFETY: a zeroed termios is a valid out-parameter.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let flags = (unsafe { libc::tcgetattr(master, &mut t) } == 0).then_some(t.c_lflag);
    let canonical = flags.is_some_and(|f| f & libc::ICANON != 0);
    let echo = flags.is_some_and(|f| f & libc::ECHO != 0);
    let awaiting_input =
        tty_path(master).is_some_and(|tty| waits_for_input(pgrp, &tty, &session_pids(leader)));
    Some(Foreground {
        pid: pgrp,
        name,
        awaiting_input,
        canonical,
        echo,
        offset,
    })
}

/// `/dev/pts/N` of the master `master`.
fn tty_path(master: RawFd) -> Option<String> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: the buffer and its length are passed together.
    if unsafe { libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()) } != 0 {
        return None;
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `buf`.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    s.to_str().ok().map(str::to_string)
}

/// Processes to look at: the session leader and its descendants, from
/// `/proc/PID/task/TID/children` (a few reads, not a scan of every
/// process of the machine); every process when the kernel does not
/// offer those files.
fn session_pids(leader: u32) -> Vec<u32> {
    const MAX: usize = 4096;
    let mut out = vec![leader];
    let mut i = 0;
    while i < out.len() && out.len() < MAX {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(kids) = std::fs::read_to_string(t.path().join("children")) else {
                if pid == leader {
                    return all_pids();
                }
                continue;
            };
            out.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process group `pgrp` (among `pids`) waits for input on `tty`.
fn waits_for_input(pgrp: u32, tty: &str, pids: &[u32]) -> bool {
    let mut reading = false;
    for &pid in pids {
        let Some((state, group)) = stat(pid) else {
            continue;
        };
        if group != pgrp {
            continue;
        }
        // Running, in uninterruptible IO, stopped or traced: busy, or
        // not reading anything.
        if state != 'S' {
            return false;
        }
        reading |= blocked_on(pid, tty);
    }
    reading
}

/// State letter and process group of `pid`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start
    // after the last ')'.
    let mut f = s[s.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` is blocked reading `tty`, or polling while it holds it.
fn blocked_on(pid: u32, tty: &str) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut f = s.split_whitespace();
    let Some(nr) = f.next().and_then(|n| n.parse::<libc::c_long>().ok()) else {
        // "running", or no permission.
        return false;
    };
    let fd_is_tty = |fd: &str| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|p| p.as_os_str() == tty)
    };
    if nr == libc::SYS_read || nr == libc::SYS_readv {
        let fd = f
            .next()
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
        return fd.is_some_and(|fd| fd_is_tty(&fd.to_string()));
    }
    if is_poll(nr) {
        return std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.as_os_str() == tty))
        });
    }
    false
}

#[cfg(target_arch = "x86_64")]
fn is_poll(nr: libc::c_long) -> bool {
    [
        libc::SYS_poll,
        libc::SYS_select,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ]
    .contains(&nr)
}

#[cfg(not(target_arch = "x86_64"))]
fn is_poll(nr: libc::c_long) -> bool {
    [
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ]
    .contains(&nr)
}
