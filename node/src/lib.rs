//! The tether node: the host daemon and the keepers that hold its
//! sessions.
//!
//! - [`keeper`]: one small process per session. It is the parent of the
//!   session's process, holds the PTY master and the [`ring`] buffer, and
//!   serves the daemon over a unix socket. It runs in its own session
//!   (`setsid`), so the daemon can be stopped, crashed or upgraded while
//!   the session goes on.
//! - [`daemon`]: the node daemon. It owns the state dir ([`store`]), makes
//!   the node's [`identity`], starts and re-adopts keepers, and serves
//!   clients over QUIC with mutual TLS.
//! - [`client`]: the client side of the same protocol, for the CLI.
//!
//! What it does not do (yet): gossip, relaying, fleet certificates.

pub mod client;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod fleet;
pub mod gossip;
pub mod identity;
pub mod keeper;
pub mod metrics;
pub mod ring;
pub mod store;

pub use config::NodeConfig;
