//! How a local client finds the node of a state dir: the daemon holds
//! `node.lock` (flock) while it runs and publishes its address and
//! certificate fingerprint in `node.json`.
//!
//! ```text
//! <state>/node.lock   held by the running daemon
//! <state>/node.json   pid, QUIC address, node ID, fingerprint, version
//! <state>/node.log    log of a daemon started by a client
//! <state>/node.sock   the daemon's unix socket (the local fast path)
//! <state>/sessions/ID/keeper.sock   each session's keeper
//! ```
//!
//! # The local fast path
//! A client of the state dir's owner speaks the same frames as over QUIC,
//! on unix sockets: to a session's keeper for what concerns one running
//! session (attach, tail, send, kill), to the daemon's `node.sock` for
//! the rest (create, list, info, wait, remove, shares, locating a name).
//! No TLS, no key: the state dir is 0700, each socket 0600, and both
//! servers check that the peer runs as their own user (tmux's trust
//! model). An attached client thus holds no connection to the daemon.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tether_proto::NodeId;

/// The state dir used when none is given: `$TETHER_STATE_DIR`, else
/// `$XDG_STATE_HOME/tether`, else `~/.local/state/tether`.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("TETHER_STATE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("tether"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("neither TETHER_STATE_DIR, XDG_STATE_HOME nor HOME is set; pass --state-dir")?;
    Ok(PathBuf::from(home).join(".local/state/tether"))
}

/// What a running daemon publishes in `node.json` for local clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRuntime {
    /// Daemon PID.
    pub pid: u32,
    /// QUIC address it listens on.
    pub addr: std::net::SocketAddr,
    /// Its node ID.
    pub node_id: NodeId,
    /// Fingerprint of its certificate (hex).
    pub fingerprint: String,
    /// Version of the binary.
    pub version: String,
}

/// `<state>/node.json`.
pub fn runtime_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.json")
}

/// `<state>/node.lock`.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.lock")
}

/// `<state>/node.log`.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.log")
}

/// `<state>/node.sock`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.sock")
}

/// `<state>/sessions`.
pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

/// The name of a keeper's socket in its session's directory.
pub const KEEPER_SOCKET: &str = "keeper.sock";

/// Binds a unix socket at `path` that only this user may connect to:
/// mode 0600, in a state dir that is 0700 (so the moment between `bind`
/// and `chmod` is open to no one else either). A socket left by a process
/// that died is replaced; the caller holds the state dir's lock, so no
/// live server owns it.
pub fn bind_private_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the unix socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    Ok(l)
}

/// Whether the peer of a unix connection runs as this process's user.
pub fn peer_is_me(s: &tokio::net::UnixStream) -> bool {
    s.peer_cred()
        .is_ok_and(|c| c.uid() == nix::unistd::getuid().as_raw())
}

/// The exclusive lock a daemon holds on its state dir.
pub struct StateLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Result of trying to lock a state dir.
pub enum LockAttempt {
    /// This process now owns the state dir.
    Locked(StateLock),
    /// Another daemon holds it.
    Busy,
}

/// Takes the state dir's lock without waiting.
pub fn try_lock(state_dir: &Path) -> anyhow::Result<LockAttempt> {
    let path = lock_path(state_dir);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(LockAttempt::Locked(StateLock { _lock: l })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(LockAttempt::Busy),
        Err((_, e)) => Err(anyhow::Error::new(e).context(format!("locking {}", path.display()))),
    }
}

/// Makes `cmd` start its program in a new session (`setsid`): out of the
/// starter's process group and terminal, so that a signal to the starter's
/// group (Ctrl-C in its terminal, systemd stopping it) does not reach it.
/// Daemons started by a client and keepers started by a daemon both need it.
pub fn detach_on_spawn(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and calls only setsid,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = try_lock(d.path()).unwrap();
        assert!(matches!(a, LockAttempt::Locked(_)));
        assert!(matches!(try_lock(d.path()).unwrap(), LockAttempt::Busy));
        drop(a);
        assert!(matches!(
            try_lock(d.path()).unwrap(),
            LockAttempt::Locked(_)
        ));
    }
}
