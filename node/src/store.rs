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
//! Every JSON file is written crash-safely ([`tether_net::files`]): temp
//! file, fsync, rename, fsync of the directory. Every file is private
//! (0600, the keeper's socket too), not only the directories (0700). The
//! daemon's lock and `node.json` are the contract with local clients, in
//! [`tether_net::runtime`].

pub use tether_net::files::{create_private_dir, read_json, write_atomic, write_json};
pub use tether_net::runtime::{
    lock_path, log_path, runtime_path, socket_path, try_lock, LockAttempt, NodeRuntime, StateLock,
};
pub use tether_net::time::now_ms;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tether_proto::{ExitStatus, NodeId, Offset, SessionId, WinSize};

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
    /// Who created it: a fleet client's name; none for the node's local
    /// owner (also when the metadata was damaged: only the local owner
    /// and admins may then touch it).
    #[serde(default)]
    pub owner: Option<String>,
    /// Who else may see it (and type, unless read-only).
    #[serde(default)]
    pub shared: Vec<tether_proto::Share>,
    /// Lines of history its terminal emulator keeps; `None`: it has no
    /// emulator (turned off, or created before there was one).
    #[serde(default)]
    pub screen_history: Option<u32>,
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
        self.dir.join(tether_net::runtime::KEEPER_SOCKET)
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

/// What a [`SessionInfo`] adds to the metadata: figures that change.
pub struct Figures<'a> {
    /// State now.
    pub state: tether_proto::SessionState,
    /// How it ended, once it did.
    pub exit: Option<&'a ExitRecord>,
    /// Window size.
    pub size: WinSize,
    /// Oldest offset in the ring.
    pub start: Offset,
    /// End of output.
    pub end: Offset,
    /// Clients attached.
    pub clients: u32,
    /// PID of the session's process, while it runs.
    pub pid: Option<u32>,
}

impl SessionMeta {
    /// The session's info on the wire: the one place, for keeper and
    /// daemon alike, where metadata and figures become a [`SessionInfo`].
    pub fn info(&self, f: Figures<'_>) -> tether_proto::SessionInfo {
        tether_proto::SessionInfo {
            id: self.id,
            name: self.name.clone(),
            node: self.node,
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            created_at_ms: self.created_at_ms,
            state: f.state,
            exit: f.exit.map(|e| e.status),
            exited_at_ms: f.exit.map(|e| e.exited_at_ms),
            size: f.size,
            start_offset: f.start,
            end_offset: f.end,
            ring_size: self.ring_size,
            clients: f.clients,
            pid: f.pid,
            node_name: None,
            unreachable: None,
            owner: self.owner.clone(),
            shared: self.shared.clone(),
            foreground: None,
            awaiting_input: false,
        }
    }
}

impl SessionMeta {
    /// What is still known of session `id` when its `meta.json` is missing
    /// or unreadable: its ID (the directory's name), its node, the ring's
    /// capacity from the ring file's header, and as its creation time the
    /// time its keeper recorded itself (else its directory's). No name, no
    /// command.
    pub fn unknown(id: SessionId, node: NodeId, paths: &SessionPaths) -> SessionMeta {
        let mtime_ms = |p: PathBuf| {
            let t = std::fs::metadata(p).ok()?.modified().ok()?;
            Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
        };
        SessionMeta {
            id,
            name: None,
            node,
            command: Vec::new(),
            launcher: Vec::new(),
            cwd: String::new(),
            env: Vec::new(),
            created_at_ms: mtime_ms(paths.keeper())
                .or_else(|| mtime_ms(paths.dir.clone()))
                .unwrap_or(0),
            ring_size: crate::ring::peek(&paths.ring()).map_or(0, |h| h.cap),
            size: WinSize::default(),
            owner: None,
            shared: Vec::new(),
            screen_history: None,
        }
    }
}

/// Opens (creating it 0600) a session's `keeper.log` for appending: the
/// keeper's stderr.
pub fn open_keeper_log(paths: &SessionPaths) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.log())
        .with_context(|| format!("opening {}", paths.log().display()))
}

/// Makes the daemon's `node.log` private (0600) if it is there. A client
/// that starts a daemon in the background creates the log before the
/// daemon runs, with whatever mode its umask gives; the daemon, which
/// writes to it, makes sure that nobody else can read it.
pub fn make_log_private(state_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = log_path(state_dir);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private (0600)", path.display()))
        }
        _ => Ok(()),
    }
}

/// `<state>/sessions`.
pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    tether_net::runtime::sessions_dir(state_dir)
}
