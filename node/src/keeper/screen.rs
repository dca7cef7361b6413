//! The keeper's screen thread: a terminal emulator ([`Emulator`]) fed from
//! the ring, behind the output, on a thread of its own.
//!
//! The poll loop only appends to the ring and, when the thread sleeps,
//! wakes it; the thread runs under `SCHED_IDLE`, on CPU time the program
//! and the poll loop leave: parsing costs the output stream nothing. A resize is queued at
//! the offset where it happened and applied when the emulator gets there,
//! so the emulator sees the output and the sizes in the order the program
//! did.
//!
//! The emulator parses about 50 MB/s, a PTY can write twice that: under
//! bulk output the thread falls behind. It reads every byte the ring
//! still holds; only when the ring has overwritten bytes it did not parse
//! yet ([`resume_at`]) does it skip ahead, close to the end, and count
//! what it skipped ([`tether_proto::ScreenState::skipped`]); then it
//! pauses until the output slows down, so that a flood costs it almost
//! nothing. The screen is right again as soon as the program redraws it. (Skipping earlier, at
//! half a ring, threw away a full-screen redraw that a small ring still
//! held: a snapshot then missed the switch to the alternate screen.) A
//! question (a snapshot, the screen's text) first brings the emulator up
//! to the end of the output, on the poll loop's thread, under the same
//! lock.

use crate::ring::{Ring, RingView};
use crate::screen::Emulator;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tether_proto::{Offset, WinSize};

/// Bytes parsed per turn of the thread: the lock is held that long.
const CHUNK: usize = 16 * 1024;
/// How far behind the end an emulator that fell behind starts again.
const CATCH_UP: u64 = 256 * 1024;
/// Bytes a question (an attach's snapshot) parses at most before it is
/// answered, about 20 ms: further behind, it skips to the last
/// [`CATCH_UP`] bytes (the thread was starved; the skip is counted).
const MAX_ON_DEMAND: u64 = 1 << 20;
/// How long the thread pauses after it was lapped, and between its looks
/// at whether the bulk output has slowed down (to less than a quarter of
/// the ring per pause).
const BULK_PAUSE: Duration = Duration::from_millis(20);
/// Stack of the thread: avt needs little.
const STACK: usize = 256 * 1024;

struct Inner {
    emu: Emulator,
    /// Resizes not applied yet, at the offsets where they happened.
    resizes: VecDeque<(Offset, WinSize)>,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
    sleeping: AtomicBool,
}

/// The poll loop's handle on the screen thread.
pub struct Screen {
    shared: Arc<Shared>,
}

