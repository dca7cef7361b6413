//! Counters of the sealed transport, and the rule that keeps its
//! rejections from flooding the log.
//!
//! Every datagram is counted: accepted (by the secret it was sealed with)
//! or rejected (by [`Reject`] reason). [`crate::metrics`] renders the
//! counters. A rejection is logged at most once per [`LOG_INTERVAL`] per
//! reason; the line carries how many of that reason went unlogged since
//! the previous one, so 50,000 junk datagrams make two lines, not 50,000.

use super::seal::{KeyRole, Reject};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shortest time between two log lines of one rejection reason.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts of accepted and rejected datagrams.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Datagrams accepted, under any key.
    pub accepted: AtomicU64,
    /// Of those, sealed with `next_secret_file`'s secret.
    pub accepted_next: AtomicU64,
    /// Of those, sealed with `previous_secret_file`'s secret.
    pub accepted_previous: AtomicU64,
    /// Rejected: malformed.
    pub malformed: AtomicU64,
    /// Rejected: the tag did not verify.
    pub forged: AtomicU64,
    /// Rejected: addressed to another member.
    pub misdirected: AtomicU64,
    /// Rejected: send time out of window.
    pub stale: AtomicU64,
    /// Rejected: replayed.
    pub replayed: AtomicU64,
    /// Rejected: a new sender while the table of senders was full.
    pub too_many_senders: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Bytes received (accepted or not).
    pub bytes_received: AtomicU64,
}

impl GossipStats {
    /// Every rejection.
    pub fn rejected(&self) -> u64 {
        Reject::ALL.iter().map(|r| self.rejected_for(*r)).sum()
    }

    /// Rejections for one reason.
    pub fn rejected_for(&self, r: Reject) -> u64 {
        self.reject_counter(r).load(Ordering::Relaxed)
    }

    /// Datagrams accepted under one key.
    pub fn accepted_with(&self, role: KeyRole) -> u64 {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        match role {
            KeyRole::Current => l(&self.accepted)
                .saturating_sub(l(&self.accepted_next) + l(&self.accepted_previous)),
            KeyRole::Next => l(&self.accepted_next),
            KeyRole::Previous => l(&self.accepted_previous),
        }
    }

    pub(crate) fn count_rejected(&self, r: Reject) {
        self.reject_counter(r).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_accepted(&self, role: KeyRole) {
        // The detail first, so that `accepted_with(Current)` never dips.
        match role {
            KeyRole::Current => {}
            KeyRole::Next => {
                self.accepted_next.fetch_add(1, Ordering::Relaxed);
            }
            KeyRole::Previous => {
                self.accepted_previous.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn reject_counter(&self, r: Reject) -> &AtomicU64 {
        match r {
            Reject::Malformed => &self.malformed,
            Reject::Forged => &self.forged,
            Reject::Misdirected => &self.misdirected,
            Reject::Stale => &self.stale,
            Reject::Replayed => &self.replayed,
            Reject::TooManySenders => &self.too_many_senders,
        }
    }
}

/// Decides which rejections are logged: the first of each reason, then at
/// most one per interval, carrying the count left out in between.
#[derive(Debug)]
pub struct RejectLog {
    interval: Duration,
    slots: [(Option<Instant>, u64); Reject::ALL.len()],
}

impl RejectLog {
    /// At most one line per `interval` per reason.
    pub fn new(interval: Duration) -> Self {
        RejectLog {
            interval,
            slots: [(None, 0); Reject::ALL.len()],
        }
    }

    /// Notes a rejection at `now`. `Some(n)` says to log it, `n` being the
    /// rejections of that reason not logged since the last line; `None`
    /// says to stay quiet (it is counted in the next line).
    pub fn note(&mut self, r: Reject, now: Instant) -> Option<u64> {
        let (last, suppressed) = &mut self.slots[r.index()];
        match last {
            Some(t) if now.saturating_duration_since(*t) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_per_reason_with_the_count_left_out() {
        let mut log = RejectLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(log.note(Reject::Forged, t0), Some(0));
        for i in 0..999 {
            assert_eq!(
                log.note(Reject::Forged, t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another reason has its own slot.
        assert_eq!(log.note(Reject::Malformed, t0 + s(1)), Some(0));
        assert_eq!(log.note(Reject::Forged, t0 + s(9)), None);
        assert_eq!(log.note(Reject::Forged, t0 + s(10)), Some(1000));
        assert_eq!(log.note(Reject::Forged, t0 + s(11)), None);
        assert_eq!(log.note(Reject::Forged, t0 + s(30)), Some(1));
        assert_eq!(log.note(Reject::Malformed, t0 + s(30)), Some(0));
    }

    #[test]
    fn counters_by_reason_and_key() {
        let st = GossipStats::default();
        st.count_rejected(Reject::Misdirected);
        st.count_rejected(Reject::Misdirected);
        st.count_rejected(Reject::TooManySenders);
        assert_eq!(st.rejected_for(Reject::Misdirected), 2);
        assert_eq!(st.rejected(), 3);
        st.count_accepted(KeyRole::Current);
        st.count_accepted(KeyRole::Previous);
        assert_eq!(st.accepted.load(Ordering::Relaxed), 2);
        assert_eq!(st.accepted_with(KeyRole::Current), 1);
        assert_eq!(st.accepted_with(KeyRole::Previous), 1);
        assert_eq!(st.accepted_with(KeyRole::Next), 0);
    }
}
