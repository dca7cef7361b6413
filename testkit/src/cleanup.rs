//! Undoing a tether state dir without ever killing a stranger.
//!
//! A state dir records its processes in files: the daemon in `node.json`
//! ([`NodeRuntime::pid`]), each session's keeper and process in
//! `sessions/<id>/keeper.json` ([`KeeperRecord`]). Those files outlive the
//! processes, and a PID they name may since have been given to an
//! unrelated process. So a recorded PID is only a claim, checked in
//! `/proc` before any signal.
//!
//! # The rule
//! A recorded PID is signalled only if `/proc/<pid>` shows a live process
//! (not a zombie), other than this one and PID 1, running as this
//! process's effective user, that proves it is the recorded process by
//! something only that process holds:
//!
//! | record                       | proof                                                                 |
//! |------------------------------|-----------------------------------------------------------------------|
//! | daemon (`node.json`)         | it has `<dir>/node.lock` open: the daemon holds its flock on that file for as long as it runs |
//! | keeper (`keeper_pid`)        | it has a file of `<dir>/sessions/<id>/` open or mapped: its ring is mapped, its log is its stderr |
//! | session process (`pid`)      | its environment has `TETHER_SESSION=<id>` (the keeper sets it; session IDs are unique), or its parent is the proven keeper |
//!
//! Paths are compared after `canonicalize`, as the kernel reports them, so
//! a state dir reached through a symlink is recognised. A recycled PID
//! belongs to a process started after the recorded one ended; it cannot
//! hold this state dir's files or carry this session's ID unless it is
//! itself a process of this state dir (a new daemon on it, say), which is
//! what the cleanup wants gone anyway.
//!
//! Start times are not used: `/proc/stat` gives the boot time to the
//! second and the wall clock may step, so "started before its record was
//! written" cannot be decided for a process that writes its record within
//! a second of starting, which every tether process does.
//!
//! A proven process gets SIGKILL through `killpg` (the group it leads, if
//! any: keepers and session processes lead their own) and `kill`. A group
//! is named after the PID of the process that made it, and the kernel
//! does not give that PID out again while the group exists, so the group
//! named by a proven PID is that process's own. Check and signal are two
//! steps; for a stranger to be hit, the process would have to end and the
//! PID space wrap round in between.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tether_net::runtime::NodeRuntime;
use tether_node::store::KeeperRecord;

/// How long [`kill_state_dir`] waits for the processes it killed to be
/// gone.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a recorded PID claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The state dir's node daemon (`node.json`).
    Daemon,
    /// The keeper of a session (`keeper.json`, `keeper_pid`).
    Keeper {
        /// The session's ID (its directory's name).
        session: String,
    },
    /// A session's process (`keeper.json`, `pid`).
    Session {
        /// The session's ID (its directory's name).
        session: String,
        /// The PID of its keeper, from the same record.
        keeper: i32,
    },
}

/// A PID named by a record file of a state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The PID.
    pub pid: i32,
    /// What it claims to be.
    pub role: Role,
}

/// Why a recorded PID was not signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spared {
    /// No such process, or a zombie: nothing to kill.
    Gone,
    /// PID 0, 1 or below, or this very process.
    Reserved,
    /// It runs as another user.
    OtherUser,
    /// It runs but holds nothing of the state dir: a recycled PID.
    Unproven,
}

/// What [`kill_state_dir`] did.
#[derive(Debug, Default)]
pub struct Undone {
    /// Proven and sent SIGKILL.
    pub killed: Vec<Recorded>,
    /// Not signalled, and why.
    pub spared: Vec<(Recorded, Spared)>,
    /// Killed but still running after [`GONE_TIMEOUT`].
    pub still_alive: Vec<i32>,
}

/// The proven processes of a state dir.
#[derive(Debug, Default)]
pub struct StatePids {
    /// The daemon.
    pub daemon: Option<i32>,
    /// Per session, in no particular order.
    pub sessions: Vec<SessionPids>,
}

/// The proven processes of one session.
#[derive(Debug, Clone)]
pub struct SessionPids {
    /// The session's ID.
    pub id: String,
    /// Its keeper.
    pub keeper: Option<i32>,
    /// Its process (the leader of its process group).
    pub process: Option<i32>,
}

/// Every PID the state dir's record files name; unreadable records are
/// skipped.
pub fn records(dir: &Path) -> Vec<Recorded> {
    let mut out = Vec::new();
    if let Some(rt) = read_json::<NodeRuntime>(&dir.join("node.json")) {
        out.push(Recorded {
            pid: rt.pid as i32,
            role: Role::Daemon,
        });
    }
    let Ok(sessions) = std::fs::read_dir(dir.join("sessions")) else {
        return out;
    };
    for e in sessions.flatten() {
        let session = e.file_name().to_string_lossy().into_owned();
        let Some(k) = read_json::<KeeperRecord>(&e.path().join("keeper.json")) else {
            continue;
        };
        out.push(Recorded {
            pid: k.keeper_pid as i32,
            role: Role::Keeper {
                session: session.clone(),
            },
        });
        out.push(Recorded {
            pid: k.pid as i32,
            role: Role::Session {
                session,
                keeper: k.keeper_pid as i32,
            },
        });
    }
    out
}