impl Screen {
    /// Starts the thread, reading the ring at `ring_path` (already created,
    /// and appended to by the caller's [`Ring`]) from `start`.
    pub fn start(
        ring_path: &Path,
        size: WinSize,
        history: u32,
        start: Offset,
    ) -> std::io::Result<Screen> {
        let view = RingView::open(ring_path).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                emu: Emulator::new(size, history, start),
                resizes: VecDeque::new(),
            }),
            wake: Condvar::new(),
            sleeping: AtomicBool::new(false),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("screen".into())
            .stack_size(STACK)
            .spawn(move || follow(&theirs, &view))?;
        Ok(Screen { shared })
    }

    /// New output was committed to the ring: wake the thread if it sleeps.
    pub fn notify(&self) {
        if self.shared.sleeping.load(Ordering::SeqCst) {
            // Taking the lock orders this after the thread's wait began.
            let _g = self.lock();
            self.shared.wake.notify_one();
        }
    }

    /// The window became `size` when the output ended at `at`.
    pub fn resize(&self, at: Offset, size: WinSize) {
        let mut g = self.lock();
        g.resizes.push_back((at, size));
        apply_resizes(&mut g);
    }

    /// Runs `f` on the emulator brought up to the end of `ring`.
    pub fn with<R>(&self, ring: &Ring, f: impl FnOnce(&Emulator) -> R) -> R {
        let mut g = self.lock();
        let end = ring.end();
        if end.0.saturating_sub(g.emu.offset().0) > MAX_ON_DEMAND {
            g.emu.skip_to(Offset(end.0 - CATCH_UP));
            apply_resizes(&mut g);
        }
        loop {
            apply_resizes(&mut g);
            let at = g.emu.offset();
            if at >= end {
                break;
            }
            let limit = next_resize(&g, end);
            let (plan, bytes) = ring.read(at, limit.0.saturating_sub(at.0) as usize);
            if let Some(to) = plan.gap_to {
                g.emu.skip_to(Offset(to));
                apply_resizes(&mut g);
                continue;
            }
            if bytes.is_empty() {
                break;
            }
            g.emu.feed(bytes);
        }
        f(&g.emu)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic of the thread (a bug in the emulator) must not take the
        // session down: its screen may be wrong, the output is not.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Applies the resizes the emulator has reached.
fn apply_resizes(g: &mut Inner) {
    while let Some(&(at, size)) = g.resizes.front() {
        if at > g.emu.offset() {
            break;
        }
        g.emu.resize(size);
        g.resizes.pop_front();
    }
}

/// Where the emulator must stop to apply the next resize: that resize's
/// offset, or `end`.
fn next_resize(g: &Inner, end: Offset) -> Offset {
    g.resizes.front().map_or(end, |&(at, _)| at.min(end))
}

/// Where the thread goes on from `at`, the ring of `cap` bytes ending at
/// `end`: `None` while the ring still holds every byte from `at` (read
/// them all, however far behind); else near the end, [`CATCH_UP`] or a
/// quarter of the ring before it, so that it is not lapped again at once.
fn resume_at(at: Offset, end: Offset, cap: u64) -> Option<Offset> {
    (end.0.saturating_sub(at.0) > cap).then(|| Offset(end.0 - CATCH_UP.min(cap / 4)))
}

/// The thread: parse what the ring has, sleep when there is nothing.
fn follow(shared: &Shared, view: &RingView) {
    // Only CPU time nobody else wants: the session's program and the poll
    // loop that serves its clients always go first, so that parsing never
    // slows the output down (the thread skips ahead instead).
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid
    // parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) } != 0 {
        super::log::debug!(
            "screen thread: SCHED_IDLE refused: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        let mut g = shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut end = view.end();
        while g.emu.offset() >= end {
            shared.sleeping.store(true, Ordering::SeqCst);
            end = view.end();
            if g.emu.offset() < end {
                break;
            }
            g = shared
                .wake
                .wait(g)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            end = view.end();
        }
        shared.sleeping.store(false, Ordering::SeqCst);
        let at = g.emu.offset();
        if let Some(to) = resume_at(at, end, view.capacity()) {
            g.emu.skip_to(to);
            // Resizes queued at offsets skipped over apply now.
            apply_resizes(&mut g);
            drop(g);
            // Lapped: bulk output, faster than parsing. Parsing more of it
            // now would only be skipped again, and takes the CPU (or its
            // sibling thread) from the program: wait until the output
            // slows down, skipping what it overwrites meanwhile.
            let mut last = view.end();
            loop {
                std::thread::sleep(BULK_PAUSE);
                let now = view.end();
                if now.0 - last.0 < view.capacity() / 4 {
                    break;
                }
                last = now;
            }
            continue;
        }
        let limit = next_resize(&g, end);
        drop(g);

        buf.clear();
        let want = (limit.0.saturating_sub(at.0) as usize).min(CHUNK);
        if !view.copy(at, want, &mut buf) {
            // Overwritten while we copied: next turn skips ahead.
            continue;
        }
        let mut g = shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The poll loop may have caught the emulator up meanwhile.
        if g.emu.offset() == at {
            g.emu.feed(&buf);
        }
        apply_resizes(&mut g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn it_skips_only_what_the_ring_lost() {
        let cap = 8192;
        assert_eq!(resume_at(Offset(0), Offset(cap), cap), None);
        assert_eq!(resume_at(Offset(100), Offset(100), cap), None);
        assert_eq!(
            resume_at(Offset(0), Offset(cap + 1), cap),
            Some(Offset(cap + 1 - cap / 4))
        );
        let big = 1 << 20;
        assert_eq!(
            resume_at(Offset(0), Offset(3 * big), big),
            Some(Offset(3 * big - CATCH_UP))
        );
    }

    /// Appends `data` while the thread cannot take the lock (as when it is
    /// not scheduled during a burst), then lets it run until it has parsed
    /// up to the end; returns its emulator's screen.
    fn burst(screen: &Screen, ring: &mut Ring, data: &[u8]) -> tether_proto::ScreenState {
        {
            let _held = screen.lock();
            ring.append(data);
        }
        screen.notify();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let g = screen.lock();
                if g.emu.offset() >= ring.end() {
                    return g.emu.state();
                }
            }
            assert!(Instant::now() < deadline, "the thread did not catch up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_burst_the_ring_still_holds_is_parsed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut ring = Ring::create(&path, 8192).unwrap();
        let size = WinSize { cols: 80, rows: 24 };
        let screen = Screen::start(&path, size, 100, ring.end()).unwrap();
        // A full-screen program starts: the switch to the alternate screen,
        // then a redraw of 6 KiB, more than half the ring.
        let mut data = b"\x1b[?1049h\x1b[H\x1b[2J".to_vec();
        for row in 1..=24 {
            data.extend_from_slice(format!("\x1b[{row};1H\x1b[1;3{}m", row % 8).as_bytes());
            data.extend(std::iter::repeat_n(b'x', 240));
        }
        assert!(data.len() > 6000 && data.len() < 8192);
        let s = burst(&screen, &mut ring, &data);
        assert_eq!(s.skipped, 0);
        assert!(s.alternate, "the switch to the alternate screen was parsed");
        // More than the ring holds: what was overwritten is skipped, and
        // counted.
        let s = burst(&screen, &mut ring, &[b'y'; 20_000]);
        assert!(s.skipped > 0, "{s:?}");
    }
}
