//! Node configuration (`node.toml`). Every field has a default, so a node
//! runs with no file at all; an unknown key is an error naming the key and
//! its line.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tether_net::files::resolve_relative as resolve;
pub use tether_net::gossip::GossipConfig;
pub use tether_net::limits::Limits;

/// Default of [`NodeConfig::max_ring_bytes`]: 64 MiB.
pub const DEFAULT_MAX_RING_BYTES: u64 = 64 << 20;
/// Default of [`NodeConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1000;

/// Default of [`NodeConfig::screen_history`].
pub const DEFAULT_SCREEN_HISTORY: u32 = 100;
/// Largest [`NodeConfig::screen_history`].
pub const MAX_SCREEN_HISTORY: u32 = 100_000;

/// Configuration of a node daemon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// QUIC listen address. Default `127.0.0.1:0` (a free port, published
    /// in `<state>/node.json` for local clients).
    pub listen: SocketAddr,
    /// Ring buffer size per session in bytes, unless `tether new
    /// --ring-size` says otherwise. Default 1 MiB; at most
    /// `max_ring_bytes`.
    pub ring_size: u64,
    /// Largest ring a client may ask for (`tether new --ring-size`), in
    /// bytes; larger requests are refused. Default 64 MiB
    /// ([`DEFAULT_MAX_RING_BYTES`]): each ring's blocks are allocated on
    /// disk when the session is created and its pages are mapped as output
    /// flows, so without a limit one request could take a GiB of disk and
    /// memory; 64 MiB is 800,000 lines of 80 columns, far beyond any
    /// scrollback, and the largest ring the benchmarks use. At most 1 GiB.
    pub max_ring_bytes: u64,
    /// Sessions this node holds at most, counting running ones and ended
    /// ones not yet removed; a creation beyond is refused. Default 1,000
    /// ([`DEFAULT_MAX_SESSIONS`]): each session costs a keeper process (about
    /// 350 KiB) and its ring on disk. The `sessions` row of the benchmark
    /// creates exactly 1,000 on one node.
    pub max_sessions: usize,
    /// Sessions one fleet client may hold on this node (running and
    /// ended ones not yet removed); the local owner is not counted.
    /// Default 100.
    pub max_sessions_per_identity: usize,
    /// Command prefix that wraps every session command, for example
    /// `["systemd-run", "--user", "--scope"]` or `["bwrap", ...]`.
    /// Default: none.
    pub launcher: Vec<String>,
    /// Keep a terminal emulator of each session's screen, in its keeper,
    /// for `tether screen` and the exact redraw on attach (`tether new
    /// --no-screen` turns it off for one session). Default on.
    pub screen: bool,
    /// Lines of history each session's emulator keeps for the redraw on
    /// attach (each line costs about 20 bytes per column: 1.6 KiB at 80
    /// columns). Default 100; at most 100,000.
    pub screen_history: u32,
    /// Exited and lost sessions kept listed (oldest removed first beyond
    /// this). Default 100.
    pub retain_exited: usize,
    /// Command of a session created without one. Default: `$SHELL`, else
    /// `/bin/sh`.
    pub default_command: Vec<String>,
    /// Name of the node in a fleet. Default: the short node ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Directory with fleet credentials (cert.pem, key.pem, ca.pem from
    /// `tether ca issue`). Default: none (single machine, local clients
    /// only). Relative to the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<PathBuf>,
    /// QUIC address announced to the fleet. Default: `listen`, when it is
    /// not a wildcard or port 0; else none (reachable through relays'
    /// tunnels only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Relays (QUIC host:port) this node keeps outbound tunnels to, so
    /// that it is reachable from behind NAT without a public listener.
    /// Default: none.
    pub relays: Vec<String>,
    /// Gossip; default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipConfig>,
    /// HTTP address for Prometheus metrics (`GET /metrics`). Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// What one peer may make the node hold: see [`Limits`].
    pub limits: Limits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ring_size: crate::ring::DEFAULT_RING_SIZE,
            max_ring_bytes: DEFAULT_MAX_RING_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_identity: 100,
            launcher: Vec::new(),
            screen: true,
            screen_history: DEFAULT_SCREEN_HISTORY,
            retain_exited: 100,
            default_command: Vec::new(),
            name: None,
            tls_dir: None,
            advertise: None,
            relays: Vec::new(),
            gossip: None,
            metrics_listen: None,
            limits: Limits::default(),
        }
    }
}

