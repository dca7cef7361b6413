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
//! gets gap notices as before, and holds the session back at most 1% of
//! the time after that, whatever the number of followers.
//!
//! Pure bookkeeping, no clock of its own: the keeper passes `now`.

use std::time::{Duration, Instant};

/// Time a follower may hold the session back, at most, at once.
pub const CREDIT: Duration = Duration::from_millis(50);
/// Share of elapsed time given back as credit.
pub const REFILL: f64 = 0.01;

/// A follower is waited for when it is more than this share of the ring
/// behind...
const WAIT_ABOVE: (u64, u64) = (3, 4);
/// ...until it is back within this share.
const RESUME_BELOW: (u64, u64) = (1, 2);

/// The followers of one session, and the session's credit.
#[derive(Debug)]
pub struct Followers {
    next: u64,
    /// ID and the next offset each will be sent.
    list: Vec<(u64, u64)>,
    credit: Duration,
    refilled: Instant,
}

fn share(cap: u64, (num, den): (u64, u64)) -> u64 {
    cap / den * num
}

impl Followers {
    /// No followers yet, full credit.
    pub fn new(now: Instant) -> Followers {
        Followers {
            next: 0,
            list: Vec::new(),
            credit: CREDIT,
            refilled: now,
        }
    }

    /// A follower at `pos`; returns its ID.
    pub fn join(&mut self, pos: u64) -> u64 {
        self.next += 1;
        self.list.push((self.next, pos));
        self.next
    }

    /// The follower is gone.
    pub fn leave(&mut self, id: u64) {
        self.list.retain(|f| f.0 != id);
    }

    /// The follower will next be sent `pos`.
    pub fn advance(&mut self, id: u64, pos: u64) {
        if let Some(f) = self.list.iter_mut().find(|f| f.0 == id) {
            f.1 = pos;
        }
    }

    fn behind(&self, end: u64, cap: u64, by: (u64, u64)) -> bool {
        self.list
            .iter()
            .any(|&(_, pos)| end.saturating_sub(pos) > share(cap, by))
    }

    /// Whether the keeper should hold the PTY now, with the ring's `end`
    /// and capacity `cap`: `None` to read on, else for at most this long
    /// before [`charge`](Self::charge).
    pub fn hold(&mut self, end: u64, cap: u64, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(self.refilled);
        self.credit = (self.credit + since.mul_f64(REFILL)).min(CREDIT);
        self.refilled = now;
        (self.behind(end, cap, WAIT_ABOVE) && !self.credit.is_zero()).then_some(self.credit)
    }

    /// The keeper held the PTY for `held`; returns how much longer it may
    /// hold it: `None` once every follower is back within half the ring,
    /// or the credit is spent.
    pub fn charge(&mut self, end: u64, cap: u64, held: Duration) -> Option<Duration> {
        self.credit = self.credit.saturating_sub(held);
        (self.behind(end, cap, RESUME_BELOW) && !self.credit.is_zero()).then_some(self.credit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 1 << 20;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_follower_within_the_ring_holds_nothing() {
        let now = Instant::now();
        let mut f = Followers::new(now);
        f.join(0);
        assert_eq!(f.hold(CAP * 3 / 4, CAP, now), None);
    }

    #[test]
    fn a_follower_far_behind_holds_the_pty_until_it_is_back_within_half() {
        let now = Instant::now();
        let mut f = Followers::new(now);
        let id = f.join(0);
        let end = CAP * 7 / 8;
        assert_eq!(f.hold(end, CAP, now), Some(CREDIT));
        assert_eq!(f.charge(end, CAP, 30 * MS), Some(20 * MS));
        // Between half and three quarters behind: held on, not started.
        f.advance(id, end - CAP * 5 / 8);
        assert_eq!(f.charge(end, CAP, MS), Some(19 * MS));
        assert_eq!(f.hold(end, CAP, now), None);
        f.advance(id, end - CAP / 4);
        assert_eq!(f.charge(end, CAP, MS), None);
    }

    #[test]
    fn a_reader_that_sleeps_holds_the_session_once_then_one_percent() {
        let t0 = Instant::now();
        let mut f = Followers::new(t0);
        let end = CAP * 7 / 8;
        let mut held = Duration::ZERO;
        let mut now = t0;
        // Ten seconds of a session whose followers never read, and a new
        // one joins every 100 ms: the credit is the session's, not theirs.
        while now < t0 + Duration::from_secs(10) {
            f.join(0);
            let mut hold = f.hold(end, CAP, now);
            while let Some(h) = hold {
                held += h;
                now += h;
                hold = f.charge(end, CAP, h);
            }
            now += 100 * MS;
        }
        let limit = CREDIT + Duration::from_secs(11).mul_f64(REFILL);
        assert!(held <= limit, "held {held:?}, at most {limit:?}");
        assert!(held >= CREDIT, "held {held:?}");
    }

    #[test]
    fn the_last_laggard_to_leave_frees_the_pty() {
        let now = Instant::now();
        let mut f = Followers::new(now);
        let (a, b) = (f.join(0), f.join(0));
        let end = CAP;
        assert!(f.hold(end, CAP, now).is_some());
        f.leave(a);
        assert!(f.charge(end, CAP, MS).is_some());
        f.advance(b, end);
        assert_eq!(f.charge(end, CAP, MS), None);
        assert_eq!(f.hold(end, CAP, now), None);
    }
}
