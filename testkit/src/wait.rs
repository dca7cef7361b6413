//! Waiting for a condition, always with a deadline.
//!
//! A test waits for an event it can observe (a line of output, a file, a
//! figure in `tether info`), polled every [`POLL`]; never for a fixed time.

use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every [`POLL`] until it holds; panics after `timeout`,
/// naming `what`. For tests: the panic is the assertion.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    if let Err(e) = poll_until(what, timeout, || Ok(cond())) {
        panic!("{e:#}");
    }
}

/// Polls `cond` every [`POLL`] until it holds, at most `timeout`. An error
/// of `cond` ends the wait with that error.
pub fn poll_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_until_true_and_times_out_with_the_name() {
        let mut n = 0;
        poll_until("three calls", Duration::from_secs(5), || {
            n += 1;
            Ok(n == 3)
        })
        .unwrap();
        assert_eq!(n, 3);
        let e = poll_until("never", Duration::from_millis(30), || Ok(false)).unwrap_err();
        assert!(e.to_string().contains("waiting for never"), "{e}");
        let e =
            poll_until("an error", Duration::from_secs(5), || anyhow::bail!("boom")).unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn wait_until_panics_on_timeout() {
        wait_until("the impossible", Duration::from_millis(20), || false);
    }
}
