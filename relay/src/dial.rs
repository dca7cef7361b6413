//! Reaching a session's owner: its tunnel to this relay, a direct
//! connection pinned by the fingerprint gossip announced, or a relay it
//! keeps a tunnel to. Connections are cached per member.

use crate::resolve::NodeView;
use crate::server::{Relay, AGENT};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::tls::fleet::{self, FleetRole};
use tether_net::tls::Fingerprint;
use tether_proto::gossip::{NodeRecord, Role};
use tether_proto::Request;

/// A stream to a node, after its hello.
pub(crate) type NodeStream = (
    FrameReader<quinn::RecvStream>,
    FrameWriter<quinn::SendStream>,
);

impl Relay {
    pub(crate) fn unreachable(&self, node: &NodeView, why: &str) -> String {
        match node.dead_since {
            Some(t) => format!(
                "node {} unreachable since {} (its gossip stopped); try again when it is back",
                node.name,
                tether_net::time::rfc3339(t)
            ),
            None => format!("node {} unreachable: {why}", node.name),
        }
    }

    /// Opens a stream to `node` in this relay's own name, sends `req` (a
    /// route or a locate: a relay never acts for a client), and reads the
    /// node's hello.
    pub(crate) async fn open_to(
        &self,
        node: &NodeView,
        req: &Request,
        forwarded: bool,
    ) -> Result<NodeStream, String> {
        if !node.live {
            return Err(self.unreachable(node, "marked dead"));
        }
        let timeout = Duration::from_millis(self.cfg.dial_timeout_ms);
        let attempt = async {
            let conn = self.connection(node, forwarded).await?;
            let (send, recv) = conn.open_bi().await.context("opening a stream")?;
            let mut nwr = FrameWriter::new(send);
            nwr.hello(AGENT).await?;
            nwr.control(req).await?;
            let mut nrd = FrameReader::new(recv);
            nrd.hello().await?;
            Ok::<_, anyhow::Error>((nrd, nwr))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                self.conns.lock().await.remove(&node.id);
                Err(self.unreachable(node, &format!("{e:#}")))
            }
            Err(_) => {
                self.conns.lock().await.remove(&node.id);
                Err(self.unreachable(node, &format!("no answer within {timeout:?}")))
            }
        }
    }

    /// A connection that reaches `node`: its tunnel to this relay, a
    /// direct one, or one to a relay it keeps a tunnel to.
    async fn connection(
        &self,
        node: &NodeView,
        forwarded: bool,
    ) -> anyhow::Result<quinn::Connection> {
        if let Some(c) = self.tunnels.lock().await.get(&node.name) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if let Some(quic) = &node.quic {
            let addr: SocketAddr = quic.parse().context("it announced a bad QUIC address")?;
            let pin = node.fp.parse().context("it announced a bad fingerprint")?;
            let name = fleet::dns_name(FleetRole::Node, &node.name);
            return self.dial(&node.id, addr, pin, &name).await;
        }
        if forwarded {
            bail!("it has no tunnel to this relay (forwarded requests are not forwarded again)");
        }
        // Through a live relay that holds its tunnel.
        let relays: Vec<NodeRecord> = self
            .gossip
            .members()
            .await
            .into_iter()
            .filter(|m| m.live)
            .filter_map(|m| m.record)
            .filter(|r| {
                r.role == Role::Relay && r.name != self.cfg.name && node.relays.contains(&r.name)
            })
            .collect();
        let mut last =
            anyhow::anyhow!("it accepts no direct connections and keeps no tunnel to a live relay");
        for r in relays {
            let Some(addr) = r.quic.as_deref().and_then(|q| q.parse().ok()) else {
                continue;
            };
            let Ok(pin) = r.fp.parse() else { continue };
            let name = fleet::dns_name(FleetRole::Relay, &r.name);
            match self
                .dial(&format!("relay:{}", r.name), addr, pin, &name)
                .await
            {
                Ok(c) => return Ok(c),
                Err(e) => last = e.context(format!("through relay {}", r.name)),
            }
        }
        Err(last)
    }

    /// A cached or new connection to a pinned member.
    async fn dial(
        &self,
        key: &str,
        addr: SocketAddr,
        pin: Fingerprint,
        name: &str,
    ) -> anyhow::Result<quinn::Connection> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(key) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let cfg = fleet::dial_config(&self.tls, Some(pin))?;
        let conn = self.endpoint.connect_with(cfg, addr, name)?.await?;
        conns.insert(key.to_string(), conn.clone());
        Ok(conn)
    }
}
