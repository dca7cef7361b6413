//! The QUIC endpoint every tether member and client uses: one UDP socket
//! with large buffers, and one set of transport settings.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;

/// A QUIC endpoint on `addr` with socket buffers large enough for bulk
/// output; a server when `server` is given.
pub fn make_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> anyhow::Result<quinn::Endpoint> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&addr.into()).with_context(|| {
        format!("cannot listen on {addr}: is it in use? set `listen` in the config")
    })?;
    endpoint_on(sock.into(), server)
}

/// A QUIC endpoint on a socket the caller made (a test's, or one behind a
/// fault proxy).
pub fn endpoint_on(
    sock: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        sock,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// The socket a node's or relay's QUIC endpoint runs on.
pub enum QuicSocket {
    /// Bind the listen address of the config (the default).
    FromConfig,
    /// A UDP socket bound by the caller.
    Udp(std::net::UdpSocket),
    /// Any socket quinn can drive (a simulated network, a fault injector).
    Abstract(Arc<dyn quinn::AsyncUdpSocket>),
}

impl QuicSocket {
    /// The endpoint on this socket; `listen` is bound for
    /// [`QuicSocket::FromConfig`].
    pub fn endpoint(
        self,
        listen: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> anyhow::Result<quinn::Endpoint> {
        match self {
            QuicSocket::FromConfig => make_endpoint(listen, server),
            QuicSocket::Udp(s) => endpoint_on(s, server),
            QuicSocket::Abstract(s) => Ok(quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                server,
                s,
                Arc::new(quinn::TokioRuntime),
            )?),
        }
    }
}

/// Bytes a server lets one connection's peer have in flight, unread: what
/// a client sends (keystrokes, requests) is small. A relay raises it for a
/// node's tunnel, which carries output ([`TUNNEL_RECEIVE_WINDOW`]).
pub const SERVER_RECEIVE_WINDOW: u32 = 512 << 10;
/// The receive window of a node's tunnel at its relay.
pub const TUNNEL_RECEIVE_WINDOW: u32 = 32 << 20;
/// Streams a server lets one connection open at once, at the QUIC level;
/// `[limits] streams_per_connection` answers those beyond it with an error.
const SERVER_MAX_STREAMS: u32 = 256;

/// Transport settings of a node's or relay's accepting side: as
/// [`transport`], with a peer's unread bytes and open streams bounded.
pub fn server_transport() -> quinn::TransportConfig {
    let mut t = transport();
    t.max_concurrent_bidi_streams(SERVER_MAX_STREAMS.into());
    t.receive_window(SERVER_RECEIVE_WINDOW.into());
    t
}

/// QUIC transport settings shared by every tether endpoint (its dialing
/// side as it is).
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Many long-lived attach streams per connection; generous windows so
    // bulk output is not throttled by flow control on loopback.
    t.max_concurrent_bidi_streams(1024u32.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    // A peer that vanishes without closing (SIGKILL, a cable pulled) is
    // noticed within the idle timeout; keep-alives keep healthy idle
    // connections (an attach with no output) open.
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    t.max_idle_timeout(Some(
        std::time::Duration::from_secs(4)
            .try_into()
            .expect("4 s is a valid idle timeout"),
    ));
    // Let path MTU discovery go up to what loopback and jumbo-frame links
    // carry: far fewer packets (and crypto calls) per byte of output. On
    // ordinary paths discovery settles at the path's MTU.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Largest UDP payload MTU discovery may probe for.
const MAX_UDP_PAYLOAD: u16 = 65_000;
