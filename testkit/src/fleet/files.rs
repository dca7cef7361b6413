//! The files of a fleet, before any process: a fleet CA and certificates
//! (`tether ca`), a cluster secret, and one config file per member with
//! ports picked on its 127.0.0.x and held until the member starts.

use crate::config::{write_node_config, write_relay_config, RELAY_DIAL_TIMEOUT_MS};
use crate::ports::{hold_tcp, hold_udp, HeldPort};
use crate::proc::tether_ok;
use anyhow::{bail, Context};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tether_net::gossip::GossipConfig;
use tether_node::NodeConfig;
use tether_relay::RelayConfig;

/// The cluster secret every fleet of the harness shares.
const SECRET: &[u8] = b"the testkit fleet's cluster secret";

/// What fleet to make. Relays are named `r1`, `r2`, ..., nodes `n1`,
/// `n2`, ...; every member gossips with every relay as a seed.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// One relay per address.
    pub relays: Vec<Ipv4Addr>,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// Client certificates to issue (`ca/clients/<name>`).
    pub clients: Vec<ClientSpec>,
    /// Gossip round interval in ms. Default 100.
    pub interval_ms: u64,
    /// Name of the cluster. Default `test`.
    pub cluster_id: String,
    /// Whether every member serves Prometheus metrics on a TCP port of its
    /// own address. Default: no.
    pub metrics: bool,
    /// Ring size of the nodes. Default: the node's own default.
    pub ring_size: Option<u64>,
}

/// One node of a [`FleetSpec`].
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its address: gossip, QUIC and metrics bind here.
    pub ip: Ipv4Addr,
    /// Relays (by index) it keeps tunnels to. A node with tunnels has no
    /// listener of its own: it is reachable only through them, as behind
    /// NAT.
    pub tunnels: Vec<usize>,
}

/// A client certificate of a [`FleetSpec`].
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Its name.
    pub name: String,
    /// Whether it may only watch.
    pub read_only: bool,
    /// Whether it has every right over every session (`--admin`).
    pub admin: bool,
}

/// `n` consecutive addresses from `first`.
fn ips(first: Ipv4Addr, n: usize) -> Vec<Ipv4Addr> {
    (0..n as u32)
        .map(|i| Ipv4Addr::from(u32::from(first).saturating_add(i)))
        .collect()
}

impl FleetSpec {
    /// `relays` relays on `relay_ip` and the addresses after it, `nodes`
    /// nodes on `node_ip` and after; every node listening, no clients,
    /// no metrics.
    pub fn new(relay_ip: Ipv4Addr, relays: usize, node_ip: Ipv4Addr, nodes: usize) -> FleetSpec {
        FleetSpec {
            relays: ips(relay_ip, relays),
            nodes: ips(node_ip, nodes)
                .into_iter()
                .map(|ip| NodeSpec {
                    ip,
                    tunnels: Vec::new(),
                })
                .collect(),
            clients: Vec::new(),
            interval_ms: 100,
            cluster_id: "test".into(),
            metrics: false,
            ring_size: None,
        }
    }

    /// Node `node` (0-based) gets no listener and a tunnel to relay
    /// `relay`.
    pub fn tunnel_only(mut self, node: usize, relay: usize) -> FleetSpec {
        self.nodes[node].tunnels.push(relay);
        self
    }

    /// Issues a read-write client certificate.
    pub fn client(mut self, name: &str) -> FleetSpec {
        self.clients.push(ClientSpec {
            name: name.into(),
            read_only: false,
            admin: false,
        });
        self
    }

    /// Issues an admin client certificate: every session of the fleet is
    /// its to see and use, whoever created it.
    pub fn admin_client(mut self, name: &str) -> FleetSpec {
        self.clients.push(ClientSpec {
            name: name.into(),
            read_only: false,
            admin: true,
        });
        self
    }

    /// Issues a read-only client certificate.
    pub fn read_only_client(mut self, name: &str) -> FleetSpec {
        self.clients.push(ClientSpec {
            name: name.into(),
            read_only: true,
            admin: false,
        });
        self
    }

