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
