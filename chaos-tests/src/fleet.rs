//! A drilled fleet: real `tether relay` and `tether node` processes on
//! 127.0.0.x, each QUIC endpoint behind a [`FaultProxy`], all gossip
//! through a [`GossipSwitch`].
//!
//! # How it is wired
//! - The shared harness makes the files ([`FleetFiles`]: CA, certificates,
//!   secret, one config per member with its real listen ports).
//! - Each member gets a QUIC proxy on its own address, and a port of the
//!   gossip switch there. Its config then *advertises* them (`advertise`,
//!   `[gossip] advertise`), and every member's gossip seeds are the
//!   relays' switch ports, so every datagram sent to it crosses a proxy or
//!   the switch. Answers go back the same way.
//! - A member's own QUIC datagrams to another member cross the other
//!   member's proxy, from the member's address: [`ChaosFleet::partition`]
//!   therefore blackholes the member's own proxy, on every other proxy the
//!   datagrams from its address, and in the switch every pair it is in.
//! - Processes start as children of the test and are killed when the
//!   fleet drops (nodes through [`TestNode`], which also ends their
//!   keepers and sessions).

use crate::proxy::{FaultProxy, Faults, Link};
use crate::switch::{GossipSwitch, Port};
use anyhow::{bail, Context};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use tether_client::Dial;
use tether_testkit::config::{write_node_config, write_relay_config};
use tether_testkit::fleet::{FleetFiles, FleetSpec};
use tether_testkit::ports::free_udp;
use tether_testkit::proc::Daemon;
use tether_testkit::TestNode;

/// Which of a member's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Its QUIC listener (clients, relays dialing nodes).
    Quic,
    /// Its gossip socket.
    Gossip,
}

/// What runs for a member.
enum Proc {
    Relay(Option<Daemon>),
    Node(Box<TestNode>),
}

/// A relay or a node of the fleet.
pub struct Member {
    /// `r1`, `n1`, ...
    pub name: String,
    /// Its own address.
    pub ip: IpAddr,
    /// In front of its QUIC listener.
    pub quic: FaultProxy,
    /// Its gossip address: a port of the switch.
    pub gossip: SocketAddr,
    proc: Proc,
    config: PathBuf,
}

/// A fleet whose every endpoint is behind a fault proxy; see the module
/// doc.
pub struct ChaosFleet {
    members: Vec<Member>,
    switch: GossipSwitch,
    files: FleetFiles,
    tether: PathBuf,
    dir: tempfile::TempDir,
}

