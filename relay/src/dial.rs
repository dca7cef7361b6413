//! Reaching a session's owner: its tunnel to this relay, a direct
//! connection pinned by the fingerprint gossip announced, or a relay it
//! keeps a tunnel to. Connections are pooled per member ([`crate::pool`]):
//! a stream takes the least loaded, and a pool whose every connection is
//! busy dials one more in the background, up to its limit.

use crate::pool::{Lease, Pool};
use crate::resolve::NodeView;
use crate::server::{Relay, AGENT};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::tls::fleet::{self, FleetRole};
use tether_net::tls::Fingerprint;
use tether_proto::gossip::{NodeRecord, Role};
use tether_proto::Request;
use tracing::debug;

/// A stream to a node, after its hello, and its place on its connection.
pub(crate) type NodeStream = (
    FrameReader<quinn::RecvStream>,
    FrameWriter<quinn::SendStream>,
    Lease,
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
        self: &Arc<Self>,
        node: &NodeView,
        req: &Request,
        forwarded: bool,
    ) -> Result<NodeStream, String> {
        if !node.live {
            return Err(self.unreachable(node, "marked dead"));
        }
        let timeout = Duration::from_millis(self.cfg.dial_timeout_ms);
        let attempt = || async {
            let (conn, lease) = self.connection(node, forwarded).await?;
            let (send, recv) = conn.open_bi().await.context("opening a stream")?;
            let mut nwr = FrameWriter::new(send);
            nwr.hello(AGENT).await?;
            nwr.control(req).await?;
            let mut nrd = FrameReader::new(recv);
            nrd.hello().await?;
            Ok::<_, anyhow::Error>((nrd, nwr, lease))
        };
        // A pooled connection may be to the node's previous process: a
        // restarted node resets it (stateless reset) as soon as it hears
        // from it, and this attempt fails at once. The pool is dropped and
        // the stream tried once more on a new connection, within the same
        // timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        for _ in 0..2 {
            match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => {
                    self.conns.lock().await.remove(&node.id);
                    last = Some(format!("{e:#}"));
                }
                Err(_) => {
                    self.conns.lock().await.remove(&node.id);
                    return Err(self.unreachable(node, &format!("no answer within {timeout:?}")));
                }
            }
        }
        Err(self.unreachable(node, &last.unwrap_or_default()))
    }

    /// A connection that reaches `node`: its tunnel to this relay, a
    /// direct one, or one to a relay it keeps a tunnel to.
    async fn connection(
        self: &Arc<Self>,
        node: &NodeView,
        forwarded: bool,
    ) -> anyhow::Result<(quinn::Connection, Lease)> {
        let tunnel = self
            .tunnels
            .lock()
            .expect("tunnels lock")
            .get_mut(&node.name)
            .and_then(Pool::pick);
        if let Some(picked) = tunnel {
            return Ok(picked);
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
            .iter()
            .filter(|m| m.live)
            .filter_map(|m| m.record.clone())
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

    /// A pooled or new connection to a pinned member.
    async fn dial(
        self: &Arc<Self>,
        key: &str,
        addr: SocketAddr,
        pin: Fingerprint,
        name: &str,
    ) -> anyhow::Result<(quinn::Connection, Lease)> {
        let mut conns = self.conns.lock().await;
        let pool = conns.entry(key.to_string()).or_insert_with(Pool::dialed);
        // Asked before this stream takes its place: a lone stream does
        // not make the pool grow.
        let grow = pool.wants_more();
        if let Some(picked) = pool.pick() {
            if grow {
                pool.dialing = true;
                let (r, key, name) = (self.clone(), key.to_string(), name.to_string());
                self.tasks
                    .spawn(async move { r.grow(key, addr, pin, name).await });
            }
            return Ok(picked);
        }
        // The first connection: this stream waits for it, and so do the
        // others to the same member (one dial, not one each).
        let conn = self.connect(addr, pin, name).await?;
        pool.add(conn);
        Ok(pool.pick().expect("a connection was just added"))
    }

    /// Adds a connection to the pool of `key`, in the background.
    async fn grow(self: Arc<Self>, key: String, addr: SocketAddr, pin: Fingerprint, name: String) {
        let timeout = Duration::from_millis(self.cfg.dial_timeout_ms);
        let dialed = tokio::time::timeout(timeout, self.connect(addr, pin, &name)).await;
        let mut conns = self.conns.lock().await;
        let pool = conns.entry(key.clone()).or_insert_with(Pool::dialed);
        pool.dialing = false;
        match dialed {
            // Full when the pool was dropped and filled again meanwhile.
            Ok(Ok(conn)) if pool.is_full() => conn.close(0u32.into(), b"not needed"),
            Ok(Ok(conn)) => pool.add(conn),
            Ok(Err(e)) => debug!(%key, err = %format!("{e:#}"), "adding a connection failed"),
            Err(_) => debug!(%key, "adding a connection timed out"),
        }
    }

    /// A new connection to a pinned member; cut at once should a CRL
    /// applied during the handshake revoke it.
    async fn connect(
        &self,
        addr: SocketAddr,
        pin: Fingerprint,
        name: &str,
    ) -> anyhow::Result<quinn::Connection> {
        let cfg = fleet::dial_config(&self.tls, Some(pin))?;
        let conn = self.endpoint.connect_with(cfg, addr, name)?.await?;
        if self.tls.revocations.cut_if_revoked(&conn) {
            bail!("its certificate is revoked");
        }
        Ok(conn)
    }
}
