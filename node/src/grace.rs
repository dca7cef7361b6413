//! Grace for followers: how long a keeper may hold back reading its PTY
//! for a client that fell behind.
//!
//! A keeper reads the PTY all the time, so a client never slows the
//! session. But a follower that keeps up on average still falls behind in
//! bursts: on a busy machine it may not run for tens of milliseconds,
//! while a full-speed `cat` fills a 1 MiB ring in about 15 ms. Without
//! grace, such a follower loses bytes (a gap) although it is not slow.
//!
//! So the session has a little credit of time. When a follower is more
//! than three quarters of the ring behind, the keeper stops reading the
//! PTY (the kernel's PTY buffer then holds the program back, exactly as a
//! plain terminal would) until every follower is back within half the
//! ring, or until the credit is spent. Credit starts at [`CREDIT`] and
//! refills at [`REFILL`] of the time that passes. It belongs to the
//! session, not to each follower: a reader that truly is slower (one that
//! sleeps), or one that reconnects again and again, spends it once, then
//! gets gap notices as before, and holds the session back about 1% of
//! the time after that (a hold starts only with 5 ms of credit, and the
//! keeper's poll rounds each up to a millisecond: at most 1.2%), whatever
//! the number of followers.
//!
//! Pure bookkeeping, no clock of its own: the keeper passes `now`.

use std::time::{Duration, Instant};

/// Time a follower may hold the session back, at most, at once.
pub const CREDIT: Duration = Duration::from_millis(50);
/// Share of elapsed time given back as credit.
pub const REFILL: f64 = 0.01;
/// Credit a hold needs to start.
const MIN_START: Duration = Duration::from_millis(5);

/// A follower is waited for when it is more than this share of the ring
/// behind...
const WAIT_ABOVE: (u64, u64) = (3, 4);
/// ...until it is back within this share.
const RESUME_BELOW: (u64, u64) = (1, 2);

/// The session's credit, and whether the keeper holds the PTY now.
#[derive(Debug)]
pub struct Grace {
    credit: Duration,
    /// When the credit was last brought up to date.
    at: Instant,
    holding: bool,
}

fn share(cap: u64, (num, den): (u64, u64)) -> u64 {
    cap / den * num
}

/// Bytes a keeper may append to a ring of `cap` bytes between two looks
/// at its followers: a follower it does not wait for (at most three
/// quarters of the ring behind) is not lapped by them. A keeper that read
/// more in one go would overwrite bytes such a follower has not read yet,
/// before grace had a chance to hold the PTY.
pub fn headroom(cap: u64) -> u64 {
    cap - share(cap, WAIT_ABOVE)
}

impl Grace {
    /// Full credit, not holding.
    pub fn new(now: Instant) -> Grace {
        Grace {
            credit: CREDIT,
            at: now,
            holding: false,
        }
    }

    /// Whether the keeper should leave the PTY unread now, given how far
    /// the furthest-behind follower is behind the ring's end (`lag`) in a
    /// ring of `cap` bytes: `None` to read on; else ask again by the
    /// instant returned. Time spent holding is charged to the credit; time
    /// not holding refills it.
    pub fn hold(&mut self, lag: u64, cap: u64, now: Instant) -> Option<Instant> {
        let since = now.saturating_duration_since(self.at);
        self.at = now;
        self.credit = if self.holding {
            self.credit.saturating_sub(since)
        } else {
            (self.credit + since.mul_f64(REFILL)).min(CREDIT)
        };
        let limit = if self.holding {
            RESUME_BELOW
        } else {
            WAIT_ABOVE
        };
        // A hold starts only with some credit: the keeper's poll waits
        // whole milliseconds, so crumbs of credit would each cost one.
        let enough = if self.holding {
            !self.credit.is_zero()
        } else {
            self.credit >= MIN_START
        };
        self.holding = lag > share(cap, limit) && enough;
        self.holding.then(|| now + self.credit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 1 << 20;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_follower_grace_does_not_wait_for_survives_the_headroom() {
        for cap in [4096, 8192, 64 * 1024, CAP, 1 << 30] {
            assert_eq!(share(cap, WAIT_ABOVE) + headroom(cap), cap);
            assert_eq!(headroom(cap), cap / 4);
        }
    }

    #[test]
    fn a_follower_within_the_ring_holds_nothing() {
        let now = Instant::now();
        let mut g = Grace::new(now);
        assert_eq!(g.hold(CAP * 3 / 4, CAP, now), None);
    }

    #[test]
    fn a_follower_far_behind_holds_the_pty_until_it_is_back_within_half() {
        let t = Instant::now();
        let mut g = Grace::new(t);
        assert_eq!(g.hold(CAP * 7 / 8, CAP, t), Some(t + CREDIT));
        // 30 ms later it is between half and three quarters behind: the
        // hold goes on, with what is left.
        let t = t + 30 * MS;
        assert_eq!(g.hold(CAP * 5 / 8, CAP, t), Some(t + 20 * MS));
        // Back within half: released.
        assert_eq!(g.hold(CAP / 4, CAP, t + MS), None);
        // Not held again until it is 3/4 behind; the credit left is 19 ms.
        assert_eq!(g.hold(CAP * 5 / 8, CAP, t + MS), None);
        assert_eq!(g.hold(CAP, CAP, t + MS), Some(t + 20 * MS));
    }

    #[test]
    fn a_reader_that_sleeps_holds_the_session_once_then_one_percent() {
        let t0 = Instant::now();
        let mut g = Grace::new(t0);
        let mut held = Duration::ZERO;
        let mut now = t0;
        // Ten seconds, a follower that never reads, the keeper asking
        // every 100 µs while it reads and holding for whole milliseconds
        // (its poll's unit) when told to hold.
        let mut holds = 0;
        while now < t0 + Duration::from_secs(10) {
            match g.hold(CAP, CAP, now) {
                Some(until) => {
                    let h = (until - now).max(MS).min(MS * 1000);
                    let h = Duration::from_millis(h.as_micros().div_ceil(1000) as u64);
                    held += h;
                    now += h;
                    holds += 1;
                }
                None => now += MS / 10,
            }
        }
        // Each hold may overrun by the poll's millisecond.
        let limit = CREDIT + Duration::from_secs(10).mul_f64(REFILL) + holds * MS;
        assert!(holds < 50, "{holds} holds");
        assert!(held <= limit, "held {held:?}, at most {limit:?}");
        assert!(held >= CREDIT, "held {held:?}");
    }
}
