//! TLS between a client and a node, nested in a stream that relays carry:
//! a relay forwards the bytes but can neither read nor forge them.
//!
//! # Protocol flow
//! 1. client → relay: `Hello`, `Request::Route(..)` (readable by the relay,
//!    which must know where to carry the stream);
//! 2. relay → node, directly, through the node's tunnel, or through
//!    another relay: `Hello`, `Request::Route(Node { name })`;
//! 3. node → relay → client: `Hello`, `Reply::Routed { node, fp }`;
//! 4. client ↔ node: a TLS 1.3 handshake over the spliced stream
//!    ([`connect`], [`accept`]). The client presents its own fleet
//!    certificate; the node checks that it chains to the fleet CA and has
//!    a client role. The node presents its fleet certificate; the client
//!    checks that it chains to the CA, is named `NODE.node.tether`, and
//!    has the fingerprint gossip announced for that node;
//! 5. inside the TLS session: `Hello`, the request, and its answer, as on
//!    any other stream.
//!
//! A relay that changes, drops or injects a byte after step 3 breaks the
//! TLS record MACs; one that cuts the stream short leaves the client
//! without the `close_notify` alert. Either way the client gets an error,
//! never a forged answer.

use super::fleet::{self, FleetPeer, FleetRole, FleetTls};
use super::Fingerprint;
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use std::io::Cursor;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Chain};

/// The reading half of a stream, whatever carries it (a QUIC stream, a
/// nested TLS session).
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a stream.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A stream's reading half with the bytes a frame reader had read ahead
/// of the TLS session put back in front.
pub type Prefixed<R> = Chain<Cursor<BytesMut>, R>;

/// Puts `ahead` back in front of `rd`.
pub fn prefixed<R: AsyncRead>(ahead: BytesMut, rd: R) -> Prefixed<R> {
    Cursor::new(ahead).chain(rd)
}

/// Why the nested TLS session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// The handshake failed: the peer is not who it must be, or the bytes
    /// were tampered with on the way.
    #[error("TLS with {peer} failed: {err}")]
    Handshake {
        /// Who it should have been.
        peer: String,
        /// What went wrong.
        err: std::io::Error,
    },
    /// The credentials could not be turned into a TLS configuration.
    #[error("TLS configuration: {0:#}")]
    Config(anyhow::Error),
    /// The peer's certificate carries no fleet role.
    #[error("the peer's certificate carries no fleet role")]
    NoRole,
}

/// Runs the client side of the nested session to node `node` over
/// `rd`/`wr`. With `pin`, the node's certificate must have that
/// fingerprint as well as the node's name.
pub async fn connect<R, W>(
    rd: R,
    wr: W,
    me: &FleetTls,
    node: &str,
    pin: Option<Fingerprint>,
) -> Result<(BoxRead, BoxWrite), E2eError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let cfg = fleet::client_tls(me, pin, false).map_err(E2eError::Config)?;
    let dns = fleet::dns_name(FleetRole::Node, node);
    let name = ServerName::try_from(dns.clone())
        .map_err(|e| E2eError::Config(anyhow::anyhow!("node name {node}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tokio::io::join(rd, wr))
        .await
        .map_err(|err| E2eError::Handshake {
            peer: format!("node {node}"),
            err,
        })?;
    let (r, w) = tokio::io::split(tls);
    Ok((Box::new(r), Box::new(w)))
}

/// What [`accept`] needs: this node's TLS server configuration, built once.
#[derive(Clone)]
pub struct Acceptor(tokio_rustls::TlsAcceptor);

impl Acceptor {
    /// Accepts fleet clients (read-only ones too), and no other role.
    pub fn clients(me: &FleetTls) -> anyhow::Result<Acceptor> {
        let cfg = fleet::server_tls(me, vec![], |r| r.is_client())?;
        Ok(Acceptor(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
    }
}

/// Runs the node side of the nested session over `rd`/`wr`, and returns
/// the streams inside it with the client its certificate names.
pub async fn accept<R, W>(
    rd: R,
    wr: W,
    acceptor: &Acceptor,
) -> Result<(BoxRead, BoxWrite, FleetPeer), E2eError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let tls = acceptor
        .0
        .accept(tokio::io::join(rd, wr))
        .await
        .map_err(|err| E2eError::Handshake {
            peer: "the client".into(),
            err,
        })?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| fleet::peer_of(c.as_ref()))
        .ok_or(E2eError::NoRole)?;
    let (r, w) = tokio::io::split(tls);
    Ok((Box::new(r), Box::new(w), peer))
}
