//! A fleet under test: a fleet CA, certificates, a cluster secret, relays
//! and nodes as real processes on 127.0.0.x, real chitchat, real QUIC.
//!
//! [`FleetFiles`] makes the files (no processes); [`Fleet`] starts every
//! member from them as a child of the test ([`TestNode`] for a node, a
//! [`Daemon`] for a relay) and waits until every relay sees every node
//! live. A harness that starts its members its own way (the bench, which
//! registers every process for its Ctrl-C cleanup) uses [`FleetFiles`]
//! and [`members`] and starts the processes from the config files.
//!
//! Everything is killed when the [`Fleet`] drops, and its dir removed.

mod files;

pub use files::{ClientSpec, FleetFiles, FleetSpec, Member, NodeSpec};

use crate::node::TestNode;
use crate::proc::{output, Daemon, CLI_TIMEOUT};
use crate::wait::poll_until;
use anyhow::{bail, Context};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_proto::{MemberInfo, Reply, Request};

/// How long the fleet may take to converge: every node live at a relay,
/// every node's sessions listed.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running fleet; see the module's doc.
pub struct Fleet {
    /// The nodes, `n1` first.
    pub nodes: Vec<TestNode>,
    relays: Vec<Option<Daemon>>,
    files: FleetFiles,
    tether: PathBuf,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Makes the files of `spec` in a temporary dir, starts its relays and
    /// nodes, and waits until every relay sees every node live.
    pub fn start(tether: impl Into<PathBuf>, spec: &FleetSpec) -> anyhow::Result<Fleet> {
        let tether = tether.into();
        let dir = tempfile::Builder::new()
            .prefix("tether-fleet")
            .tempdir()
            .context("creating the fleet's dir")?;
        let files = FleetFiles::create(&tether, dir.path(), spec)?;
        let mut f = Fleet {
            nodes: Vec::new(),
            relays: (0..files.relays.len()).map(|_| None).collect(),
            files,
            tether,
            dir,
        };
        for i in 0..f.relays.len() {
            f.start_relay(i)?;
        }
        for i in 0..f.files.nodes.len() {
            let m = &f.files.nodes[i];
            let (name, cfg) = (m.name.clone(), m.config_path.clone());
            let mut n = TestNode::empty(&f.tether)?;
            f.files.release_ports(&name);
            let cfg = cfg.to_str().context("the fleet dir's path is not UTF-8")?;
            n.start_daemon_with(&["--config", cfg])
                .with_context(|| format!("starting fleet node {name}"))?;
            f.nodes.push(n);
        }
        let t0 = Instant::now();
        for r in 0..f.relays.len() {
            f.wait_members(r, f.nodes.len())?;
        }
        eprintln!(
            "fleet of {} nodes and {} relays converged in {:?}",
            f.nodes.len(),
            f.relays.len(),
            t0.elapsed()
        );
        Ok(f)
    }

    /// The fleet's files: configs, CA, addresses.
    pub fn files(&self) -> &FleetFiles {
        &self.files
    }

    /// The fleet's dir (CA, configs, relay logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The fleet CA.
    pub fn ca(&self) -> &Path {
        &self.files.ca
    }

    /// Relay `i`'s QUIC address (`host:port`).
    pub fn relay_addr(&self, i: usize) -> String {
        self.files.relay_addr(i)
    }

    /// Relay `i`'s gossip address.
    pub fn relay_gossip(&self, i: usize) -> SocketAddr {
        self.files.relay_gossip(i)
    }

    /// Starts relay `i` (again, after [`Fleet::kill_relay`]) and waits for
    /// its ready line; its stderr goes to `<dir>/r<i+1>.log`.
    pub fn start_relay(&mut self, i: usize) -> anyhow::Result<()> {
        if self.relays[i].is_some() {
            bail!("relay r{} already runs", i + 1);
        }
        let m = &self.files.relays[i];
        let (name, cfg) = (m.name.clone(), m.config_path.clone());
        self.files.release_ports(&name);
        let mut cmd = Command::new(&self.tether);
        cmd.arg("relay").arg("--config").arg(&cfg);
        let log = self.dir.path().join(format!("{name}.log"));
        let d = Daemon::start(&mut cmd, &log).with_context(|| format!("starting relay {name}"))?;
        self.relays[i] = Some(d);
        Ok(())
    }

    /// Relay `i`'s process ID, while it runs.
    pub fn relay_pid(&self, i: usize) -> Option<u32> {
        self.relays[i].as_ref().map(|d| d.pid())
    }

    /// SIGKILLs relay `i` and reaps it.
    pub fn kill_relay(&mut self, i: usize) -> anyhow::Result<()> {
        self.relays[i]
            .take()
            .with_context(|| format!("relay r{} does not run", i + 1))?
            .kill()
    }