/// Checks a recorded PID against `/proc` (see the module's rule): `Ok` if
/// it is provably the recorded process of `dir`.
pub fn prove(dir: &Path, rec: &Recorded) -> Result<(), Spared> {
    let canon = std::fs::canonicalize(dir).map_err(|_| Spared::Gone)?;
    prove_in(&canon, rec)
}

fn prove_in(canon: &Path, rec: &Recorded) -> Result<(), Spared> {
    let pid = rec.pid;
    if pid <= 1 || pid == std::process::id() as i32 {
        return Err(Spared::Reserved);
    }
    if !alive(pid) {
        return Err(Spared::Gone);
    }
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map_err(|_| Spared::Gone)?
        .uid();
    if owner != nix::unistd::geteuid().as_raw() {
        return Err(Spared::OtherUser);
    }
    let proven = match &rec.role {
        Role::Daemon => {
            let lock = canon.join("node.lock");
            holds(pid, |p| p == lock)
        }
        Role::Keeper { session } => {
            let sdir = canon.join("sessions").join(session);
            holds(pid, |p| p.starts_with(&sdir))
        }
        Role::Session { session, keeper } => {
            environ_has(pid, &format!("TETHER_SESSION={session}"))
                || (parent(pid) == Some(*keeper)
                    && prove_in(
                        canon,
                        &Recorded {
                            pid: *keeper,
                            role: Role::Keeper {
                                session: session.clone(),
                            },
                        },
                    )
                    .is_ok())
        }
    };
    if proven {
        Ok(())
    } else {
        Err(Spared::Unproven)
    }
}

/// The processes of a state dir that run and are proven to be its own.
pub fn state_dir_pids(dir: &Path) -> StatePids {
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return StatePids::default();
    };
    let mut out = StatePids::default();
    for rec in records(dir) {
        let pid = prove_in(&canon, &rec).is_ok().then_some(rec.pid);
        match rec.role {
            Role::Daemon => out.daemon = pid,
            Role::Keeper { session } => out.sessions.push(SessionPids {
                id: session,
                keeper: pid,
                process: None,
            }),
            Role::Session { session, .. } => {
                if let Some(s) = out.sessions.iter_mut().find(|s| s.id == session) {
                    s.process = pid;
                }
            }
        }
    }
    out
}

/// Kills the daemon, keepers and session processes of `dir` that are
/// proven to be its own (see the module's rule), and waits up to
/// [`GONE_TIMEOUT`] until they are gone. The dir is left in place.
pub fn kill_state_dir(dir: &Path) -> Undone {
    let mut undone = Undone::default();
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return undone;
    };
    // Every proof before any signal: a session process may be proven by
    // its keeper, which the first kill would take away.
    for rec in records(dir) {
        match prove_in(&canon, &rec) {
            Ok(()) => undone.killed.push(rec),
            Err(why) => undone.spared.push((rec, why)),
        }
    }
    for rec in &undone.killed {
        sigkill(rec.pid);
    }
    let deadline = Instant::now() + GONE_TIMEOUT;
    loop {
        undone.still_alive = undone
            .killed
            .iter()
            .map(|r| r.pid)
            .filter(|&p| alive(p))
            .collect();
        if undone.still_alive.is_empty() || Instant::now() > deadline {
            return undone;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`kill_state_dir`], then removes the dir.
pub fn undo_state_dir(dir: &Path) -> anyhow::Result<Undone> {
    let undone = kill_state_dir(dir);
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!(
                "removing the state dir {}; remove it by hand",
                dir.display()
            )))
        }
        _ => Ok(undone),
    }
}

/// Whether `pid` runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    stat_fields(pid)
        .is_some_and(|f| !matches!(f.first().map(String::as_str), Some("Z" | "X" | "x")))
}

/// SIGKILL to the group led by `pid` (unless it is this process's own
/// group) and to `pid`.
fn sigkill(pid: i32) {
    let p = Pid::from_raw(pid);
    if p != nix::unistd::getpgrp() {
        let _ = killpg(p, Signal::SIGKILL);
    }
    let _ = kill(p, Signal::SIGKILL);
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid,
/// ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may itself hold ") ".
    let (_, rest) = s.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Whether `pid` has a file for which `matches` holds open (an fd) or
/// mapped.
fn holds(pid: i32, matches: impl Fn(&Path) -> bool) -> bool {
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| matches(&t)) {
                return true;
            }
        }
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().any(|l| {
        // Address, perms, offset, device, inode, then the path (if any),
        // the only field that holds a '/'.
        l.find('/').is_some_and(|i| {
            let path = l[i..].trim_end();
            matches(Path::new(path.strip_suffix(" (deleted)").unwrap_or(path)))
        })
    })
}

fn environ_has(pid: i32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|b| b.split(|&c| c == 0).any(|e| e == entry.as_bytes()))
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

#[cfg(test)]
mod tests;
