//! Everything the bench starts is registered here, and undone when its
//! [`Guard`] drops, when the bench ends (normally or with an error), and
//! on Ctrl-C, SIGTERM or SIGHUP.
//!
//! Processes are started in their own process group (or session), so one
//! `killpg` takes a process and whatever it started in its group. A tether
//! state dir is undone from its files: the daemon (`node.json`), every
//! keeper and session process (`sessions/*/keeper.json`), then the dir.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set once a signal asked the bench to stop: nothing new is started.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Something the bench started or made, and how to undo it.
#[derive(Debug, Clone)]
pub enum Item {
    /// A process group, by its leader's PID: SIGKILL to the group and to
    /// the PID.
    Group(i32),
    /// A tether state dir: its daemon, keepers and sessions are killed,
    /// then the dir is removed.
    StateDir(PathBuf),
    /// A tmux server on its own socket (`tmux -L NAME`): `kill-server`,
    /// then SIGKILL to its PID if known.
    Tmux {
        /// The `-L` socket name.
        socket: String,
        /// The server's PID, once known.
        pid: Option<i32>,
    },
    /// A file or directory to remove.
    Path(PathBuf),
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static ITEMS: Mutex<Vec<(u64, Item)>> = Mutex::new(Vec::new());

/// Undoes its item when dropped.
#[derive(Debug)]
pub struct Guard {
    id: u64,
}

/// Registers `item`; it is undone when the guard drops, or at exit.
pub fn register(item: Item) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    ITEMS.lock().expect("cleanup lock").push((id, item));
    Guard { id }
}

impl Guard {
    /// Replaces the item (for example once a server's PID is known).
    pub fn update(&self, item: Item) {
        let mut items = ITEMS.lock().expect("cleanup lock");
        if let Some(e) = items.iter_mut().find(|(id, _)| *id == self.id) {
            e.1 = item;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(item) = take(self.id) {
            undo(&item);
        }
    }
}

fn take(id: u64) -> Option<Item> {
    let mut items = ITEMS.lock().ok()?;
    let i = items.iter().position(|(x, _)| *x == id)?;
    Some(items.remove(i).1)
}

/// Undoes everything still registered, newest first.
pub fn undo_all() {
    let items: Vec<(u64, Item)> = match ITEMS.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for (_, item) in items.iter().rev() {
        undo(item);
    }
}

fn undo(item: &Item) {
    match item {
        Item::Group(pid) => kill_group(*pid),
        Item::StateDir(dir) => {
            kill_state_dir(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
        Item::Tmux { socket, pid } => {
            kill_tmux(socket);
            if let Some(p) = pid {
                kill_group(*p);
            }
            // A killed server leaves its socket file behind.
            let tmp = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
            let uid = nix::unistd::getuid();
            let _ = std::fs::remove_file(Path::new(&tmp).join(format!("tmux-{uid}")).join(socket));
        }
        Item::Path(p) => {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// SIGKILL to the group led by `pid` and to `pid` itself.
pub fn kill_group(pid: i32) {
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Whether `pid` still runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn cmdline_has(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}

fn environ_has(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}

/// The processes of a tether state dir that still run.
#[derive(Debug, Default)]
pub struct StatePids {
    /// The daemon.
    pub daemon: Option<i32>,
    /// Per session: its keeper and its process.
    pub sessions: Vec<SessionPids>,
}

/// The processes of one session.
#[derive(Debug, Clone, Copy)]
pub struct SessionPids {
    /// The keeper.
    pub keeper: Option<i32>,
    /// The session's process (its process group leader).
    pub process: Option<i32>,
}

/// The processes of a tether state dir, checked against `/proc` so that a
/// recycled PID is never taken for one of them.
pub fn state_dir_pids(dir: &Path) -> StatePids {
    let needle = dir.to_string_lossy().into_owned();
    let daemon = read_json(&dir.join("node.json"))
        .and_then(|v| v["pid"].as_i64())
        .map(|p| p as i32)
        .filter(|&p| cmdline_has(p, &needle));
    let mut sessions = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("sessions")) {
        for e in rd.flatten() {
            let Some(v) = read_json(&e.path().join("keeper.json")) else {
                continue;
            };
            let id = e.file_name().to_string_lossy().into_owned();
            let keeper = v["keeper_pid"]
                .as_i64()
                .map(|p| p as i32)
                .filter(|&p| cmdline_has(p, &needle));
            let process = v["pid"]
                .as_i64()
                .map(|p| p as i32)
                .filter(|&p| environ_has(p, &format!("TETHER_SESSION={id}")));
            sessions.push(SessionPids { keeper, process });
        }
    }
    StatePids { daemon, sessions }
}

fn read_json(p: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Kills the daemon, keepers and session processes of a state dir, and
/// waits (a little) until they are gone.
pub fn kill_state_dir(dir: &Path) {
    let found = state_dir_pids(dir);
    let mut pids = Vec::new();
    if let Some(d) = found.daemon {
        kill_group(d);
        pids.push(d);
    }
    for s in found.sessions {
        for pid in [s.keeper, s.process].into_iter().flatten() {
            kill_group(pid);
            pids.push(pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_tmux(socket: &str) {
    let child = std::process::Command::new("tmux")
        .args(["-L", socket, "kill-server"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut c) = child {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Installs the handler of SIGINT, SIGTERM and SIGHUP: it undoes
/// everything registered and exits with status 130.
pub fn install_signal_handler() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            use tokio::signal::unix::{signal, SignalKind};
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            let name = rt.block_on(async move {
                let sigs = (|| {
                    Ok::<_, std::io::Error>((
                        signal(SignalKind::interrupt())?,
                        signal(SignalKind::terminate())?,
                        signal(SignalKind::hangup())?,
                    ))
                })();
                let (mut int, mut term, mut hup) = match sigs {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return None;
                    }
                };
                Some(tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                })
            });
            if let Some(name) = name {
                INTERRUPTED.store(true, Ordering::SeqCst);
                crate::progress::clear();
                eprintln!("bench: {name}: stopping every process it started");
                undo_all();
                std::process::exit(130);
            }
        })?;
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the signal thread died"))??;
    Ok(())
}
