//! Everything the bench starts is registered here, and undone when its
//! [`Guard`] drops, when the bench ends (normally or with an error), and
//! on Ctrl-C, SIGTERM or SIGHUP.
//!
//! Processes are started in their own process group (or session), so one
//! `killpg` takes a process and whatever it started in its group. A tether
//! state dir is undone by testkit's PID-safe cleanup
//! ([`tether_testkit::cleanup`]): the daemon (`node.json`), every keeper
//! and session process (`sessions/*/keeper.json`), each only once `/proc`
//! proves it is still the recorded process, then the dir.

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
        Item::StateDir(dir) => match tether_testkit::cleanup::undo_state_dir(dir) {
            Ok(u) if !u.still_alive.is_empty() => eprintln!(
                "bench: processes of {} survived SIGKILL: {:?}",
                dir.display(),
                u.still_alive
            ),
            Ok(_) => {}
            Err(e) => eprintln!("bench: {e:#}"),
        },
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
