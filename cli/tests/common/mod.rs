//! Test harness: a real node daemon on a temporary state dir, the real
//! `tether` binary, real PTYs. Everything started is killed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_net::runtime::NodeRuntime;
use tether_node::store::KeeperRecord;

pub const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// Polls `cond` every 10 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A state dir, maybe with a daemon running on it.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    /// Another state dir whose processes are also cleaned up.
    extra: Option<PathBuf>,
}

impl TestNode {
    /// An empty state dir, no daemon.
    pub fn empty() -> TestNode {
        TestNode {
            dir: tempfile::Builder::new()
                .prefix("tether-test")
                .tempdir()
                .unwrap(),
            daemon: None,
            extra: None,
        }
    }

    /// Also clean up the processes of the state dir `dir` on drop.
    pub fn adopt_dir(&mut self, dir: &Path) {
        self.extra = Some(dir.to_path_buf());
    }

    /// A state dir with a running daemon (small rings by default).
    pub fn start() -> TestNode {
        let mut n = TestNode::empty();
        std::fs::write(n.dir.path().join("node.toml"), "ring_size = 65536\n").unwrap();
        n.start_daemon();
        n
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `tether node` and waits for its ready line.
    pub fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// Starts `tether node ARGS` and waits for its ready line.
    pub fn start_daemon_with(&mut self, args: &[&str]) {
        assert!(self.daemon.is_none());
        let mut child = Command::new(TETHER)
            .arg("--state-dir")
            .arg(self.path())
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.path().join("test-node.log")).unwrap())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(
            line.contains("ready"),
            "node did not start: {line:?}; log: {}",
            self.log()
        );
        self.daemon = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("test-node.log")).unwrap_or_default()
    }

    /// SIGKILLs the daemon (not the keepers).
    pub fn kill_daemon(&mut self) {
        let mut c = self.daemon.take().expect("daemon running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Runs `tether --state-dir DIR args...`.
    pub fn tether(&self, args: &[&str]) -> Output {
        Command::new(TETHER)
            .arg("--state-dir")
            .arg(self.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs tether and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.tether(args);
        assert!(
            o.status.success(),
            "tether {args:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs tether, expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.tether(args);
        assert!(!o.status.success(), "tether {args:?} should have failed");
        String::from_utf8(o.stderr).unwrap()
    }

    /// `tether new -d ARGS -- CMD`; returns the ID.
    pub fn new_session(&self, opts: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["new", "-d"];
        args.extend_from_slice(opts);
        args.push("--");
        args.extend_from_slice(cmd);
        self.ok(&args).trim().to_string()
    }

    pub fn info(&self, target: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["info", target, "--json"])).unwrap()
    }

    pub fn state(&self, target: &str) -> String {
        self.info(target)["state"].as_str().unwrap().to_string()
    }

    pub fn tail(&self, target: &str) -> Vec<u8> {
        let o = self.tether(&["tail", target]);
        assert!(
            o.status.success(),
            "tail failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.path().join("sessions").join(id)
    }

    pub fn keeper_record(&self, id: &str) -> KeeperRecord {
        let b = std::fs::read(self.session_dir(id).join("keeper.json")).unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    pub fn runtime(&self) -> Option<NodeRuntime> {
        let b = std::fs::read(self.path().join("node.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// A protocol-level client (the library the CLI uses).
    pub async fn client(&self) -> Client {
        Client::connect_local(self.path(), None).await.unwrap()
    }
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dirs: Vec<PathBuf> = std::iter::once(self.path().to_path_buf())
            .chain(self.extra.clone())
            .collect();
        for d in dirs {
            cleanup_dir(&d);
        }
    }
}

fn cleanup_dir(dir: &Path) {
    {
        // A daemon started by the embedded default.
        if let Some(rt) = std::fs::read(dir.join("node.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<NodeRuntime>(&b).ok())
        {
            kill9(rt.pid as i32);
        }
        // Every keeper and session process.
        if let Ok(rd) = std::fs::read_dir(dir.join("sessions")) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path().join("keeper.json")) {
                    if let Ok(k) = serde_json::from_slice::<KeeperRecord>(&b) {
                        kill9(k.pid as i32);
                        kill9(k.keeper_pid as i32);
                    }
                }
            }
        }
    }
}

/// A program running in a real PTY, its output collected.
pub struct PtyProc {
    pub child: tokio::process::Child,
    writer: pty_process::OwnedWritePty,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl PtyProc {
    pub fn spawn(args: &[&str], size: (u16, u16)) -> PtyProc {
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(size.1, size.0)).unwrap();
        let child = pty_process::Command::new(TETHER)
            .args(args)
            .kill_on_drop(true)
            .spawn(pts)
            .unwrap();
        let (mut r, writer) = pty.into_split();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let o2 = out.clone();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtyProc {
            child,
            writer,
            out,
            reader,
        }
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub async fn write(&mut self, b: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(b).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// Waits until the output contains `text`.
    pub async fn expect(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {text:?}; output so far: {:?}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit; returns its code.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let st = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("process did not exit in time")
            .unwrap();
        // Let the reader collect the last bytes.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.reader).await;
        st.code().unwrap_or(-1)
    }
}
