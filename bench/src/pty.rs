//! A program in a PTY the bench owns (pty-process, blocking): the bench
//! plays the terminal, writes keystrokes to the master and reads what the
//! program draws, with `poll` timeouts so that nothing ever hangs.

use crate::cleanup::{self, Guard, Item};
use crate::procs::TERM;
use anyhow::{bail, Context};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A process whose controlling terminal is a PTY held by the bench.
pub struct PtyProc {
    pty: pty_process::blocking::Pty,
    child: std::process::Child,
    buf: Vec<u8>,
    _guard: Guard,
}

/// What [`PtyProc::read_some`] got.
pub enum Got {
    /// Bytes read into the buffer.
    Data(usize),
    /// The program closed the terminal (EIO on the master).
    Closed,
}

impl PtyProc {
    /// Starts `program args...` in a new PTY of `cols` x `rows`.
    pub fn spawn(program: &str, args: &[&str], cols: u16, rows: u16) -> anyhow::Result<PtyProc> {
        if cleanup::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted");
        }
        let (pty, pts) = pty_process::blocking::open().context("opening a PTY")?;
        pty.resize(pty_process::Size::new(rows, cols))
            .context("sizing the PTY")?;
        let child = pty_process::blocking::Command::new(program)
            .args(args)
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .env_remove("TETHER_STATE_DIR")
            .env("TERM", TERM)
            .spawn(pts)
            .with_context(|| format!("starting {program} in a PTY"))?;
        // pty-process makes the child a session leader: its PID is its
        // process group.
        let guard = cleanup::register(Item::Group(child.id() as i32));
        Ok(PtyProc {
            pty,
            child,
            buf: vec![0; 64 * 1024],
            _guard: guard,
        })
    }

    /// Writes bytes to the terminal (as typed keys).
    pub fn write(&mut self, b: &[u8]) -> anyhow::Result<()> {
        self.pty.write_all(b).context("writing to the PTY")?;
        Ok(())
    }

    /// Waits until output is available (at most until `deadline`) and
    /// reads it.
    pub fn read_some(&mut self, deadline: Instant) -> anyhow::Result<Got> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.pty.as_fd(), PollFlags::POLLIN)];
            let n = match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("polling the PTY"),
            };
            if n == 0 {
                if Instant::now() >= deadline {
                    bail!("no output from the PTY in time");
                }
                continue;
            }
            return match self.pty.read(&mut self.buf) {
                Ok(0) => Ok(Got::Closed),
                Ok(n) => Ok(Got::Data(n)),
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(Got::Closed),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e).context("reading the PTY"),
            };
        }
    }

    /// The bytes of the last [`Got::Data`].
    pub fn got(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    /// Reads until `marker` has appeared in the output; returns the bytes
    /// read. Fails if the program closes the terminal first.
    pub fn wait_for(&mut self, marker: &[u8], timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut window: Vec<u8> = Vec::with_capacity(marker.len() * 2 + 64 * 1024);
        let mut total = 0u64;
        loop {
            match self.read_some(deadline).with_context(|| {
                format!(
                    "waiting for {:?}; last output: {:?}",
                    String::from_utf8_lossy(marker),
                    String::from_utf8_lossy(&window[window.len().saturating_sub(200)..])
                )
            })? {
                Got::Data(n) => {
                    total += n as u64;
                    window.extend_from_slice(&self.buf[..n]);
                    if window.windows(marker.len()).any(|w| w == marker) {
                        return Ok(total);
                    }
                    // Keep only what could still hold the start of a marker.
                    let keep = marker.len().saturating_sub(1);
                    let cut = window.len().saturating_sub(keep.max(256));
                    window.drain(..cut);
                }
                Got::Closed => bail!(
                    "the program closed its terminal before {:?} appeared; last output: {:?}",
                    String::from_utf8_lossy(marker),
                    String::from_utf8_lossy(&window)
                ),
            }
        }
    }

    /// Reads and discards output until the terminal is quiet for `quiet`.
    pub fn drain(&mut self, quiet: Duration) {
        while let Ok(Got::Data(_)) = self.read_some(Instant::now() + quiet) {}
    }

    /// Waits for the program to exit by itself, at most `timeout`; kills
    /// it otherwise.
    pub fn finish(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // Keep the terminal drained so the program is not blocked on it.
            let _ = self.read_some(Instant::now() + Duration::from_millis(5));
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => {}
            }
        }
        self.kill();
    }

    /// Kills the program (its whole process group) and reaps it.
    pub fn kill(&mut self) {
        cleanup::kill_group(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

impl Drop for PtyProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Finds what a terminal program prints as text, skipping escape
/// sequences (CSI, OSC, DCS and two-byte ESC sequences), so that the
/// echo of a key can be told apart from the letters inside `ESC [ ? 25 l`.
#[derive(Debug, Default)]
pub struct TextScanner {
    state: Scan,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    #[default]
    Ground,
    Esc,
    EscIntermediate,
    Csi,
    Str,
    StrEsc,
}

impl TextScanner {
    /// Feeds bytes; calls `text` with every printable byte outside escape
    /// sequences.
    pub fn feed(&mut self, bytes: &[u8], mut text: impl FnMut(u8)) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (_, 0x18 | 0x1a) => Scan::Ground,
                (Scan::Str, 0x07) => Scan::Ground,
                (Scan::Str, 0x1b) => Scan::StrEsc,
                (Scan::Str, _) => Scan::Str,
                (Scan::StrEsc, b'\\') => Scan::Ground,
                (Scan::StrEsc, _) => Scan::Str,
                (_, 0x1b) => Scan::Esc,
                (Scan::Esc, b'[') => Scan::Csi,
                (Scan::Esc, b']' | b'P' | b'_' | b'^' | b'X') => Scan::Str,
                (Scan::Esc, 0x20..=0x2f) => Scan::EscIntermediate,
                (Scan::Esc, _) => Scan::Ground,
                (Scan::EscIntermediate, 0x20..=0x2f) => Scan::EscIntermediate,
                (Scan::EscIntermediate, _) => Scan::Ground,
                (Scan::Csi, 0x40..=0x7e) => Scan::Ground,
                (Scan::Csi, _) => Scan::Csi,
                (Scan::Ground, 0x20..=0x7e) => {
                    text(b);
                    Scan::Ground
                }
                (Scan::Ground, _) => Scan::Ground,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TextScanner;

    fn text(bytes: &[u8]) -> String {
        let mut s = TextScanner::default();
        let mut out = String::new();
        s.feed(bytes, |b| out.push(b as char));
        out
    }

    #[test]
    fn escapes_are_not_text() {
        assert_eq!(text(b"\x1b[?25la\x1b[?25h"), "a");
        assert_eq!(text(b"\x1b]0;title\x07b\x1b(Bc"), "bc");
        assert_eq!(text(b"\x1b[1;31mred\x1b[m\r\n"), "red");
        assert_eq!(text(b"\x1bP+q544e\x1b\\x"), "x");
    }

    #[test]
    fn split_sequences_carry_over() {
        let mut s = TextScanner::default();
        let mut out = Vec::new();
        s.feed(b"\x1b[?2", |b| out.push(b));
        s.feed(b"5lz", |b| out.push(b));
        assert_eq!(out, b"z");
    }
}
