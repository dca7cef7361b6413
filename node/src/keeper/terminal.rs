//! What the keeper knows of its terminal beyond bytes: the screen's
//! snapshot for an attach, who is in the foreground and whether it waits
//! for input, and which window size the clients' choices give.

use super::log::warning;
use super::{probe, Core};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tether_proto::{Offset, WinSize};

/// How long output and input stay still before the keeper looks whether
/// the foreground waits for input (for a watching daemon's events).
const QUIET: Duration = Duration::from_millis(150);
/// How long a `Probe`'s answer stands while the output does not move.
const PROBE_CACHE: Duration = Duration::from_millis(40);
/// Largest snapshot sent on an attach: a frame, with room for the reply
/// around it. History is halved until the snapshot fits.
const MAX_SNAPSHOT: usize = tether_proto::MAX_FRAME_SIZE - 4096;

impl Core {
    /// Client `who` (attached with `sizing`) attached, resized, or typed in
    /// a window of `size`: resize the session if the policy says so.
    pub(super) fn client_size(&mut self, who: u64, sizing: tether_proto::Sizing, size: WinSize) {
        if let Some(s) = self.sizes.on_client(who, sizing, size.clamped()) {
            if s != self.size {
                self.resize(s);
            }
        }
    }

    /// Client `who` left: a `Smallest` client's leaving may let the session
    /// grow.
    pub(super) fn client_left(&mut self, who: u64) {
        if let Some(s) = self.sizes.on_leave(who) {
            if s != self.size {
                self.resize(s);
            }
        }
    }

    /// A snapshot of the screen for an attach, with `history` lines of
    /// history at most: its offset, the escape codes and the bytes the
    /// emulator skipped. `None` without an emulator, or when even the
    /// screen alone does not fit in a frame (the client replays raw
    /// output then).
    pub(super) fn snapshot(&self, history: u32) -> Option<(Offset, Vec<u8>, u64)> {
        let screen = self.screen.as_ref()?;
        screen.with(&self.ring, |e| {
            let mut lines = history;
            loop {
                let data = e.snapshot(lines);
                if data.len() <= MAX_SNAPSHOT {
                    return Some((e.screen_offset(), data, e.skipped()));
                }
                if lines == 0 {
                    warning!(
                        "the screen's snapshot is {} bytes; replaying raw output",
                        data.len()
                    );
                    return None;
                }
                lines /= 2;
            }
        })
    }

    /// When to look whether the foreground waits for input: once output
    /// and input were quiet for [`QUIET`] after input, while a daemon
    /// watches.
    pub(super) fn probe_due(&self) -> Option<Instant> {
        (self.watchers > 0 && self.exit.is_none())
            .then_some(self.activity?)
            .map(|t| t + QUIET)
    }

    /// The foreground process, for a `Probe`: looked up at most every
    /// [`PROBE_CACHE`] while the output stands still, so that a peer asking
    /// `info` in a loop does not keep the loop busy walking `/proc`.
    pub(super) fn foreground(&mut self) -> Option<tether_proto::Foreground> {
        if self.exit.is_some() {
            return None;
        }
        let now = Instant::now();
        let end = self.ring.end();
        if let Some((at, offset, f)) = &self.probed {
            if *offset == end && now.duration_since(*at) < PROBE_CACHE {
                return f.clone();
            }
        }
        let f = probe::probe(self.pty.as_raw_fd(), self.pid, end);
        self.probed = Some((now, end, f.clone()));
        f
    }

    /// Looks whether the foreground waits for input, and counts a change.
    pub(super) fn probe(&mut self) {
        self.activity = None;
        let awaiting = probe::probe(self.pty.as_raw_fd(), self.pid, self.ring.end())
            .is_some_and(|f| f.awaiting_input);
        self.armed = !awaiting;
        if awaiting != self.awaiting {
            self.awaiting = awaiting;
            self.changes += 1;
        }
    }
}