impl NodeConfig {
    /// Parses a config file's text. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<NodeConfig> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("{origin}: {}", e.to_string().trim_end())
                .context(format!("invalid config {origin}; fix the key named below"))
        })?;
        cfg.validate()
            .with_context(|| format!("invalid config {origin}"))?;
        Ok(cfg)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.tls_dir = cfg.tls_dir.map(|d| resolve(base, &d));
        if let Some(g) = &mut cfg.gossip {
            g.resolve_files(base);
        }
        Ok(cfg)
    }

    /// The QUIC address to announce, if any.
    pub fn advertised(&self) -> Option<SocketAddr> {
        self.advertise.or_else(|| {
            (!self.listen.ip().is_unspecified() && self.listen.port() != 0).then_some(self.listen)
        })
    }

    /// A config for tests: defaults, loopback, a small ring.
    pub fn for_test() -> NodeConfig {
        NodeConfig {
            ring_size: 64 * 1024,
            ..NodeConfig::default()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        use crate::ring::{MAX_RING_SIZE, MIN_RING_SIZE};
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&self.ring_size) {
            anyhow::bail!(
                "ring_size = {} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes",
                self.ring_size
            );
        }
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&self.max_ring_bytes) {
            anyhow::bail!(
                "max_ring_bytes = {} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes",
                self.max_ring_bytes
            );
        }
        if self.ring_size > self.max_ring_bytes {
            anyhow::bail!(
                "ring_size = {} is larger than max_ring_bytes = {}; lower ring_size or raise \
                 max_ring_bytes",
                self.ring_size,
                self.max_ring_bytes
            );
        }
        if self.screen_history > MAX_SCREEN_HISTORY {
            anyhow::bail!(
                "screen_history = {} is more than {MAX_SCREEN_HISTORY} lines; lower it (the ring \
                 keeps the raw output for `tail` anyway)",
                self.screen_history
            );
        }
        if self.max_sessions == 0 {
            anyhow::bail!("max_sessions = 0 would refuse every session; set it to 1 or more");
        }
        self.limits.validate()
    }

    /// The command a session without one runs.
    pub fn shell(&self) -> Vec<String> {
        if !self.default_command.is_empty() {
            return self.default_command.clone();
        }
        match std::env::var("SHELL") {
            Ok(s) if !s.is_empty() => vec![s],
            _ => vec!["/bin/sh".to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = NodeConfig::parse("", "x").unwrap();
        assert_eq!(c.ring_size, 1 << 20);
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn typo_names_key_and_line() {
        let e = NodeConfig::parse("ring_size = 8192\nlisen = \"127.0.0.1:1\"\n", "node.toml")
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn gossip_section() {
        let c = NodeConfig::parse(
            "name = \"n1\"\n[gossip]\ncluster_id = \"c\"\nlisten = \"127.0.0.1:7000\"\nsecret_file = \"s\"\n",
            "x",
        )
        .unwrap();
        let g = c.gossip.unwrap();
        assert_eq!(g.interval_ms, 200);
        assert!(g.seeds.is_empty());
        let e = NodeConfig::parse("[gossip]\ncluster = \"c\"\n", "node.toml").unwrap_err();
        assert!(format!("{e:#}").contains("cluster"), "{e:#}");
    }

    #[test]
    fn rotation_keys_are_optional_relative_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let base =
            "[gossip]\ncluster_id = \"c\"\nlisten = \"127.0.0.1:7000\"\nsecret_file = \"new\"\n";
        let path = d.path().join("node.toml");
        std::fs::write(&path, format!("{base}previous_secret_file = \"old\"\n")).unwrap();
        let g = NodeConfig::load(&path).unwrap().gossip.unwrap();
        assert_eq!(g.previous_secret_file, Some(d.path().join("old")));
        assert_eq!(g.next_secret_file, None);
        // The file is read when gossip starts: a missing one names its key.
        std::fs::write(d.path().join("new"), [1u8; 32]).unwrap();
        let e = g.settings("n1".into()).unwrap_err();
        assert!(format!("{e:#}").contains("previous_secret_file"), "{e:#}");
        std::fs::write(d.path().join("old"), [2u8; 32]).unwrap();
        let s = g.settings("n1".into()).unwrap();
        assert_eq!(s.previous_secret, Some(vec![2u8; 32]));
        assert!(
            !format!("{s:?}").contains("[2, 2"),
            "secrets stay out of Debug"
        );
        // A typo is an error naming the key and its line.
        let e = NodeConfig::parse(&format!("{base}previous_secret = \"old\"\n"), "node.toml")
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("previous_secret") && msg.contains("line 5"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_ring_is_refused() {
        let e = NodeConfig::parse("ring_size = 10", "node.toml").unwrap_err();
        assert!(format!("{e:#}").contains("ring_size"));
    }

    #[test]
    fn the_example_config_documents_every_key() {
        let example = include_str!("../../configs/node.toml");
        let keys = toml::to_string(&NodeConfig::default()).unwrap();
        for line in keys.lines() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            assert!(
                example.contains(&format!("\n#{key} = ")),
                "configs/node.toml does not show `{key}`"
            );
        }
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let c = NodeConfig::parse("", "x").unwrap();
        assert_eq!((c.max_ring_bytes, c.max_sessions), (64 << 20, 1000));
        // The benchmark's largest ring and its 1,000 sessions fit.
        assert!(c.max_ring_bytes >= 64 << 20 && c.max_sessions >= 1000);
        let c = NodeConfig::parse(
            "max_ring_bytes = 8192\nmax_sessions = 3\nring_size = 4096",
            "x",
        )
        .unwrap();
        assert_eq!((c.max_ring_bytes, c.max_sessions), (8192, 3));
        for (text, key) in [
            ("max_ring_bytes = 2147483648", "max_ring_bytes"),
            ("max_ring_bytes = 8192\nring_size = 16384", "max_ring_bytes"),
            ("max_sessions = 0", "max_sessions"),
        ] {
            let e = format!("{:#}", NodeConfig::parse(text, "node.toml").unwrap_err());
            assert!(e.contains(key) && e.contains("node.toml"), "{text}: {e}");
        }
    }
}
