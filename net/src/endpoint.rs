//! The QUIC endpoint every tether member and client uses: one UDP socket
//! with large buffers, and one set of transport settings.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;

/// The endpoint settings of a node or relay whose private key is
/// `secret` (its DER): the stateless-reset key derives from it, so it
/// stays the same across restarts.
///
/// Why: a peer's connection to a process that died (SIGKILL, a crash)
/// would otherwise hang until its idle timeout. When the restarted
/// process gets a packet of such a connection, it answers with a
/// stateless reset (RFC 9000, 10.3) whose token only the same key can
/// make: the peer, a relay's pool or an attached client, drops the
/// connection at once and dials anew. The key is a one-way derivation, so
/// knowing it reveals nothing of the private key.
///
/// quinn sends a reset only for a connection ID its generator accepts, so
/// the restarted process must know its predecessor's IDs as its own:
/// [`TaggedCids`], keyed from the same secret. Their tag is a keyed hash
/// an outsider cannot compute, so no one can make the endpoint reveal the
/// reset token of an ID it did not issue.
pub fn endpoint_config(secret: &[u8]) -> quinn::EndpointConfig {
    let k = blake3::derive_key("tether quic stateless reset key v1", secret);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k);
    let cid_key = blake3::derive_key("tether quic connection id key v2", secret);
    let mut c = quinn::EndpointConfig::new(Arc::new(key));
    c.cid_generator(move || Box::new(TaggedCids { key: cid_key }));
    c
}

/// Bytes of a [`TaggedCids`] connection ID: random, then tag.
const CID_RANDOM: usize = 8;
const CID_TAG: usize = 8;

/// Connection IDs of 16 bytes: 8 random, then 8 bytes of a blake3 hash of
/// them keyed with the member's own key. Only this member (and its
/// restarted self) makes IDs that validate: quinn drops a packet whose ID
/// does not, without a reset.
pub struct TaggedCids {
    key: [u8; 32],
}

impl TaggedCids {
    fn tag(&self, random: &[u8]) -> [u8; CID_TAG] {
        let h = blake3::keyed_hash(&self.key, random);
        h.as_bytes()[..CID_TAG].try_into().expect("8 bytes")
    }
}

impl quinn_proto::ConnectionIdGenerator for TaggedCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut b = [0u8; CID_RANDOM + CID_TAG];
        getrandom::fill(&mut b[..CID_RANDOM]).expect("the OS gives random bytes");
        let tag = self.tag(&b[..CID_RANDOM]);
        b[CID_RANDOM..].copy_from_slice(&tag);
        quinn::ConnectionId::new(&b)
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        if cid.len() == CID_RANDOM + CID_TAG && cid[CID_RANDOM..] == self.tag(&cid[..CID_RANDOM]) {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_RANDOM + CID_TAG
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A QUIC endpoint on `addr` with socket buffers large enough for bulk
/// output; a server when `server` is given.
pub fn make_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> anyhow::Result<quinn::Endpoint> {
    make_endpoint_with(addr, server, quinn::EndpointConfig::default())
}

/// The same with endpoint settings ([`endpoint_config`]).
pub fn make_endpoint_with(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    config: quinn::EndpointConfig,
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
    endpoint_on(sock.into(), server, config)
}

/// A QUIC endpoint on a socket the caller made (a test's, or one behind a
/// fault proxy).
pub fn endpoint_on(
    sock: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    config: quinn::EndpointConfig,
) -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::new(
        config,
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
    /// The endpoint on this socket, with `config` ([`endpoint_config`]);
    /// `listen` is bound for [`QuicSocket::FromConfig`].
    pub fn endpoint(
        self,
        listen: SocketAddr,
        server: Option<quinn::ServerConfig>,
        config: quinn::EndpointConfig,
    ) -> anyhow::Result<quinn::Endpoint> {
        match self {
            QuicSocket::FromConfig => make_endpoint_with(listen, server, config),
            QuicSocket::Udp(s) => endpoint_on(s, server, config),
            QuicSocket::Abstract(s) => Ok(quinn::Endpoint::new_with_abstract_socket(
                config,
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
    t.keep_alive_interval(Some(MEMBER_KEEP_ALIVE));
    t.max_idle_timeout(Some(
        MEMBER_IDLE_TIMEOUT
            .try_into()
            .expect("2 s is a valid idle timeout"),
    ));
    // Let path MTU discovery go up to what loopback and jumbo-frame links
    // carry: far fewer packets (and crypto calls) per byte of output. On
    // ordinary paths discovery settles at the path's MTU.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// How long a connection between members (a relay's to a node, a node's
/// tunnel) may go without a packet before it counts as broken. A relay
/// whose path to a node went dark stops carrying its clients' streams
/// after this, and they resume through another relay: no client is held
/// in a black hole longer than a relay's dial timeout (2 s by default).
pub const MEMBER_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How often an idle connection between members is pinged: four pings
/// per [`MEMBER_IDLE_TIMEOUT`].
pub const MEMBER_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a client's connection may go without hearing its node or
/// relay before it counts as broken: the node daemon or relay is gone
/// (SIGKILL, a partition), and the client resumes through the next relay
/// or the restarted daemon, with nothing lost. Short, so that a relay's
/// death costs an attached client under 2 s (this, the first retry's
/// 100 ms, and a new route); a path that drops more than a second of
/// datagrams costs a reconnect, never a byte. QUIC raises it to three
/// probe timeouts on slow paths (RFC 9000, 10.1), so a long path does not
/// break on its round trip alone.
pub const CLIENT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);
/// How often an idle client connection is pinged, so that
/// [`CLIENT_IDLE_TIMEOUT`] measures a dead peer, not a quiet one: four
/// pings per timeout, so a lost ping or three do not break it.
pub const CLIENT_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(250);

/// Transport settings of a client's dialing side (CLI, library, agents):
/// as [`transport`], with the short [`CLIENT_IDLE_TIMEOUT`]. The idle
/// timeout of a connection is the smaller of its two ends', so this sets
/// it for every client connection, while members keep the longer one
/// between themselves.
pub fn client_transport() -> quinn::TransportConfig {
    let mut t = transport();
    t.keep_alive_interval(Some(CLIENT_KEEP_ALIVE));
    t.max_idle_timeout(Some(
        CLIENT_IDLE_TIMEOUT
            .try_into()
            .expect("1 s is a valid idle timeout"),
    ));
    t
}

/// Largest UDP payload MTU discovery may probe for.
const MAX_UDP_PAYLOAD: u16 = 65_000;

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::ConnectionIdGenerator;

    #[test]
    fn only_the_same_key_makes_ids_that_validate() {
        let mut a = TaggedCids { key: [1; 32] };
        let b = TaggedCids { key: [2; 32] };
        let restarted = TaggedCids { key: [1; 32] };
        for _ in 0..100 {
            let cid = a.generate_cid();
            assert_eq!(cid.len(), 16);
            assert!(a.validate(&cid).is_ok());
            assert!(
                restarted.validate(&cid).is_ok(),
                "the restarted process knows it"
            );
            assert!(b.validate(&cid).is_err(), "another member's key does not");
            let mut bent = cid.to_vec();
            bent[3] ^= 1;
            assert!(a.validate(&quinn::ConnectionId::new(&bent)).is_err());
        }
        assert!(a.validate(&quinn::ConnectionId::new(&[0; 8])).is_err());
    }
}
