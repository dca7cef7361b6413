//! [`TestNode`]: a real `tether node` on a temporary state dir, the real
//! `tether` binary pointed at it, and the library client.
//!
//! Starting and stopping return errors (with the daemon's log); the
//! helpers that run a verb and check its outcome ([`TestNode::ok`],
//! [`TestNode::fails`], [`TestNode::info`], ...) panic instead, because in
//! a test they are assertions.

use crate::cleanup;
use crate::config::write_node_config;
use crate::proc::{output, Daemon, CLI_TIMEOUT};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tether_client::Client;
use tether_net::runtime::NodeRuntime;
use tether_node::store::KeeperRecord;
use tether_node::NodeConfig;

/// A state dir, maybe with a daemon running on it. On drop (also when the
/// test panics) the daemon is killed, then every process the state dir
/// records (see [`cleanup`]), then the dir is removed.
pub struct TestNode {
    tether: PathBuf,
    daemon: Option<Daemon>,
    /// What `tether node` was last started with.
    daemon_args: Vec<String>,
    /// Other state dirs whose processes are cleaned up with this one.
    extra: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// An empty state dir, no daemon. `tether` is the binary every verb
    /// runs (`env!("CARGO_BIN_EXE_tether")` in the cli crate's tests).
    pub fn empty(tether: impl Into<PathBuf>) -> anyhow::Result<TestNode> {
        let dir = tempfile::Builder::new()
            .prefix("tether-test")
            .tempdir()
            .context("creating a temporary state dir")?;
        Ok(TestNode {
            tether: tether.into(),
            daemon: None,
            daemon_args: Vec::new(),
            extra: Vec::new(),
            dir,
        })
    }

    /// A state dir with a running daemon, configured by
    /// [`NodeConfig::for_test`] (a 64 KiB ring).
    pub fn start(tether: impl Into<PathBuf>) -> anyhow::Result<TestNode> {
        TestNode::start_with_config(tether, &NodeConfig::for_test())
    }

    /// A state dir whose `node.toml` is `cfg`, with a running daemon.
    pub fn start_with_config(
        tether: impl Into<PathBuf>,
        cfg: &NodeConfig,
    ) -> anyhow::Result<TestNode> {
        let mut n = TestNode::empty(tether)?;
        n.write_config(cfg)?;
        n.start_daemon()?;
        Ok(n)
    }

    /// Writes `<state>/node.toml`, read by the next daemon start.
    pub fn write_config(&self, cfg: &NodeConfig) -> anyhow::Result<()> {
        write_node_config(&self.path().join("node.toml"), cfg)
    }

    /// Also cleans up the processes of the state dir `dir` on drop (for a
    /// test that ran tether on a state dir of its own).
    pub fn adopt_dir(&mut self, dir: &Path) {
        self.extra.push(dir.to_path_buf());
    }

    /// The state dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `tether` binary.
    pub fn tether_bin(&self) -> &Path {
        &self.tether
    }

    /// Starts `tether node` (with the arguments of the last
    /// [`TestNode::start_daemon_with`], if any) and waits for its ready
    /// line.
    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
        if self.daemon.is_some() {
            anyhow::bail!("the daemon of {} already runs", self.path().display());
        }
        let mut cmd = self.command();
        cmd.arg("node").args(&self.daemon_args);
        let d = Daemon::start(&mut cmd, &self.log_path())
            .with_context(|| format!("starting the node of {}", self.path().display()))?;
        self.daemon = Some(d);
        Ok(())
    }

    /// Starts `tether --state-dir DIR node ARGS` and waits for its ready
    /// line; its stderr goes to `<state>/test-node.log`. Later restarts
    /// ([`TestNode::start_daemon`]) use the same `ARGS`.
    pub fn start_daemon_with(&mut self, args: &[&str]) -> anyhow::Result<()> {
        self.daemon_args = args.iter().map(|a| a.to_string()).collect();
        self.start_daemon()
    }

    /// SIGKILLs the daemon (not the keepers) and reaps it.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        let mut d = self
            .daemon
            .take()
            .context("kill_daemon: no daemon runs; start one first")?;
        d.kill()
    }

    /// The PID of the daemon this harness started, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("test-node.log")
    }

    /// The log of the daemons this harness started (every start appends).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `tether --state-dir DIR`, to add arguments to.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.tether);
        c.arg("--state-dir").arg(self.path());
        c
    }

    /// Runs `tether --state-dir DIR ARGS...` (stdin closed, at most
    /// [`CLI_TIMEOUT`]). Panics if it cannot run or hangs.
    pub fn tether(&self, args: &[&str]) -> Output {
        output(self.command().args(args), CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
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
        String::from_utf8(o.stdout).expect("tether's stdout is UTF-8")
    }

    /// Runs tether and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.tether(args);
        assert!(!o.status.success(), "tether {args:?} should have failed");
        String::from_utf8(o.stderr).expect("tether's stderr is UTF-8")
    }

    /// `tether new -d OPTS -- CMD`; returns the session's ID.
    pub fn new_session(&self, opts: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["new", "-d"];
        args.extend_from_slice(opts);
        args.push("--");
        args.extend_from_slice(cmd);
        self.ok(&args).trim().to_string()
    }

    /// `tether info TARGET --json`.
    pub fn info(&self, target: &str) -> serde_json::Value {
        let out = self.ok(&["info", target, "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tether info --json: {e}: {out}"))
    }

    /// The session's state (`running`, `exited`, `lost`).
    pub fn state(&self, target: &str) -> String {
        let info = self.info(target);
        info["state"]
            .as_str()
            .unwrap_or_else(|| panic!("no state in {info}"))
            .to_string()
    }

    /// `tether tail TARGET`: the session's ring.
    pub fn tail(&self, target: &str) -> Vec<u8> {
        let o = self.tether(&["tail", target]);
        assert!(
            o.status.success(),
            "tail failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// `<state>/sessions/<id>`.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.path().join("sessions").join(id)
    }

    /// The session's `keeper.json`.
    pub fn keeper_record(&self, id: &str) -> KeeperRecord {
        let p = self.session_dir(id).join("keeper.json");
        let b = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("parsing {}: {e}", p.display()))
    }

    /// The running daemon's `node.json`, if there is one.
    pub fn runtime(&self) -> Option<NodeRuntime> {
        let b = std::fs::read(self.path().join("node.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// A protocol-level client (the library the CLI uses). Panics if it
    /// cannot connect.
    pub async fn client(&self) -> Client {
        Client::connect_local(self.path(), None)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to the node of {}: {e:#}", self.path().display())
            })
    }
}

impl TestNode {
    /// The same client over QUIC to the daemon, as a remote client talks
    /// (no unix sockets). Panics if it cannot connect.
    pub async fn client_quic(&self) -> Client {
        tether_client::Dial::local(self.path(), None)
            .over_quic()
            .connect(0)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to the node of {} over QUIC: {e:#}",
                    self.path().display()
                )
            })
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
        }
        let dirs = std::iter::once(self.dir.path()).chain(self.extra.iter().map(PathBuf::as_path));
        for dir in dirs {
            let u = cleanup::kill_state_dir(dir);
            if !u.still_alive.is_empty() {
                eprintln!(
                    "testkit: processes of {} survived SIGKILL: {:?}",
                    dir.display(),
                    u.still_alive
                );
            }
        }
    }
}