    /// Every member serves metrics.
    pub fn with_metrics(mut self) -> FleetSpec {
        self.metrics = true;
        self
    }

    /// The nodes' ring size.
    pub fn ring_size(mut self, bytes: u64) -> FleetSpec {
        self.ring_size = Some(bytes);
        self
    }

    /// The gossip round interval.
    pub fn interval_ms(mut self, ms: u64) -> FleetSpec {
        self.interval_ms = ms;
        self
    }

    /// The cluster's name.
    pub fn cluster_id(mut self, id: &str) -> FleetSpec {
        self.cluster_id = id.into();
        self
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.relays.is_empty() {
            bail!("a fleet needs at least one relay");
        }
        for ip in self.relays.iter().chain(self.nodes.iter().map(|n| &n.ip)) {
            if !ip.is_loopback() || ip.octets()[3] == 255 {
                bail!("{ip} is not a usable 127.0.0.x address; pick lower first addresses");
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(r) = n.tunnels.iter().find(|&&r| r >= self.relays.len()) {
                bail!(
                    "node n{} tunnels to relay {r}, but there are only {} relays",
                    i + 1,
                    self.relays.len()
                );
            }
        }
        Ok(())
    }
}

/// A member's name, config file and config.
#[derive(Debug, Clone)]
pub struct Member<C> {
    /// `r1`, `n1`, ...
    pub name: String,
    /// Its config file (absolute paths inside).
    pub config_path: PathBuf,
    /// Its config, as written.
    pub config: C,
}

/// The files of a fleet under one dir; no process runs yet. The ports in
/// the configs stay bound by this value until
/// [`FleetFiles::release_ports`] for the member that is about to start.
#[derive(Debug)]
pub struct FleetFiles {
    /// The dir: `ca/`, `secret`, `<member>.toml`.
    pub dir: PathBuf,
    /// The fleet CA (`tether ca init`).
    pub ca: PathBuf,
    /// The relays, `r1` first.
    pub relays: Vec<Member<RelayConfig>>,
    /// The nodes, `n1` first.
    pub nodes: Vec<Member<NodeConfig>>,
    /// The clients with certificates.
    pub clients: Vec<ClientSpec>,
    held: Vec<(String, Vec<HeldPort>)>,
}

impl FleetFiles {
    /// Makes the CA, every certificate, the secret and every config under
    /// `dir` (which must exist), running `tether ca`.
    pub fn create(tether: &Path, dir: &Path, spec: &FleetSpec) -> anyhow::Result<FleetFiles> {
        let files = FleetFiles::configs(dir, spec)?;
        files.issue(tether)?;
        Ok(files)
    }

