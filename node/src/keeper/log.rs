//! The keeper's log: a line per event on stderr (the session's
//! `keeper.log`), `<UTC time> <LEVEL> tether_node::keeper: <message>`.
//! Debug lines only when `RUST_LOG` asks for debug or trace.
//!
//! A keeper lives as long as its session, one per session: a logging
//! framework with its filters and buffers would cost each of them more
//! than everything else it keeps, for a handful of lines.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet decided, 1: no debug lines, 2: debug lines.
static DEBUG: AtomicU8 = AtomicU8::new(0);

fn debug_on() -> bool {
    match DEBUG.load(Ordering::Relaxed) {
        0 => {
            let on =
                std::env::var("RUST_LOG").is_ok_and(|v| v.contains("debug") || v.contains("trace"));
            DEBUG.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        v => v == 2,
    }
}

/// Writes one line at `level` ("INFO", "WARN", "DEBUG").
pub fn line(level: &str, args: fmt::Arguments<'_>) {
    if level == "DEBUG" && !debug_on() {
        return;
    }
    let mut s = String::with_capacity(128);
    let _ = fmt::write(
        &mut s,
        format_args!("{} {level:>5} tether_node::keeper: {args}\n", Utc::now()),
    );
    // One write per line, so lines of a keeper never interleave.
    let _ = std::io::stderr().write_all(s.as_bytes());
}

macro_rules! info { ($($t:tt)*) => { $crate::keeper::log::line("INFO", format_args!($($t)*)) } }
macro_rules! warning { ($($t:tt)*) => { $crate::keeper::log::line("WARN", format_args!($($t)*)) } }
macro_rules! debug { ($($t:tt)*) => { $crate::keeper::log::line("DEBUG", format_args!($($t)*)) } }
pub(crate) use {debug, info, warning};

/// The time now, shown as RFC 3339 UTC with microseconds.
struct Utc(std::time::Duration);

impl Utc {
    fn now() -> Utc {
        Utc(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default())
    }
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            self.0.subsec_micros()
        )
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_557), (2026, 4, 14));
        let t = Utc(std::time::Duration::from_micros(951_782_400_000_001)).to_string();
        assert_eq!(t, "2000-02-29T00:00:00.000001Z");
    }
}