impl ChaosFleet {
    /// Makes the files of `relays` relays from `first_ip` and `nodes` nodes
    /// after them, with a client certificate `chaos`, gossip every 100 ms,
    /// rings of `ring` bytes, and starts the proxies (no process yet). The
    /// proxies' faults replay from `seed`.
    pub async fn create(
        tether: &Path,
        first_ip: Ipv4Addr,
        relays: usize,
        nodes: usize,
        ring: u64,
        seed: u64,
    ) -> anyhow::Result<ChaosFleet> {
        let node_ip = Ipv4Addr::from(u32::from(first_ip) + relays as u32);
        let spec = FleetSpec::new(first_ip, relays, node_ip, nodes)
            .client("chaos")
            .ring_size(ring);
        let dir = tempfile::Builder::new()
            .prefix("tether-chaos")
            .tempdir()
            .context("creating the drill's dir")?;
        let tether2 = tether.to_path_buf();
        let dir_path = dir.path().to_path_buf();
        let mut files =
            tokio::task::spawn_blocking(move || FleetFiles::create(&tether2, &dir_path, &spec))
                .await??;
        let mut members = Vec::new();
        let mut ports = Vec::new();
        let mut seed = seed;
        let mut next_seed = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            seed
        };
        let relays = files.relays.iter().map(|r| {
            let c = &r.config;
            (r, c.listen, c.gossip.listen, Proc::Relay(None))
        });
        let mut all = Vec::new();
        for (r, quic, gossip, proc) in relays {
            all.push((r.name.clone(), r.config_path.clone(), quic, gossip, proc));
        }
        for n in &files.nodes {
            let g = n.config.gossip.as_ref().context("fleet nodes gossip")?;
            let proc = Proc::Node(Box::new(TestNode::empty(tether)?));
            all.push((
                n.name.clone(),
                n.config_path.clone(),
                n.config.listen,
                g.listen,
                proc,
            ));
        }
        for (name, config, quic, gossip, proc) in all {
            let ip = quic.ip();
            let adv = free_udp(ip)?;
            ports.push(Port {
                name: name.clone(),
                adv,
                real: gossip,
            });
            members.push(Member {
                name,
                ip,
                quic: FaultProxy::start(free_udp(ip)?, quic, next_seed()).await?,
                gossip: adv,
                proc,
                config,
            });
        }
        let switch = GossipSwitch::start(ports, next_seed()).await?;
        // Advertise the proxies and the switch; seed with the relays'.
        let seeds: Vec<String> = members
            .iter()
            .filter(|m| matches!(m.proc, Proc::Relay(_)))
            .map(|m| m.gossip.to_string())
            .collect();
        let front = |name: &str| {
            let m = members.iter().find(|m| m.name == name).expect("member");
            (m.quic.addr, m.gossip)
        };
        for r in &mut files.relays {
            let (q, g) = front(&r.name);
            r.config.advertise = Some(q);
            r.config.gossip.advertise = Some(g);
            r.config.gossip.seeds = seeds.clone();
            write_relay_config(&r.config_path, &r.config)?;
        }
        for n in &mut files.nodes {
            let (q, g) = front(&n.name);
            n.config.advertise = Some(q);
            let gossip = n.config.gossip.as_mut().context("fleet nodes gossip")?;
            gossip.advertise = Some(g);
            gossip.seeds = seeds.clone();
            write_node_config(&n.config_path, &n.config)?;
        }
        Ok(ChaosFleet {
            members,
            switch,
            files,
            tether: tether.to_path_buf(),
            dir,
        })
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> anyhow::Result<&Member> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .with_context(|| format!("the drill has no member {name}"))
    }

    fn member_mut(&mut self, name: &str) -> anyhow::Result<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .with_context(|| format!("the drill has no member {name}"))
    }

    /// Every member's name, relays first.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The names of the nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| matches!(m.proc, Proc::Node(_)))
            .map(|m| m.name.clone())
            .collect()
    }

    /// The names of the relays.
    pub fn relay_names(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| matches!(m.proc, Proc::Relay(_)))
            .map(|m| m.name.clone())
            .collect()
    }

    /// Starts member `name` (again), and waits for its ready line.
    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let tether = self.tether.clone();
        let dir = self.dir.path().to_path_buf();
        self.files.release_ports(name);
        let m = self.member_mut(name)?;
        let cfg = m.config.to_str().context("the drill dir is not UTF-8")?;
        let cfg = cfg.to_string();
        match &mut m.proc {
            Proc::Relay(d) => {
                if d.is_some() {
                    bail!("relay {name} already runs");
                }
                let mut cmd = Command::new(&tether);
                cmd.arg("relay").arg("--config").arg(&cfg);
                let log = dir.join(format!("{name}.log"));
                *d = Some(Daemon::start(&mut cmd, &log)?);
            }
            Proc::Node(n) => {
                if n.daemon_pid().is_none() {
                    n.start_daemon_with(&["--config", &cfg])?;
                } else {
                    bail!("node {name} already runs");
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs member `name`'s process and reaps it (a node's keepers and
    /// sessions live on).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let m = self.member_mut(name)?;
        match &mut m.proc {
            Proc::Relay(d) => d
                .take()
                .with_context(|| format!("relay {name} does not run"))?
                .kill(),
            Proc::Node(n) => n.kill_daemon(),
        }
    }

    /// The PID of member `name`'s process, while it runs.
    pub fn pid(&self, name: &str) -> anyhow::Result<u32> {
        let m = self.member(name)?;
        match &m.proc {
            Proc::Relay(d) => d.as_ref().map(Daemon::pid),
            Proc::Node(n) => n.daemon_pid(),
        }
        .with_context(|| format!("{name} does not run"))
    }

    /// Sends `sig` to member `name`'s process.
    pub fn signal(&self, name: &str, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = self.pid(name)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .with_context(|| format!("sending {sig} to {name} (pid {pid})"))
    }

    /// Cuts member `name` off: nothing reaches its endpoints, nothing it
    /// sends reaches another member's.
    pub fn partition(&self, name: &str) -> anyhow::Result<()> {
        let cut = self.member(name)?;
        cut.quic.set(Link::both(Faults::blackhole()));
        for m in self.members.iter().filter(|m| m.name != name) {
            m.quic.set_from(cut.ip, Link::both(Faults::blackhole()));
            self.switch.cut(name, &m.name)?;
        }
        Ok(())
    }

    /// Cuts what `from` sends to `to`'s endpoint `e`, and the answers.
    pub fn cut(&self, from: &str, to: &str, e: Endpoint) -> anyhow::Result<()> {
        let ip = self.member(from)?.ip;
        match e {
            Endpoint::Quic => self
                .member(to)?
                .quic
                .set_from(ip, Link::both(Faults::blackhole())),
            Endpoint::Gossip => self.switch.cut(from, to)?,
        }
        Ok(())
    }

    /// Sets the faults of member `name`'s endpoint `e` for every peer:
    /// `link.up` on what it receives, `link.down` on what it sends.
    pub fn set_link(&self, name: &str, e: Endpoint, link: Link) -> anyhow::Result<()> {
        match e {
            Endpoint::Quic => self.member(name)?.quic.set(link),
            Endpoint::Gossip => self.switch.set_member(name, link.up, link.down)?,
        }
        Ok(())
    }

    /// Removes every fault of every proxy and of the switch.
    pub fn heal(&self) {
        for m in &self.members {
            m.quic.heal();
        }
        self.switch.heal();
    }

    /// The client's relays: every relay's QUIC proxy, in order.
    pub fn relay_addrs(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| matches!(m.proc, Proc::Relay(_)))
            .map(|m| m.quic.addr.to_string())
            .collect()
    }

    /// How a client reaches the fleet: through every relay, as `chaos`.
    pub fn dial(&self) -> Dial {
        Dial::fleet(self.relay_addrs(), self.files.client_tls("chaos"))
    }

    /// How a client reaches the fleet through relay `name` alone.
    pub fn dial_relay(&self, name: &str) -> anyhow::Result<Dial> {
        let m = self.member(name)?;
        if !matches!(m.proc, Proc::Relay(_)) {
            bail!("{name} is not a relay");
        }
        Ok(Dial::fleet(
            vec![m.quic.addr.to_string()],
            self.files.client_tls("chaos"),
        ))
    }

    /// How a client on node `name`'s host reaches it: its state dir.
    pub fn dial_local(&self, name: &str) -> anyhow::Result<Dial> {
        match &self.member(name)?.proc {
            Proc::Node(n) => Ok(Dial::local(n.path(), None)),
            Proc::Relay(_) => bail!("{name} is a relay; local clients dial nodes"),
        }
    }

    /// The drill's dir (configs, relay logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The resident memory (KiB) of each running member process.
    pub fn memory(&self) -> Vec<(String, u64)> {
        self.members
            .iter()
            .filter_map(|m| {
                let pid = self.pid(&m.name).ok()?;
                Some((m.name.clone(), tether_testkit::probe::rss_kib(pid).ok()?))
            })
            .collect()
    }

    /// The log of member `name`.
    pub fn log(&self, name: &str) -> String {
        match self.member(name).map(|m| &m.proc) {
            Ok(Proc::Node(n)) => n.log(),
            Ok(Proc::Relay(_)) => {
                tether_testkit::proc::log_tail(&self.dir.path().join(format!("{name}.log")))
            }
            Err(e) => e.to_string(),
        }
    }
}
