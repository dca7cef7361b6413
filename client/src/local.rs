//! Finding the node of a state dir, and starting one when none runs: the
//! daemon holds `node.lock` while it runs and publishes `node.json`
//! (see `tether_net::runtime`).

use crate::dial::Autostart;
use crate::error::ClientError;
use anyhow::Context;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tether_net::files;
use tether_net::runtime::{self as store, NodeRuntime};

/// How long a client waits for a node it started to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The running node of `state_dir`, if any.
pub(crate) fn running_node(state_dir: &Path) -> anyhow::Result<Option<NodeRuntime>> {
    if !state_dir.exists() {
        return Ok(None);
    }
    match store::try_lock(state_dir)? {
        // Nobody holds the lock: no daemon (the lock drops here).
        store::LockAttempt::Locked(_) => Ok(None),
        store::LockAttempt::Busy => {
            let rt: Option<NodeRuntime> = files::read_json(&store::runtime_path(state_dir))?;
            Ok(rt.filter(|r| pid_alive(r.pid)))
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Starts `tether node` on `state_dir` (daemonized, in its own session,
/// logging to `<state>/node.log`) and waits until it is ready, or until
/// another starter's node is.
pub(crate) async fn start_node(
    state_dir: &Path,
    a: &Autostart,
) -> Result<NodeRuntime, ClientError> {
    let config = |e: anyhow::Error| ClientError::Config(format!("{e:#}"));
    files::create_private_dir(state_dir).map_err(config)?;
    let log_path = store::log_path(state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))
        .map_err(config)?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))
        .map_err(config)?;
    let mut cmd = std::process::Command::new(&a.exe);
    cmd.arg("node")
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log2)
        .stderr(log);
    tether_net::runtime::detach_on_spawn(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        ClientError::Config(format!(
            "cannot start the tether node ({}): {e}",
            a.exe.display()
        ))
    })?;
    let pid = child.id();
    let not_started =
        |reason: String| ClientError::connect(reason, format!("see {}", log_path.display()));
    // If it exits while we wait (a lost race with another starter), it is
    // reaped here; otherwise it lives on, re-parented to init.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut exited = false;
    loop {
        if let Some(rt) = files::read_json::<NodeRuntime>(&store::runtime_path(state_dir))
            .ok()
            .flatten()
        {
            if rt.pid == pid || (exited && pid_alive(rt.pid)) {
                return Ok(rt);
            }
        }
        if !exited {
            if let Some(status) = child.try_wait().map_err(|e| not_started(e.to_string()))? {
                exited = true;
                let other_runs = running_node(state_dir).map_err(config)?.is_some()
                    || matches!(
                        store::try_lock(state_dir).map_err(config)?,
                        store::LockAttempt::Busy
                    );
                if !other_runs {
                    return Err(ClientError::connect(
                        format!(
                            "the tether node exited at start ({status}): {}",
                            last_line(&log_path)
                        ),
                        format!("see {}", log_path.display()),
                    ));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(not_started(format!(
                "the tether node did not become ready within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("see {}", path.display()))
}

/// The unix sockets of a local node's state dir: the fast path (see
/// [`tether_net::runtime`]). Each request is one connection, as each is
/// one QUIC stream over the network.
#[derive(Debug, Clone)]
pub(crate) struct Sockets {
    pub(crate) state_dir: std::path::PathBuf,
}

impl Sockets {
    /// A connection to the daemon's `node.sock`.
    pub(crate) async fn daemon(&self) -> Result<tokio::net::UnixStream, ClientError> {
        let path = store::socket_path(&self.state_dir);
        tokio::net::UnixStream::connect(&path).await.map_err(|e| {
            ClientError::connect(
                format!("the node daemon does not answer on {}: {e}", path.display()),
                format!(
                    "run the command again to start a new one (its log: {})",
                    store::log_path(&self.state_dir).display()
                ),
            )
        })
    }

    /// A connection to the keeper of session `id`; an error when it does
    /// not run (the session ended, or its keeper died).
    pub(crate) async fn keeper(
        &self,
        id: tether_proto::SessionId,
    ) -> std::io::Result<tokio::net::UnixStream> {
        let path = store::sessions_dir(&self.state_dir)
            .join(id.to_string())
            .join(store::KEEPER_SOCKET);
        tokio::net::UnixStream::connect(path).await
    }

    /// The session `target` names when the sessions dir alone tells: a
    /// full ID, or a prefix of exactly one ID (an ID prefix wins over a
    /// name, as in [`tether_proto::resolve::resolve_target`]). `None` when
    /// only the daemon can tell (a name, no match, several matches).
    pub(crate) fn id_of(&self, target: &str) -> Option<tether_proto::SessionId> {
        use tether_proto::resolve::MIN_PREFIX_LEN;
        let lower = target.to_ascii_lowercase();
        if lower.len() < MIN_PREFIX_LEN || tether_proto::ids::validate_prefix(&lower).is_err() {
            return None;
        }
        let dir = std::fs::read_dir(store::sessions_dir(&self.state_dir)).ok()?;
        let mut found = None;
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(&lower) {
                continue;
            }
            let Ok(id) = name.parse() else { continue };
            if found.replace(id).is_some() {
                return None;
            }
        }
        found
    }
}
