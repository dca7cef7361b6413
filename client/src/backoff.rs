//! How often, and how patiently, a broken stream is resumed: a bounded
//! number of attempts with a capped exponential delay. A pure policy, so
//! its bounds are tested without a clock.

use std::time::Duration;

/// How many times in a row a stream tries to resume, in one outage,
/// before it gives up; output flowing again starts the count anew.
pub const MAX_RECONNECTS: u32 = 20;

/// When to retry a broken stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts allowed in one outage; after that the stream gives up.
    /// Default [`MAX_RECONNECTS`].
    pub max_attempts: u32,
    /// The delay unit: attempt `n` waits `base << min(n, max_shift)`.
    /// Default 50 ms.
    pub base: Duration,
    /// Where the doubling stops. Default 5 (1.6 s with the default base).
    pub max_shift: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: MAX_RECONNECTS,
            base: Duration::from_millis(50),
            max_shift: 5,
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt` (counting from 1), or
    /// `None` once the attempts are used up.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt > self.max_attempts {
            return None;
        }
        Some(self.base * (1u32 << attempt.min(self.max_shift).min(31)))
    }

    /// The longest a stream can spend waiting between attempts before it
    /// gives up (connect time not counted).
    pub fn total(&self) -> Duration {
        (1..=self.max_attempts).filter_map(|a| self.delay(a)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_doubles_from_100_ms_to_1_6_s_and_stops_after_20() {
        let b = Backoff::default();
        let ms: Vec<u128> = (1..=6).map(|a| b.delay(a).unwrap().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 1600]);
        assert_eq!(b.delay(20), Some(Duration::from_millis(1600)));
        assert_eq!(b.delay(21), None);
        assert_eq!(b.delay(0), None);
        // Under half a minute in all: a user waits, not forever.
        assert_eq!(
            b.total(),
            Duration::from_millis(100 + 200 + 400 + 800 + 16 * 1600)
        );
    }

    proptest! {
        #[test]
        fn delays_are_bounded_and_never_shrink(
            max_attempts in 0u32..100,
            base_ms in 1u64..1000,
            max_shift in 0u32..40,
            attempt in 0u32..200,
        ) {
            let b = Backoff { max_attempts, base: Duration::from_millis(base_ms), max_shift };
            match b.delay(attempt) {
                None => prop_assert!(attempt == 0 || attempt > max_attempts),
                Some(d) => {
                    prop_assert!(attempt >= 1 && attempt <= max_attempts);
                    prop_assert!(d >= b.base);
                    prop_assert!(d <= b.base * (1u32 << max_shift.min(31)));
                    if let Some(next) = b.delay(attempt + 1) {
                        prop_assert!(next >= d);
                    }
                }
            }
        }
    }
}
