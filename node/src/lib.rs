//! The tether node: the host daemon and the keepers that hold its
//! sessions.
//!
//! - [`keeper`]: one small process per session. It is the parent of the
//!   session's process, holds the PTY master and the [`ring`] buffer, and
//!   serves the daemon (and local clients) over a unix socket. It runs in
//!   its own session (`setsid`), so the daemon can be stopped, crashed or
//!   upgraded while the session goes on.
//! - [`daemon`]: the node daemon. It owns the state dir ([`store`]),
//!   starts and re-adopts keepers, serves clients over QUIC with mutual
//!   TLS, announces its sessions by gossip and keeps tunnels to relays.
//!
//! What it does not do: route between nodes (the relay's job), or act as a
//! client (the `tether-client` crate). TLS, framing, gossip transport and
//! metrics come from `tether-net`; wire types and protocol rules from
//! `tether-proto`.

pub mod config;
pub mod daemon;
pub mod grace;
pub mod keeper;
pub mod ring;
pub mod screen;
pub mod store;

pub use config::NodeConfig;
