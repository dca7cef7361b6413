//! A fleet under test, as real processes on 127.0.0.x: a fleet CA
//! (`tether ca init`), certificates for one relay, N nodes and a client
//! (`tether ca issue`), a cluster secret, one `tether relay` and N
//! `tether node --config` daemons gossiping every `interval_ms`.
//!
//! Every node is a [`Node`] (its state dir, daemon, keepers and sessions
//! are registered for cleanup); the relay is a [`Proc`] in its own process
//! group; the fleet dir (CA, configs, logs) is removed when the fleet
//! drops. All of it is also undone at the bench's end and on Ctrl-C.

use crate::cleanup::{self, Guard, Item};
use crate::procs::{self, qpath, Proc};
use crate::tether::Node;
use crate::Ctx;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_proto::{MemberInfo, Reply, Request};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// How long the relay may take to print its ready line, and the fleet to
/// converge (every node live at the relay).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The relay's address; nodes take the next ones.
const RELAY_IP: &str = "127.0.0.140";
/// The first node's address (127.0.0.141, .142, ...).
const FIRST_NODE_IP: u8 = 141;

/// One relay and N nodes.
pub struct Fleet {
    /// The nodes, `n1` first.
    pub nodes: Vec<Node>,
    /// The relay's QUIC address (host:port).
    pub relay_addr: String,
    /// The client's credentials (`ca/clients/bench`).
    pub client_tls: PathBuf,
    exe: PathBuf,
    relay: Option<Proc>,
    dir: PathBuf,
    _guard: Guard,
}

/// A free UDP port on `ip`, held by the socket returned with it, so that
/// two ports picked one after the other differ; the caller drops the
/// sockets just before it starts the process that binds the ports.
fn free_udp(ip: &str) -> anyhow::Result<(u16, std::net::UdpSocket)> {
    let s = std::net::UdpSocket::bind(format!("{ip}:0"))
        .with_context(|| format!("binding a UDP socket on {ip}"))?;
    Ok((s.local_addr()?.port(), s))
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
        let ca = dir.join("ca");
        let ca_s = ca.to_string_lossy().into_owned();
        crate::progress::set(&format!("fleet: CA and certificates for {n} nodes"));
        tether_ok(&ctx.tether, &["ca", "init", &ca_s]).await?;
        tether_ok(&ctx.tether, &["ca", "issue", &ca_s, "--relay", "r1"]).await?;
        tether_ok(&ctx.tether, &["ca", "issue", &ca_s, "--client", "bench"]).await?;
        for k in 1..=n {
            tether_ok(
                &ctx.tether,
                &["ca", "issue", &ca_s, "--node", &format!("n{k}")],
            )
            .await?;
        }
        std::fs::write(dir.join("secret"), b"the bench fleet's cluster secret")
            .context("writing the cluster secret")?;
        let cluster = ctx.unique("bench-fleet-");
        let (gossip_port, held_gossip) = free_udp(RELAY_IP)?;
        let (quic_port, held_quic) = free_udp(RELAY_IP)?;
        let relay_gossip = format!("{RELAY_IP}:{gossip_port}");
        let relay_addr = format!("{RELAY_IP}:{quic_port}");
        let gossip = |listen: &str| {
            format!(
                "[gossip]\ncluster_id = \"{cluster}\"\nlisten = \"{listen}\"\nseeds = [\"{relay_gossip}\"]\n\
                 interval_ms = {interval_ms}\nsecret_file = \"secret\"\n"
            )
        };
        let relay_cfg = dir.join("r1.toml");
        std::fs::write(
            &relay_cfg,
            format!(
                "name = \"r1\"\nlisten = \"{relay_addr}\"\ntls_dir = \"ca/relays/r1\"\n{}",
                gossip(&relay_gossip)
            ),
        )?;
        let mut fleet = Fleet {
            nodes: Vec::new(),
            relay_addr,
            client_tls: ca.join("clients").join("bench"),
            exe: ctx.tether.clone(),
            relay: None,
            dir,
            _guard: guard,
        };
        crate::progress::set("fleet: starting the relay");
        drop((held_gossip, held_quic));
        fleet.relay = Some(start_relay(&ctx.tether, &relay_cfg, &fleet.dir).await?);
        for k in 1..=n {
            crate::progress::set(&format!("fleet: starting node {k}/{n}"));
            let ip = format!("127.0.0.{}", FIRST_NODE_IP as usize + k - 1);
            let name = format!("n{k}");
            let cfg = fleet.dir.join(format!("{name}.toml"));
            let (quic_port, held_quic) = free_udp(&ip)?;
            let (gossip_port, held_gossip) = free_udp(&ip)?;
            std::fs::write(
                &cfg,
                format!(
                    "name = \"{name}\"\nlisten = \"{ip}:{quic_port}\"\ntls_dir = \"ca/nodes/{name}\"\n{}",
                    gossip(&format!("{ip}:{gossip_port}"))
                ),
            )?;
            drop((held_quic, held_gossip));
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
        .with_context(|| format!("see the logs in {}", fleet.dir.display()))?;
        client.close().await;
        Ok(fleet)
    }

    /// A new library client connected to the relay.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let (c, _) =
            Client::connect_relay(std::slice::from_ref(&self.relay_addr), &self.client_tls, 0)
                .await
                .with_context(|| format!("connecting to the relay at {}", self.relay_addr))?;
        Ok(c)
    }

    /// The CLI's arguments that point it at the relay.
    pub fn relay_args(&self) -> Vec<String> {
        vec![
            "--relay".into(),
            self.relay_addr.clone(),
            "--tls-dir".into(),
            self.client_tls.to_string_lossy().into_owned(),
        ]
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
            self.relay_addr,
            qpath(&self.client_tls)
        )
    }
}

/// `Request::Nodes` through a relay.
pub async fn members(client: &Client) -> anyhow::Result<Vec<MemberInfo>> {
    match client.request(&Request::Nodes).await? {
        Reply::Nodes { nodes } => Ok(nodes),
        Reply::Error { message, .. } => bail!("nodes: {message}"),
        other => bail!("unexpected reply to nodes: {other:?}"),
    }
}

/// How many members are live nodes.
pub fn live_nodes(m: &[MemberInfo]) -> usize {
    m.iter()
        .filter(|m| m.role == tether_proto::gossip::Role::Node && m.live)
        .count()
}

/// Runs `tether ARGS` and expects success.
async fn tether_ok(exe: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut c = procs::command(exe);
    c.args(args);
    procs::output(&mut c, &format!("tether {}", args.join(" "))).await
}

/// Starts `tether relay --config F` and waits for its ready line.
async fn start_relay(exe: &Path, cfg: &Path, dir: &Path) -> anyhow::Result<Proc> {
    let log_path = dir.join("r1.log");
    let log = std::fs::File::create(&log_path)?;
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
