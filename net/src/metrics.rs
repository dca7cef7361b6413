//! Prometheus-format metrics over a minimal HTTP/1.1 listener.
//!
//! `GET /metrics` answers the text exposition format; anything else gets
//! 404. The listener is optional (`metrics_listen` in the config) and
//! serves one request per connection.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::{debug, info};

/// Counters shared by the daemon and the relay.
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams spliced to a keeper or a node, now.
    pub splices_active: AtomicU64,
    /// Streams spliced, in all.
    pub splices_total: AtomicU64,
    /// Bytes sent to clients through splices.
    pub bytes_out: AtomicU64,
    /// Bytes received from clients through splices.
    pub bytes_in: AtomicU64,
}

/// Counts a splice while it lives.
pub struct SpliceGuard(Arc<Counters>);

impl Counters {
    /// Marks a splice as started; dropping the guard marks it ended.
    pub fn splice(self: &Arc<Self>) -> SpliceGuard {
        self.splices_active.fetch_add(1, Ordering::Relaxed);
        self.splices_total.fetch_add(1, Ordering::Relaxed);
        SpliceGuard(self.clone())
    }
}

impl Drop for SpliceGuard {
    fn drop(&mut self) {
        self.0.splices_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An `AsyncWrite` that adds what it writes to a counter.
pub struct Counted<W> {
    inner: W,
    counter: Arc<Counters>,
    outbound: bool,
}

impl<W> Counted<W> {
    /// Counts writes to `inner` as bytes out (to a client) or in.
    pub fn new(inner: W, counter: Arc<Counters>, outbound: bool) -> Self {
        Counted {
            inner,
            counter,
            outbound,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            let c = if self.outbound {
                &self.counter.bytes_out
            } else {
                &self.counter.bytes_in
            };
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<W: AsyncRead + Unpin> AsyncRead for Counted<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Builds an exposition text.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    /// Adds a metric with one value.
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }

    /// Adds a metric with labelled values.
    pub fn labelled(&mut self, name: &str, kind: &str, help: &str, values: &[(&str, &str, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (label, v, n) in values {
            let _ = writeln!(self.0, "{name}{{{label}=\"{v}\"}} {n}");
        }
    }

    /// Adds the refusals by limit: those of `[limits]`, and `more` (the
    /// node's limits on sessions), by config key.
    pub fn limits(&mut self, s: &crate::limits::LimitStats, more: &[(&str, u64)]) {
        let values: Vec<(&str, &str, u64)> = s
            .values()
            .iter()
            .chain(more)
            .map(|(l, n)| ("limit", *l, *n))
            .collect();
        self.labelled(
            "tether_limit_refusals_total",
            "counter",
            "Requests, streams and connections refused by a limit of the config, by its key.",
            &values,
        );
    }

    /// Adds the splice counters.
    pub fn counters(&mut self, c: &Counters) {
        self.metric(
            "tether_splices_active",
            "gauge",
            "Client streams spliced now.",
            c.splices_active.load(Ordering::Relaxed),
        );
        self.metric(
            "tether_splices_total",
            "counter",
            "Client streams spliced in all.",
            c.splices_total.load(Ordering::Relaxed),
        );
        self.metric(
            "tether_bytes_out_total",
            "counter",
            "Bytes sent to clients.",
            c.bytes_out.load(Ordering::Relaxed),
        );
        self.metric(
            "tether_bytes_in_total",
            "counter",
            "Bytes received from clients.",
            c.bytes_in.load(Ordering::Relaxed),
        );
    }

    /// Adds the gossip counters.
    pub fn gossip(&mut self, g: &crate::gossip::GossipStats) {
        use crate::gossip::{KeyRole, Reject};
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.metric(
            "tether_gossip_accepted_total",
            "counter",
            "Gossip datagrams accepted.",
            l(&g.accepted),
        );
        let by_key: Vec<_> = KeyRole::ALL
            .iter()
            .map(|k| ("key", k.label(), g.accepted_with(*k)))
            .collect();
        self.labelled(
            "tether_gossip_accepted_by_key_total",
            "counter",
            "Gossip datagrams accepted, by the secret that sealed them (current, or a rotation's next or previous).",
            &by_key,
        );
        let by_reason: Vec<_> = Reject::ALL
            .iter()
            .map(|r| ("reason", r.label(), g.rejected_for(*r)))
            .collect();
        self.labelled(
            "tether_gossip_rejected_total",
            "counter",
            "Gossip datagrams rejected, by reason.",
            &by_reason,
        );
        self.metric(
            "tether_gossip_sent_bytes_total",
            "counter",
            "Gossip bytes sent.",
            l(&g.bytes_sent),
        );
        self.metric(
            "tether_gossip_received_bytes_total",
            "counter",
            "Gossip bytes received.",
            l(&g.bytes_received),
        );
    }

    /// Adds the revocation figures: the CRL in force, handshakes refused
    /// and connections cut because a certificate is revoked.
    pub fn revocations(&mut self, r: &crate::tls::revoke::Revocations) {
        self.metric(
            "tether_crl_number",
            "gauge",
            "Number of the fleet CA's revocation list in force (0: none).",
            r.number(),
        );
        self.metric(
            "tether_revoked_refused_total",
            "counter",
            "Handshakes refused because the peer's certificate is revoked.",
            r.refused_total(),
        );
        self.metric(
            "tether_revoked_cut_total",
            "counter",
            "Connections closed because a revocation list revoked their peer.",
            r.cut_total(),
        );
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

/// What renders the current metrics.
pub type Render = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> + Send + Sync,
>;

/// Binds the metrics listener (an error names the setting to fix).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for metrics on {addr}: {e}; check `metrics_listen`")
    })?;
    info!(addr = %listener.local_addr()?, "metrics listener");
    Ok(listener)
}

/// How long a metrics request may take to arrive.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `listener`; each request is a task of `tasks`.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    render: Render,
    tasks: crate::tasks::Tasks,
) -> anyhow::Result<()> {
    loop {
        let Ok((s, peer)) = listener.accept().await else {
            continue;
        };
        tasks.spawn(answer(s, peer, render.clone()));
    }
}

async fn answer(mut s: tokio::net::TcpStream, peer: SocketAddr, render: Render) {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while n < buf.len() {
            let k = s.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let resp = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
        let body = render().await;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntry GET /metrics ...\n".to_string()
    };
    if let Err(err) = s.write_all(resp.as_bytes()).await {
        debug!(%peer, %err, "metrics write failed");
    }
    let _ = s.shutdown().await;
}