    /// The secret and the configs, with their ports held; no certificates.
    fn configs(dir: &Path, spec: &FleetSpec) -> anyhow::Result<FleetFiles> {
        spec.check()?;
        let ca = dir.join("ca");
        let secret = dir.join("secret");
        std::fs::write(&secret, SECRET).context("writing the cluster secret")?;
        let mut held: Vec<(String, Vec<HeldPort>)> = Vec::new();
        let mut hold = |name: &str, p: HeldPort| {
            let a = p.addr();
            match held.iter_mut().find(|e| e.0 == name) {
                Some((_, v)) => v.push(p),
                None => held.push((name.to_string(), vec![p])),
            }
            a
        };
        // Every relay's addresses first: each member seeds with them all.
        let mut relay_ports = Vec::new();
        for (i, &ip) in spec.relays.iter().enumerate() {
            let name = format!("r{}", i + 1);
            let gossip = hold(&name, hold_udp(ip)?);
            let quic = hold(&name, hold_udp(ip)?);
            let metrics = spec.metrics.then(|| hold_tcp(ip)).transpose()?;
            relay_ports.push((gossip, quic, metrics.map(|p| hold(&name, p))));
        }
        let seeds: Vec<String> = relay_ports.iter().map(|(g, _, _)| g.to_string()).collect();
        let gossip = |listen: SocketAddr| GossipConfig {
            cluster_id: spec.cluster_id.clone(),
            listen,
            advertise: None,
            seeds: seeds.clone(),
            interval_ms: spec.interval_ms,
            secret_file: secret.clone(),
            next_secret_file: None,
            previous_secret_file: None,
        };
        let mut files = FleetFiles {
            dir: dir.to_path_buf(),
            ca: ca.clone(),
            relays: Vec::new(),
            nodes: Vec::new(),
            clients: spec.clients.clone(),
            held: Vec::new(),
        };
        for (i, (g, quic, metrics)) in relay_ports.into_iter().enumerate() {
            let name = format!("r{}", i + 1);
            let config = RelayConfig {
                name: name.clone(),
                listen: quic,
                advertise: None,
                tls_dir: ca.join("relays").join(&name),
                gossip: gossip(g),
                dial_timeout_ms: RELAY_DIAL_TIMEOUT_MS,
                metrics_listen: metrics,
                limits: Default::default(),
            };
            let config_path = dir.join(format!("{name}.toml"));
            write_relay_config(&config_path, &config)?;
            files.relays.push(Member {
                name,
                config_path,
                config,
            });
        }
        for (i, n) in spec.nodes.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let g = hold(&name, hold_udp(n.ip)?);
            // A node with tunnels keeps the default listener (port 0),
            // which it does not announce.
            let listen = if n.tunnels.is_empty() {
                hold(&name, hold_udp(n.ip)?)
            } else {
                NodeConfig::default().listen
            };
            let metrics = spec.metrics.then(|| hold_tcp(n.ip)).transpose()?;
            let config = NodeConfig {
                name: Some(name.clone()),
                listen,
                relays: n
                    .tunnels
                    .iter()
                    .map(|&r| files.relays[r].config.listen.to_string())
                    .collect(),
                tls_dir: Some(ca.join("nodes").join(&name)),
                gossip: Some(gossip(g)),
                metrics_listen: metrics.map(|p| hold(&name, p)),
                ring_size: spec
                    .ring_size
                    .unwrap_or_else(|| NodeConfig::default().ring_size),
                ..NodeConfig::default()
            };
            let config_path = dir.join(format!("{name}.toml"));
            write_node_config(&config_path, &config)?;
            files.nodes.push(Member {
                name,
                config_path,
                config,
            });
        }
        files.held = held;
        Ok(files)
    }

    /// The fleet CA and a certificate for every member and client.
    fn issue(&self, tether: &Path) -> anyhow::Result<()> {
        let ca = self
            .ca
            .to_str()
            .context("the fleet dir's path is not UTF-8")?;
        tether_ok(tether, &["ca", "init", ca])?;
        for m in &self.relays {
            tether_ok(tether, &["ca", "issue", ca, "--relay", &m.name])?;
        }
        for m in &self.nodes {
            tether_ok(tether, &["ca", "issue", ca, "--node", &m.name])?;
        }
        for c in &self.clients {
            let role = if c.admin { "--admin" } else { "--client" };
            let mut args = vec!["ca", "issue", ca, role, &c.name];
            if c.read_only {
                args.push("--read-only");
            }
            tether_ok(tether, &args)?;
        }
        Ok(())
    }

    /// Unbinds the ports held for member `name`, just before it starts.
    pub fn release_ports(&mut self, name: &str) {
        self.held.retain(|(n, _)| n != name);
    }

    /// Relay `i`'s QUIC address, as the CLI's `--relay` takes it.
    pub fn relay_addr(&self, i: usize) -> String {
        self.relays[i].config.listen.to_string()
    }

    /// Relay `i`'s gossip address.
    pub fn relay_gossip(&self, i: usize) -> SocketAddr {
        self.relays[i].config.gossip.listen
    }

    /// The metrics address of member `name`, if it serves metrics.
    pub fn metrics_addr(&self, name: &str) -> Option<SocketAddr> {
        let relay = self.relays.iter().find(|m| m.name == name);
        let node = self.nodes.iter().find(|m| m.name == name);
        relay
            .and_then(|m| m.config.metrics_listen)
            .or_else(|| node.and_then(|m| m.config.metrics_listen))
    }

