//! Processes under test seen from outside, through `/proc`: how much
//! memory one holds (VmRSS), whether it still runs; and whether a log
//! shows a panic.

use anyhow::Context;

/// The resident memory of process `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status: has the process exited?"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// The lines of `log` that report a panic.
pub fn panics(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("panicked")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_has_memory() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(rss_kib(me).unwrap() > 0);
        assert!(!alive(u32::MAX - 1));
        assert!(rss_kib(u32::MAX - 1).is_err());
    }

    #[test]
    fn panics_are_found_in_a_log() {
        let log = "ok\nthread 'main' panicked at src/x.rs:1:1:\nboom\n";
        assert_eq!(panics(log), vec!["thread 'main' panicked at src/x.rs:1:1:"]);
        assert!(panics("fine\n").is_empty());
    }
}
