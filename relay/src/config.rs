//! Relay configuration (`relay.toml`).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tether_net::files::resolve_relative as resolve;
use tether_net::gossip::GossipConfig;
pub use tether_net::limits::Limits;

/// Configuration of a relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Name in the fleet; must match its certificate. Required.
    pub name: String,
    /// QUIC address clients (and tunnelling nodes) connect to. Required.
    pub listen: SocketAddr,
    /// Address announced to the fleet. Default: `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Fleet credentials (cert.pem, key.pem, ca.pem from `tether ca issue
    /// CA --relay NAME`). Required. Relative to the config file.
    pub tls_dir: PathBuf,
    /// Gossip membership. Required.
    pub gossip: GossipConfig,
    /// How long a dial to a node may take before the client is told it is
    /// unreachable, in milliseconds. Default 2000.
    #[serde(default = "default_dial_ms")]
    pub dial_timeout_ms: u64,
    /// HTTP address for Prometheus metrics (`GET /metrics`). Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// What one peer may make the relay hold: see [`Limits`].
    #[serde(default)]
    pub limits: Limits,
}

fn default_dial_ms() -> u64 {
    2000
}

impl RelayConfig {
    /// Reads a config file; relative paths are relative to it.
    pub fn load(path: &Path) -> anyhow::Result<RelayConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut cfg: RelayConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()).context(format!(
                "invalid config {}; fix the key named below",
                path.display()
            ))
        })?;
        cfg.limits
            .validate()
            .with_context(|| format!("invalid config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.tls_dir = resolve(base, &cfg.tls_dir);
        cfg.gossip.resolve_files(base);
        Ok(cfg)
    }
}
