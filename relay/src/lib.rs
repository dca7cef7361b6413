//! The tether relay: a stateless member of the fleet that routes clients
//! to the node owning a session.
//!
//! # Protocol flow
//! 1. A client (fleet certificate, role client) opens a QUIC stream and
//!    sends `Hello` and a `Request`, exactly as it would to a node.
//! 2. The relay resolves the target through gossip ([`resolve`]): a full
//!    ID routes by the owner tag it carries, so a session created a moment
//!    ago is routable before gossip has spread it; names and prefixes are
//!    looked up in the gossiped session keys.
//! 3. It opens a stream to the owner, on the least loaded of the few
//!    connections it keeps to it ([`pool`]: dialed, pinning the
//!    fingerprint gossip announced, or tunnels the node keeps to it),
//!    sends `Hello` and `Route`, then splices the streams both ways. The
//!    client and the node run TLS inside; the node authorizes.
//!    A name gossip does not know yet is asked of a bounded number of
//!    live nodes ([`locate`]).
//! 4. `List` and `Nodes` are answered from gossip: the view of the fleet
//!    is parsed and indexed once per gossip change ([`view`]), not per
//!    request. A client's `ls` then asks each live node end to end,
//!    through routed streams, a bounded number at a time.
//!
//! The relay keeps no session state: any relay serves any request and a
//! restart loses nothing.
//!
//! What it does not do: hold sessions, PTYs or rings (it depends on
//! `tether-proto` and `tether-net` only), or decide who may do what to a
//! session (the owning node authorizes, by the client the relay names).

pub mod config;
mod dial;
mod fanout;
pub mod locate;
mod pool;
pub mod resolve;
pub mod server;
pub mod view;

pub use config::RelayConfig;
pub use server::{start, RelayBuilder, RelayHandle};
