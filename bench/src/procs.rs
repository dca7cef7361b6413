//! Starting and timing processes. Every process runs in its own process
//! group (so Ctrl-C in the bench's terminal reaches only the bench, which
//! then cleans up), with a clean environment (no `TMUX`, no
//! `TETHER_STATE_DIR`, a known `TERM`), and is registered for cleanup.

use crate::cleanup::{self, Guard, Item, INTERRUPTED};
use anyhow::{bail, Context};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// `TERM` for every program the bench starts.
pub const TERM: &str = "xterm-256color";

/// A command with the bench's defaults: own process group, clean
/// environment, no stdio, killed if dropped.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .env_remove("TETHER_STATE_DIR")
        .env("TERM", TERM)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    c
}

/// A running process, killed with its group when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its PID (= its process group).
    pub pid: i32,
    what: String,
    _guard: Guard,
}

impl Proc {
    /// Starts `cmd`; `what` names it in errors.
    pub fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Proc> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let pid = child.id().context("the process vanished at once")? as i32;
        Ok(Proc {
            child,
            pid,
            what: what.into(),
            _guard: cleanup::register(Item::Group(pid)),
        })
    }

    /// Waits for the exit, at most `timeout` (then kills it: an error).
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(r) => r.with_context(|| format!("waiting for {}", self.what)),
            Err(_) => {
                self.kill().await;
                bail!("{} did not finish within {timeout:?}", self.what)
            }
        }
    }

    /// Waits for the exit and expects success.
    pub async fn wait_ok(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let st = self.wait(timeout).await?;
        if !st.success() {
            bail!("{} failed: {st}", self.what);
        }
        Ok(())
    }

    /// SIGKILL to its group, then reaps it.
    pub async fn kill(&mut self) {
        cleanup::kill_group(self.pid);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Runs `cmd` to its end as a whole process: returns the wall time from
/// spawn to exit, and fails if it fails.
pub async fn timed(cmd: &mut Command, timeout: Duration, what: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut p = Proc::spawn(cmd, what)?;
    p.wait_ok(timeout).await?;
    Ok(t0.elapsed())
}

/// Runs `cmd` with stdout and stderr captured; returns the wall time and
/// the output, and fails if it fails.
pub async fn timed_output(
    cmd: &mut Command,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<(Duration, Output)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let t0 = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let _guard = child
        .id()
        .map(|pid| cleanup::register(Item::Group(pid as i32)));
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{what} did not finish within {timeout:?}"))?
        .with_context(|| format!("running {what}"))?;
    let t = t0.elapsed();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((t, out))
}

/// Runs `cmd` and returns its stdout; fails if it fails.
pub async fn output(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let (_, out) = timed_output(cmd, Duration::from_secs(60), what).await?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `cond` every `every` until it holds, at most `timeout`.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        tokio::time::sleep(every).await;
    }
}

/// Whether `program` is found on `PATH` and runs with `args`; returns its
/// first line of output.
pub fn probe(program: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// Single-quotes `s` for `sh`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Single-quotes a path for `sh`.
pub fn qpath(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// PSS of a process in KiB, from `/proc/PID/smaps_rollup`.
pub fn pss_kib(pid: i32) -> Option<u64> {
    rollup_kib(pid, "Pss:")
}

/// One figure of `/proc/PID/smaps_rollup` in KiB (`field` with its
/// colon: `"Pss:"`, `"Private_Dirty:"`).
pub fn rollup_kib(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// PSS in KiB of the mappings of `pid` whose path ends with `suffix`,
/// from `/proc/PID/smaps`.
pub fn mapping_pss_kib(pid: i32, suffix: &str) -> Option<u64> {
    mapping_kib(pid, suffix, "Pss:")
}

/// The sum of `field` (`"Pss:"`, `"Private_Dirty:"`) in KiB over the
/// mappings of `pid` whose path ends with `suffix`, from
/// `/proc/PID/smaps`.
pub fn mapping_kib(pid: i32, suffix: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut total = 0;
    let mut inside = false;
    for line in s.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        // A mapping's header line starts with its address range.
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.trim_end().ends_with(suffix);
        } else if inside && line.starts_with(field) {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`;
/// with `thread`, only that thread's (`/proc/PID/task/TID/stat`).
pub fn cpu_time(pid: i32, thread: Option<i32>) -> Option<Duration> {
    let path = match thread {
        Some(t) => format!("/proc/{pid}/task/{t}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    parse_cpu(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime of a `stat` line, in the kernel's USER_HZ (100 on Linux)
/// ticks.
fn parse_cpu(stat: &str) -> Option<Duration> {
    // The command name, in parentheses, may hold spaces: count fields
    // after its closing one (field 3, the state, comes first).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The threads of `pid` named `name` (`/proc/PID/task/TID/comm`).
pub fn threads_named(pid: i32, name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn own_pss_is_read() {
        let me = std::process::id() as i32;
        assert!(pss_kib(me).unwrap() > 0);
        assert_eq!(mapping_pss_kib(me, "/no/such/file"), Some(0));
        assert!(rollup_kib(me, "Private_Dirty:").unwrap() > 0);
    }

    #[test]
    fn cpu_time_is_read() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu(line), Some(Duration::from_millis(3250)));
        let me = std::process::id() as i32;
        assert!(cpu_time(me, None).is_some());
        assert!(cpu_time(me, Some(me)).is_some());
        assert!(threads_named(me, "no such thread").is_empty());
    }
}
