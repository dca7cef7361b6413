//! A fleet under test, as real processes on 127.0.0.x: one `tether relay`
//! and N `tether node --config` daemons gossiping every `interval_ms`.
//!
//! The fleet's files (CA, certificates, cluster secret, configs, ports)
//! are testkit's [`FleetFiles`], the same as the integration tests'. The
//! processes are the bench's own: every node is a [`Node`] (its state dir,
//! daemon, keepers and sessions are registered for cleanup), the relay a
//! [`Proc`] in its own process group, and the fleet dir is removed when
//! the fleet drops. All of it is also undone at the bench's end and on
//! Ctrl-C.

use crate::cleanup::{self, Guard, Item};
use crate::procs::{self, qpath, Proc};
use crate::tether::Node;
use crate::Ctx;
use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tether_client::Client;
pub use tether_testkit::fleet::{live_nodes, members};
use tether_testkit::fleet::{FleetFiles, FleetSpec};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// How long the relay may take to print its ready line, and the fleet to
/// converge (every node live at the relay).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The relay's address.
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 140);
/// The first node's address (127.0.0.141, .142, ...).
const FIRST_NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 141);
/// The bench's client certificate (`ca/clients/bench`).
const CLIENT: &str = "bench";

/// One relay and N nodes.
pub struct Fleet {
    /// The nodes, `n1` first.
    pub nodes: Vec<Node>,
    files: FleetFiles,
    exe: PathBuf,
    relay: Option<Proc>,
    _guard: Guard,
}

impl Fleet {
    /// Makes the CA and the certificates, starts the relay and `n` nodes,
    /// and waits until the relay sees every node live.
    pub async fn start(ctx: &Ctx, n: usize, interval_ms: u64) -> anyhow::Result<Fleet> {
        if n == 0 || n > 100 {
            bail!("a bench fleet has 1 to 100 nodes, not {n}");
        }
        let dir = ctx.work.join(ctx.unique("fleet"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = cleanup::register(Item::Path(dir.clone()));
        crate::progress::set(&format!("fleet: CA and certificates for {n} nodes"));
        let spec = FleetSpec::new(RELAY_IP, 1, FIRST_NODE_IP, n)
            .interval_ms(interval_ms)
            .cluster_id(&ctx.unique("bench-fleet-"))
            // The bench makes sessions as the node's local owner and
            // reads them through the relay: an admin may.
            .admin_client(CLIENT);
        let (exe, d) = (ctx.tether.clone(), dir.clone());
        let files = tokio::task::spawn_blocking(move || FleetFiles::create(&exe, &d, &spec))
            .await
            .context("making the fleet's files")??;
        let mut fleet = Fleet {
            nodes: Vec::new(),
            files,
            exe: ctx.tether.clone(),
            relay: None,
            _guard: guard,
        };
        crate::progress::set("fleet: starting the relay");
        let relay = &fleet.files.relays[0];
        let (name, cfg) = (relay.name.clone(), relay.config_path.clone());
        fleet.files.release_ports(&name);
        fleet.relay = Some(start_relay(&ctx.tether, &cfg, &dir.join(format!("{name}.log"))).await?);
        for k in 0..n {
            crate::progress::set(&format!("fleet: starting node {}/{n}", k + 1));
            let m = &fleet.files.nodes[k];
            let (name, cfg) = (m.name.clone(), m.config_path.clone());
            fleet.files.release_ports(&name);
            let node = Node::start_with(
                ctx,
                &format!("fleet-{name}-"),
                vec!["--config".into(), cfg.to_string_lossy().into_owned()],
            )
            .await
            .with_context(|| format!("starting fleet node {name}"))?;
            fleet.nodes.push(node);
        }
        crate::progress::set(&format!("fleet: waiting for {n} nodes live at the relay"));
        let client = fleet.client().await?;
        procs::wait_until(
            "every node live at the relay",
            START_TIMEOUT,
            Duration::from_millis(20),
            || async { Ok(live_nodes(&members(&client).await?) == n) },
        )
        .await
        .with_context(|| format!("see the logs in {}", dir.display()))?;
        client.close().await;
        Ok(fleet)
    }

    /// The relay's QUIC address (host:port).
    fn relay_addr(&self) -> String {
        self.files.relay_addr(0)
    }

    /// A new library client connected to the relay.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let addr = self.relay_addr();
        let (c, _) = Client::connect_relay(
            std::slice::from_ref(&addr),
            &self.files.client_tls(CLIENT),
            0,
        )
        .await
        .with_context(|| format!("connecting to the relay at {addr}"))?;
        Ok(c)
    }

    /// The CLI's arguments that point it at the relay.
    pub fn relay_args(&self) -> Vec<String> {
        self.files.client_args(&[0], CLIENT)
    }

    /// `tether --relay R --tls-dir D ARGS...` with the bench's defaults.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = procs::command(&self.exe);
        c.args(self.relay_args()).args(args);
        c
    }

    /// The same as a shell command line.
    pub fn cli_line(&self, args: &str) -> String {
        format!(
            "{} --relay {} --tls-dir {} {args}",
            qpath(&self.exe),
            self.relay_addr(),
            qpath(&self.files.client_tls(CLIENT))
        )
    }
}

/// Starts `tether relay --config F` and waits for its ready line; its
/// stderr goes to `log_path`.
async fn start_relay(exe: &Path, cfg: &Path, log_path: &Path) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = procs::command(exe);
    cmd.arg("relay")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(log);
    let mut p = Proc::spawn(&mut cmd, "tether relay")?;
    let stdout = p.child.stdout.take().context("relay stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let t0 = Instant::now();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "tether relay did not get ready within {START_TIMEOUT:?}; see {}",
                log_path.display()
            )
        })?
        .context("reading the relay's ready line")?
        .unwrap_or_default();
    if !line.contains("ready") {
        bail!(
            "tether relay did not start after {:?} ({line:?}); see {}",
            t0.elapsed(),
            log_path.display()
        );
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(p)
}
