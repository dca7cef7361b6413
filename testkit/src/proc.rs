//! Processes with deadlines: a command run to its end ([`output`]), a
//! daemon started until its ready line ([`Daemon`]).

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a CLI command run by the harness may take before it is killed
/// and reported as hung.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a daemon (`tether node`, `tether relay`) may take to print its
/// ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the output pipes may stay open after the process exited (a
/// process it started may hold them).
const PIPE_GRACE: Duration = Duration::from_secs(10);

/// Runs `cmd` to its end with stdin closed and stdout and stderr captured,
/// as [`Command::output`] does, but kills it and fails after `timeout`.
pub fn output(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let what = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status: ExitStatus = match rx.recv_timeout(timeout) {
        Ok(st) => st.with_context(|| format!("waiting for {what}"))?,
        Err(_) => {
            // Not reaped yet, so the PID is still this child's.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!("{what} did not finish within {timeout:?} and was killed; it hangs");
        }
    };
    let collect = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
        rx.recv_timeout(PIPE_GRACE).with_context(|| {
            format!(
                "the {name} of {what} stayed open {PIPE_GRACE:?} after it exited: \
                 a process it started holds it"
            )
        })
    };
    Ok(Output {
        status,
        stdout: collect(stdout, "stdout")?,
        stderr: collect(stderr, "stderr")?,
    })
}

/// [`output`] as a method of [`Command`]: `cmd.output_within(T)` where a
/// test would write `cmd.output()`.
pub trait OutputWithin {
    /// Runs the command to its end, at most `timeout`; see [`output`].
    fn output_within(&mut self, timeout: Duration) -> anyhow::Result<Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, timeout: Duration) -> anyhow::Result<Output> {
        output(self, timeout)
    }
}

/// A child a test spawned itself, killed (SIGKILL) and reaped when
/// dropped, also when the test panics. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Until it is reaped the PID is this child's; after, kill fails.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tether ARGS` (bounded by [`CLI_TIMEOUT`]) and expects success;
/// returns its stdout.
pub fn tether_ok(tether: &Path, args: &[&str]) -> anyhow::Result<String> {
    let o = output(Command::new(tether).args(args), CLI_TIMEOUT)?;
    if !o.status.success() {
        bail!(
            "tether {} failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    String::from_utf8(o.stdout).with_context(|| format!("stdout of tether {}", args.join(" ")))
}

/// Reads a pipe to its end on a thread; the bytes arrive on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// `program arg arg...`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A long-running process (`tether node`, `tether relay`) started until it
/// printed its ready line; its stderr goes to a log file. Killed (SIGKILL)
/// and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stderr appended to `log` and waits up to
    /// [`READY_TIMEOUT`] for a first stdout line that says `ready`. Its
    /// later stdout is read and dropped, so it never blocks on a full pipe.
    pub fn start(cmd: &mut Command, log: &Path) -> anyhow::Result<Daemon> {
        let what = describe(cmd);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening the log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let stdout = child.stdout.take().context("the daemon's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let mut d = Daemon {
            child,
            what,
            log: log.to_path_buf(),
        };
        let t0 = Instant::now();
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.contains("ready") => Ok(d),
            got => {
                let _ = d.kill();
                let line = got.map_or_else(|_| "no line".to_string(), |l| format!("{l:?}"));
                bail!(
                    "{} did not get ready ({line} after {:?}); its log {}:\n{}",
                    d.what,
                    t0.elapsed(),
                    d.log.display(),
                    log_tail(&d.log)
                )
            }
        }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs it and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        // Our child, not reaped yet: the PID is still its own.
        let _ = self.child.kill();
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.what))?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 4 KiB of a log file, for an error message.
pub fn log_tail(path: &Path) -> String {
    let b = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&b[b.len().saturating_sub(4096)..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded() {
        let o = output(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            CLI_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            (&o.stdout[..], &o.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        let t0 = Instant::now();
        let e = output(Command::new("sleep").arg("600"), Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("sleep 600 did not finish"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_daemon_needs_its_ready_line() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let mut ok = Daemon::start(
            Command::new("sh").args(["-c", "echo ready; exec sleep 600"]),
            &log,
        )
        .unwrap();
        let pid = ok.pid() as i32;
        ok.kill().unwrap();
        assert!(!crate::cleanup::alive(pid));
        let e = Daemon::start(
            Command::new("sh").args(["-c", "echo broken >&2; echo nope"]),
            &log,
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("did not get ready") && e.contains("broken"),
            "{e}"
        );
    }
}
