//! Node and relay config files, written by serializing the real config
//! types ([`NodeConfig`], [`RelayConfig`]): a harness cannot write a key
//! the programs do not know, and a renamed field breaks the build, not a
//! test at run time.

use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use tether_node::NodeConfig;
use tether_relay::RelayConfig;

/// A relay's dial timeout when its config does not say (the relay's own
/// default): `RelayConfig` has no `Default` to take it from.
pub const RELAY_DIAL_TIMEOUT_MS: u64 = 2000;

/// Writes a node config file (`tether node --config FILE`, or
/// `<state>/node.toml`).
pub fn write_node_config(path: &Path, cfg: &NodeConfig) -> anyhow::Result<()> {
    write_toml(path, cfg)
}

/// Writes a relay config file (`tether relay --config FILE`).
pub fn write_relay_config(path: &Path, cfg: &RelayConfig) -> anyhow::Result<()> {
    write_toml(path, cfg)
}

fn write_toml<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = toml::to_string(value)
        .with_context(|| format!("serializing the config for {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tether_net::gossip::GossipConfig;

    fn gossip(dir: &Path) -> GossipConfig {
        GossipConfig {
            cluster_id: "c".into(),
            listen: "127.0.0.5:7001".parse().unwrap(),
            advertise: Some("127.0.0.5:7002".parse().unwrap()),
            seeds: vec!["127.0.0.6:7001".into(), "127.0.0.7:7001".into()],
            interval_ms: 100,
            secret_file: dir.join("secret"),
            next_secret_file: None,
            previous_secret_file: None,
        }
    }

    /// The TOML of a config: what "unchanged" is measured by (the config
    /// types have no `PartialEq`).
    fn text<T: Serialize>(v: &T) -> String {
        toml::to_string(v).unwrap()
    }

    #[test]
    fn a_node_config_loads_back_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let metrics: SocketAddr = "127.0.0.5:9100".parse().unwrap();
        let cfgs = [
            NodeConfig::default(),
            NodeConfig::for_test(),
            NodeConfig {
                listen: "127.0.0.5:7400".parse().unwrap(),
                launcher: vec!["env".into(), "A=b".into()],
                retain_exited: 2,
                default_command: vec!["sh".into()],
                name: Some("n1".into()),
                tls_dir: Some(d.path().join("ca/nodes/n1")),
                advertise: Some("127.0.0.5:7401".parse().unwrap()),
                relays: vec!["127.0.0.9:7400".into()],
                gossip: Some(gossip(d.path())),
                metrics_listen: Some(metrics),
                ..NodeConfig::for_test()
            },
        ];
        for cfg in cfgs {
            let path = d.path().join("node.toml");
            write_node_config(&path, &cfg).unwrap();
            let back = NodeConfig::load(&path).unwrap();
            assert_eq!(text(&back), text(&cfg));
            assert_eq!(back.metrics_listen, cfg.metrics_listen);
            assert_eq!(back.gossip.is_some(), cfg.gossip.is_some());
        }
    }

    #[test]
    fn a_relay_config_loads_back_unchanged() {
        let d = tempfile::tempdir().unwrap();
        for (advertise, metrics) in [
            (None, None),
            (
                Some("127.0.0.8:7400".parse().unwrap()),
                Some("127.0.0.8:9100".parse().unwrap()),
            ),
        ] {
            let cfg = RelayConfig {
                name: "r1".into(),
                listen: "127.0.0.8:7400".parse().unwrap(),
                advertise,
                tls_dir: d.path().join("ca/relays/r1"),
                gossip: gossip(d.path()),
                dial_timeout_ms: RELAY_DIAL_TIMEOUT_MS,
                metrics_listen: metrics,
                limits: Default::default(),
            };
            let path = d.path().join("r1.toml");
            write_relay_config(&path, &cfg).unwrap();
            let back = RelayConfig::load(&path).unwrap();
            assert_eq!(text(&back), text(&cfg));
            assert_eq!(back.advertise, cfg.advertise);
        }
    }

    #[test]
    fn the_dial_timeout_is_the_relays_default() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.toml");
        let cfg = RelayConfig {
            name: "r1".into(),
            listen: "127.0.0.8:7400".parse().unwrap(),
            advertise: None,
            tls_dir: d.path().join("tls"),
            gossip: gossip(d.path()),
            dial_timeout_ms: 1,
            metrics_listen: None,
            limits: Default::default(),
        };
        // Written without the key, the relay fills in its default.
        let mut t: toml::Table = toml::from_str(&text(&cfg)).unwrap();
        t.remove("dial_timeout_ms");
        std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(
            RelayConfig::load(&path).unwrap().dial_timeout_ms,
            RELAY_DIAL_TIMEOUT_MS
        );
    }
}