    /// The credentials of client `who` (`ca/clients/<who>`).
    pub fn client_tls(&self, who: &str) -> PathBuf {
        self.ca.join("clients").join(who)
    }

    /// `--relay R1,R2 --tls-dir CLIENT`: the CLI's arguments that point it
    /// at relays `relays` (by index) as client `who`.
    pub fn client_args(&self, relays: &[usize], who: &str) -> Vec<String> {
        let addrs: Vec<String> = relays.iter().map(|&i| self.relay_addr(i)).collect();
        vec![
            "--relay".into(),
            addrs.join(","),
            "--tls-dir".into(),
            self.client_tls(who).to_string_lossy().into_owned(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as TOML: what "unchanged" is measured by.
    fn text<T: serde::Serialize>(v: &T) -> String {
        toml::to_string(v).unwrap()
    }

    #[test]
    fn every_config_loads_back_and_ports_differ() {
        let d = tempfile::tempdir().unwrap();
        let spec = FleetSpec::new(
            Ipv4Addr::new(127, 0, 0, 81),
            2,
            Ipv4Addr::new(127, 0, 0, 71),
            3,
        )
        .tunnel_only(2, 1)
        .with_metrics();
        let f = FleetFiles::configs(d.path(), &spec).unwrap();
        let mut addrs = Vec::new();
        for r in &f.relays {
            let back = RelayConfig::load(&r.config_path).unwrap();
            assert_eq!(text(&back), text(&r.config));
            assert_eq!(back.gossip.seeds.len(), 2);
            addrs.extend([back.listen, back.gossip.listen]);
            addrs.extend(back.metrics_listen);
        }
        for n in &f.nodes {
            let back = NodeConfig::load(&n.config_path).unwrap();
            assert_eq!(text(&back), text(&n.config));
            let g = back.gossip.as_ref().unwrap();
            assert_eq!(
                g.seeds,
                f.relays
                    .iter()
                    .map(|r| r.config.gossip.listen.to_string())
                    .collect::<Vec<_>>()
            );
            addrs.push(g.listen);
            addrs.extend(back.advertised());
            addrs.extend(back.metrics_listen);
        }
        // n3 is reachable only through its tunnel to r2.
        let n3 = &f.nodes[2].config;
        assert_eq!(n3.advertised(), None);
        assert_eq!(n3.relays, vec![f.relay_addr(1)]);
        assert_eq!(
            f.metrics_addr("n3").unwrap().ip(),
            Ipv4Addr::new(127, 0, 0, 73)
        );
        // Relays: 3 addresses each; listening nodes 3; the tunnelled one 2.
        assert_eq!(addrs.len(), 2 * 3 + 2 * 3 + 2);
        let mut unique = addrs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), addrs.len(), "{addrs:?}");
        assert_eq!(
            f.client_args(&[0, 1], "alice"),
            [
                "--relay".to_string(),
                format!("{},{}", f.relay_addr(0), f.relay_addr(1)),
                "--tls-dir".into(),
                d.path().join("ca/clients/alice").display().to_string(),
            ]
        );
    }

    #[test]
    fn a_bad_spec_says_what_to_change() {
        let d = tempfile::tempdir().unwrap();
        let e = FleetFiles::configs(
            d.path(),
            &FleetSpec::new(
                Ipv4Addr::new(127, 0, 0, 81),
                0,
                Ipv4Addr::new(127, 0, 0, 71),
                1,
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least one relay"), "{e}");
        let spec = FleetSpec::new(
            Ipv4Addr::new(127, 0, 0, 81),
            1,
            Ipv4Addr::new(127, 0, 0, 254),
            3,
        );
        let e = FleetFiles::configs(d.path(), &spec).unwrap_err();
        assert!(e.to_string().contains("127.0.0.255"), "{e}");
        let spec = FleetSpec::new(
            Ipv4Addr::new(127, 0, 0, 81),
            1,
            Ipv4Addr::new(127, 0, 0, 71),
            1,
        )
        .tunnel_only(0, 1);
        let e = FleetFiles::configs(d.path(), &spec).unwrap_err();
        assert!(e.to_string().contains("only 1 relays"), "{e}");
    }
}
