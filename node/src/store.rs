//! The state dir: where a node keeps its identity, its sessions' metadata,
//! ring files, keeper sockets and exit records.
//!
//! ```text
//! <state>/node.lock            held (flock) by the running daemon
//! <state>/node.json            the running daemon: pid, QUIC address, node ID
//! <state>/node.log             log of a daemon started by the embedded default
//! <state>/identity/            keys and certificates (see identity.rs)
//! <state>/sessions/<id>/meta.json    written by the daemon at creation
//! <state>/sessions/<id>/ring         the ring buffer (written by the keeper)
//! <state>/sessions/<id>/keeper.sock  the keeper's unix socket
//! <state>/sessions/<id>/keeper.json  the keeper's and the process's PIDs
//! <state>/sessions/<id>/exit.json    written by the keeper when the process ends
//! <state>/sessions/<id>/keeper.log   the keeper's log
//! ```
//! Every JSON file is written crash-safely: temp file, fsync, rename, fsync
//! of the directory.

use anyhow::Context;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tether_proto::{ExitStatus, NodeId, Offset, SessionId, WinSize};

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

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create {}: check that its parent exists and is writable, or choose \
                 another --state-dir",
                dir.display()
            )
        })?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Writes a file crash-safely (mode 0600): after a crash at any point the
/// file holds either the old or the new contents.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
            ": the disk is full; free some space and try again"
        } else {
            ""
        };
        return Err(anyhow::Error::new(e).context(format!("writing {}{hint}", path.display())));
    }
    Ok(())
}

/// Writes a value as JSON, crash-safely.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v)?)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
            format!(
                "{} is corrupt; remove that session with `tether rm` or move the file away",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// What the daemon records when it creates a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Identity.
    pub id: SessionId,
    /// Optional unique name.
    #[serde(default)]
    pub name: Option<String>,
    /// Owning node.
    pub node: NodeId,
    /// Program and arguments, as the user gave them.
    pub command: Vec<String>,
    /// Launcher prefix from the config, run in front of the command.
    #[serde(default)]
    pub launcher: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Creation time (ms since the epoch).
    pub created_at_ms: u64,
    /// Ring size in bytes.
    pub ring_size: u64,
    /// Initial window size.
    pub size: WinSize,
}

/// What the keeper records once it runs the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeeperRecord {
    /// PID of the keeper.
    pub keeper_pid: u32,
    /// PID of the session's process (its session leader).
    pub pid: u32,
}

/// What the keeper records when the process has ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    /// How it ended.
    pub status: ExitStatus,
    /// End of output.
    pub end: Offset,
    /// When (ms since the epoch).
    pub exited_at_ms: u64,
}

/// Paths of one session's files.
#[derive(Debug, Clone)]
pub struct SessionPaths {
    /// The session's directory.
    pub dir: PathBuf,
}

impl SessionPaths {
    /// Paths of session `id` under `state_dir`.
    pub fn new(state_dir: &Path, id: SessionId) -> Self {
        SessionPaths {
            dir: sessions_dir(state_dir).join(id.to_string()),
        }
    }
    /// `meta.json`.
    pub fn meta(&self) -> PathBuf {
        self.dir.join("meta.json")
    }
    /// `ring`.
    pub fn ring(&self) -> PathBuf {
        self.dir.join("ring")
    }
    /// `keeper.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("keeper.sock")
    }
    /// `keeper.json`.
    pub fn keeper(&self) -> PathBuf {
        self.dir.join("keeper.json")
    }
    /// `exit.json`.
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    /// `keeper.log`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("keeper.log")
    }
}

/// `<state>/sessions`.
pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// A time as RFC 3339, to the second.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(read_json::<Vec<i32>>(&d.path().join("none"))
            .unwrap()
            .is_none());
        fs::write(&p, b"{garbage").unwrap();
        let e = read_json::<Vec<i32>>(&p).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

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
