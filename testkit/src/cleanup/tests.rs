//! The PID-safety rule against real processes: ones that hold what the
//! rule asks for are killed; a live stranger under a recorded PID (what a
//! recycled PID looks like), a dead PID and a zombie are spared.

use super::*;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use tether_node::store::KeeperRecord;
use tether_proto::NodeId;

const SESSION: &str = "01TESTSESSION";

/// A child killed and reaped on drop, so a failing test leaks nothing.
struct Kid(Child);

impl Kid {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Whether it still runs (not reaped, not exited).
    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) until it has been killed by SIGKILL.
    fn killed(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st.signal() == Some(9);
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 600`, its stderr on `stderr` if given, `env` added.
fn sleeper(stderr: Option<&Path>, env: &[(&str, &str)]) -> Kid {
    let mut c = Command::new("sleep");
    c.arg("600").stdin(Stdio::null()).stdout(Stdio::null());
    match stderr {
        Some(p) => c.stderr(File::create(p).unwrap()),
        None => c.stderr(Stdio::null()),
    };
    for (k, v) in env {
        c.env(k, v);
    }
    Kid(c.spawn().unwrap())
}

fn state_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sessions").join(SESSION)).unwrap();
    d
}

fn record_daemon(dir: &Path, pid: i32) {
    let rt = NodeRuntime {
        pid: pid as u32,
        addr: "127.0.0.1:1".parse().unwrap(),
        node_id: NodeId([7; 8]),
        fingerprint: "00".into(),
        version: "test".into(),
    };
    std::fs::write(dir.join("node.json"), serde_json::to_vec(&rt).unwrap()).unwrap();
}

fn record_session(dir: &Path, keeper: i32, process: i32) {
    let k = KeeperRecord {
        keeper_pid: keeper as u32,
        pid: process as u32,
    };
    let p = dir.join("sessions").join(SESSION).join("keeper.json");
    std::fs::write(p, serde_json::to_vec(&k).unwrap()).unwrap();
}

fn spared(u: &Undone, pid: i32) -> Option<Spared> {
    u.spared.iter().find(|(r, _)| r.pid == pid).map(|(_, s)| *s)
}

#[test]
fn processes_that_hold_the_state_dir_are_killed() {
    let d = state_dir();
    let sdir = d.path().join("sessions").join(SESSION);
    // What the real ones hold: the daemon its lock file, the keeper its
    // log as stderr, the session process its ID in its environment.
    let mut daemon = sleeper(Some(&d.path().join("node.lock")), &[]);
    let mut keeper = sleeper(Some(&sdir.join("keeper.log")), &[]);
    let mut process = sleeper(None, &[("TETHER_SESSION", SESSION)]);
    record_daemon(d.path(), daemon.pid());
    record_session(d.path(), keeper.pid(), process.pid());

    let pids = state_dir_pids(d.path());
    assert_eq!(pids.daemon, Some(daemon.pid()));
    assert_eq!(pids.sessions.len(), 1);
    assert_eq!(pids.sessions[0].keeper, Some(keeper.pid()));
    assert_eq!(pids.sessions[0].process, Some(process.pid()));

    let u = kill_state_dir(d.path());
    assert_eq!(u.killed.len(), 3, "{u:?}");
    assert!(u.spared.is_empty() && u.still_alive.is_empty(), "{u:?}");
    assert!(daemon.killed() && keeper.killed() && process.killed());
}

#[test]
fn a_state_dir_reached_through_a_symlink_is_recognised() {
    let d = state_dir();
    let link_parent = tempfile::tempdir().unwrap();
    let link = link_parent.path().join("state");
    std::os::unix::fs::symlink(d.path(), &link).unwrap();
    let mut daemon = sleeper(Some(&link.join("node.lock")), &[]);
    record_daemon(&link, daemon.pid());
    // Recorded and undone under either name.
    assert_eq!(state_dir_pids(d.path()).daemon, Some(daemon.pid()));
    let u = kill_state_dir(&link);
    assert_eq!(u.killed.len(), 1, "{u:?}");
    assert!(daemon.killed());
}

#[test]
fn a_live_stranger_under_a_recorded_pid_is_spared() {
    // A recycled PID: a live process of the same user that holds nothing
    // of the state dir, recorded as daemon, keeper and session process.
    let d = state_dir();
    let mut stranger = sleeper(None, &[]);
    // Another session's process, and a process holding another state
    // dir's lock file, are strangers too.
    let other = state_dir();
    let mut other_session = sleeper(None, &[("TETHER_SESSION", "01OTHERSESSION")]);
    let mut other_daemon = sleeper(Some(&other.path().join("node.lock")), &[]);
    record_daemon(d.path(), other_daemon.pid());
    record_session(d.path(), stranger.pid(), other_session.pid());

    let pids = state_dir_pids(d.path());
    assert_eq!(pids.daemon, None);
    assert_eq!(
        (pids.sessions[0].keeper, pids.sessions[0].process),
        (None, None)
    );
    let u = kill_state_dir(d.path());
    assert!(u.killed.is_empty(), "{u:?}");
    for pid in [stranger.pid(), other_session.pid(), other_daemon.pid()] {
        assert_eq!(spared(&u, pid), Some(Spared::Unproven), "{u:?}");
    }
    assert!(stranger.running() && other_session.running() && other_daemon.running());
}

#[test]
fn a_session_process_is_proven_by_its_keeper_when_its_environment_is_gone() {
    // A session process that replaced its environment (`env -i`) is still
    // the child of its proven keeper.
    let d = state_dir();
    let sdir = d.path().join("sessions").join(SESSION);
    let mut keeper = Kid(Command::new("sh")
        .args(["-c", "env -i sleep 600 & wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(sdir.join("keeper.log")).unwrap())
        .spawn()
        .unwrap());
    let mut child = None;
    crate::poll_until("the keeper's child", Duration::from_secs(5), || {
        child = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            keeper.pid(),
            keeper.pid()
        ))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        Ok(child.is_some_and(|c: i32| {
            std::fs::read(format!("/proc/{c}/environ")).is_ok_and(|e| e.is_empty())
        }))
    })
    .unwrap();
    let child = child.unwrap();
    record_session(d.path(), keeper.pid(), child);
    let rec = Recorded {
        pid: child,
        role: Role::Session {
            session: SESSION.into(),
            keeper: keeper.pid(),
        },
    };
    assert_eq!(prove(d.path(), &rec), Ok(()));
    // The same process under another keeper's record is not proven.
    let stranger = sleeper(None, &[]);
    let rec2 = Recorded {
        pid: child,
        role: Role::Session {
            session: SESSION.into(),
            keeper: stranger.pid(),
        },
    };
    assert_eq!(prove(d.path(), &rec2), Err(Spared::Unproven));
    let u = kill_state_dir(d.path());
    assert_eq!(u.killed.len(), 2, "{u:?}");
    assert!(u.still_alive.is_empty(), "{u:?}");
    assert!(keeper.killed());
    assert!(!alive(child));
}

#[test]
fn dead_and_zombie_pids_are_skipped() {
    let d = state_dir();
    // Dead and reaped.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let dead = dead.id() as i32;
    // Dead, not reaped: a zombie.
    let mut zombie = Kid(Command::new("true").spawn().unwrap());
    crate::poll_until("the zombie", Duration::from_secs(5), || {
        Ok(!alive(zombie.pid()))
    })
    .unwrap();
    record_daemon(d.path(), dead);
    record_session(d.path(), zombie.pid(), dead);
    let u = kill_state_dir(d.path());
    assert!(u.killed.is_empty(), "{u:?}");
    assert_eq!(spared(&u, dead), Some(Spared::Gone));
    assert_eq!(spared(&u, zombie.pid()), Some(Spared::Gone));
    assert!(!zombie.running());
}

#[test]
fn this_process_and_init_are_never_signalled() {
    let d = state_dir();
    // Even holding the lock file, this process is not a candidate.
    let _lock = File::create(d.path().join("node.lock")).unwrap();
    record_daemon(d.path(), std::process::id() as i32);
    record_session(d.path(), 1, 0);
    let u = kill_state_dir(d.path());
    assert!(u.killed.is_empty(), "{u:?}");
    assert_eq!(u.spared.len(), 3);
    assert!(
        u.spared.iter().all(|(_, s)| *s == Spared::Reserved),
        "{u:?}"
    );
}

#[test]
fn undo_removes_the_dir_and_a_missing_dir_is_nothing_to_do() {
    let d = state_dir();
    let path = d.path().to_path_buf();
    let mut daemon = sleeper(Some(&path.join("node.lock")), &[]);
    record_daemon(&path, daemon.pid());
    let u = undo_state_dir(&path).unwrap();
    assert_eq!(u.killed.len(), 1);
    assert!(daemon.killed());
    assert!(!path.exists());
    let u = undo_state_dir(&path).unwrap();
    assert!(u.killed.is_empty() && u.spared.is_empty());
}