    /// SIGKILLs node `i`'s daemon (its sessions live on).
    pub fn kill_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill_daemon()
    }

    /// Starts node `i`'s daemon again, with its config.
    pub fn restart_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].start_daemon()
    }

    /// `tether --relay R1,R2 --tls-dir CLIENT`, relays by index, as client
    /// `who`; add the verb and its arguments.
    pub fn client_command(&self, relays: &[usize], who: &str) -> Command {
        let mut c = Command::new(&self.tether);
        c.args(self.files.client_args(relays, who));
        c
    }

    /// Runs `tether --relay .. --tls-dir .. ARGS` (bounded by
    /// [`CLI_TIMEOUT`]). Panics if it cannot run or hangs.
    pub fn client(&self, relays: &[usize], who: &str, args: &[&str]) -> Output {
        output(self.client_command(relays, who).args(args), CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The same as the fleet's first client, expecting success; returns
    /// stdout.
    pub fn client_ok(&self, relays: &[usize], args: &[&str]) -> String {
        let who = &self
            .files
            .clients
            .first()
            .expect("the fleet has a client (FleetSpec::client)")
            .name;
        let o = self.client(relays, who, args);
        assert!(
            o.status.success(),
            "tether {args:?} via relays {relays:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).expect("tether's stdout is UTF-8")
    }

    /// `tether ARGS` at relay `r` as the first client, its stdout parsed
    /// as JSON (null if it is not).
    fn cli_json(&self, r: usize, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let who = &self
            .files
            .clients
            .first()
            .context("the fleet needs a client (FleetSpec::client) to ask its relays")?
            .name;
        let o = output(self.client_command(&[r], who).args(args), CLI_TIMEOUT)?;
        Ok(serde_json::from_slice(&o.stdout).unwrap_or_default())
    }

    /// Waits until relay `r` sees `n` live nodes.
    pub fn wait_members(&self, r: usize, n: usize) -> anyhow::Result<()> {
        poll_until(
            &format!("{n} nodes live at relay r{}", r + 1),
            CONVERGE_TIMEOUT,
            || {
                let v = self.cli_json(r, &["nodes", "--json"])?;
                Ok(v.as_array().is_some_and(|a| {
                    a.iter()
                        .filter(|m| m["role"] == "node" && m["live"] == true)
                        .count()
                        == n
                }))
            },
        )
        .with_context(|| format!("see the logs in {}", self.dir().display()))
    }

    /// Waits until relay `r` lists sessions of every node (so each node
    /// must have one): gossip has spread them all.
    pub fn wait_converged(&self, r: usize) -> anyhow::Result<()> {
        let want: HashSet<&str> = self.files.nodes.iter().map(|m| m.name.as_str()).collect();
        poll_until(
            &format!("sessions of every node listed at relay r{}", r + 1),
            CONVERGE_TIMEOUT,
            || {
                let v = self.cli_json(r, &["ls", "--json"])?;
                let names: HashSet<&str> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s["node_name"].as_str()).collect())
                    .unwrap_or_default();
                Ok(names == want)
            },
        )
    }

    /// `GET /metrics` from member `name` (`n1`, `r2`, ...).
    pub fn scrape(&self, name: &str) -> anyhow::Result<String> {
        let addr = self
            .files
            .metrics_addr(name)
            .with_context(|| format!("{name} serves no metrics; use FleetSpec::with_metrics"))?;
        scrape(addr)
    }
}

/// How long a metrics scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /metrics` from `addr`; the whole HTTP response, which must be a
/// 200.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .with_context(|| format!("connecting to the metrics at {addr}"))?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .with_context(|| format!("asking {addr} for metrics"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("reading the metrics of {addr}"))?;
    if !out.starts_with("HTTP/1.1 200") {
        bail!("metrics at {addr} answered: {out}");
    }
    Ok(out)
}

/// The members a relay knows (`Request::Nodes`), through a library client
/// connected to it.
pub async fn members(client: &Client) -> anyhow::Result<Vec<MemberInfo>> {
    match client
        .request(&Request::Nodes)
        .await
        .context("asking the relay for its members")?
    {
        Reply::Nodes { nodes } => Ok(nodes),
        Reply::Error { message, .. } => bail!("nodes: {message}"),
        other => bail!("unexpected reply to nodes: {other:?}"),
    }
}

/// How many of `members` are live nodes.
pub fn live_nodes(members: &[MemberInfo]) -> usize {
    members
        .iter()
        .filter(|m| m.role == tether_proto::gossip::Role::Node && m.live)
        .count()
}
