//! Keeping answers under a size: how big an answer is, how much of a list
//! or a text fits, how far to shrink a read that came out too big. Pure
//! functions; the tools decide what a cut answer says.

use serde_json::Value;

/// Bytes of an answer as the caller receives it (compact JSON).
pub fn size(v: &Value) -> usize {
    serde_json::to_string(v).map_or(usize::MAX, |s| s.len())
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The largest `k` in `0..=n` for which `fits(k)` holds, given that it
/// holds for every smaller `k` once it holds for one (0 when none does).
pub fn largest(n: usize, fits: impl Fn(usize) -> bool) -> usize {
    if fits(n) {
        return n;
    }
    // fits(lo) or lo == 0; !fits(hi).
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The bytes of output to ask for next, after asking for `want` gave an
/// answer of `got` bytes where `limit` was the most: in proportion, with a
/// margin, and always fewer than before (at least 1).
pub fn shrink(want: usize, got: usize, limit: usize) -> usize {
    let scaled = (want as u128 * limit as u128 / got.max(1) as u128) * 9 / 10;
    (scaled as usize).clamp(1, want.saturating_sub(1).max(1))
}

/// The bytes of output a first read asks for, for an answer of at most
/// `limit` bytes: room for the answer's other fields and for JSON escapes
/// of ordinary text (a few line ends), so that one read is the rule.
pub fn first_want(max_bytes: usize, limit: usize) -> usize {
    max_bytes.min(limit - limit / 16 - 256).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_land_on_character_boundaries() {
        let s = "a\u{e9}\u{4e16}"; // 1 + 2 + 3 bytes
        let cuts: Vec<&str> = (0..=7).map(|m| cut(s, m)).collect();
        assert_eq!(
            cuts,
            [
                "",
                "a",
                "a",
                "a\u{e9}",
                "a\u{e9}",
                "a\u{e9}",
                "a\u{e9}\u{4e16}",
                s
            ]
        );
    }

    #[test]
    fn largest_finds_the_last_that_fits() {
        for n in 0..20 {
            for edge in 0..=n {
                assert_eq!(largest(n, |k| k <= edge), edge, "n {n} edge {edge}");
            }
        }
        assert_eq!(largest(5, |_| false), 0);
    }

    #[test]
    fn shrinking_always_makes_progress() {
        assert_eq!(shrink(1000, 2000, 1000), 450);
        assert_eq!(shrink(1000, 1001, 1000), 899);
        // Never more than before, never 0.
        assert_eq!(shrink(10, 11, 1_000_000), 9);
        assert_eq!(shrink(1, 5000, 10), 1);
        assert_eq!(shrink(100, usize::MAX, 10), 1);
    }

    #[test]
    fn sizes_are_compact_json() {
        assert_eq!(size(&json!({"a": "x\ny"})), r#"{"a":"x\ny"}"#.len());
        assert_eq!(first_want(1 << 20, 30_000), 30_000 - 1875 - 256);
        assert_eq!(first_want(100, 30_000), 100);
    }
}
