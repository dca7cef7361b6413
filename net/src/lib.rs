//! tether's network layer, shared by nodes, relays and clients.
//!
//! - [`conn`]: frames over any byte stream (read, write, the opening of a
//!   served stream, splicing two streams);
//! - [`endpoint`]: the QUIC endpoint and its transport settings;
//! - [`tls`]: fingerprints, local pinning, the fleet CA and its verifiers;
//! - [`gossip`]: chitchat membership over a sealed, authenticated UDP
//!   transport;
//! - [`metrics`]: byte and splice counters, Prometheus text over HTTP;
//! - [`files`], [`runtime`], [`time`]: private directories and crash-safe
//!   writes, how a local client finds its node, clocks.
//!
//! What it does not do: PTYs, keepers, ring buffers or session state (the
//! node's), routing decisions (the relay's), or any verb (the client's).
//! It depends on `tether-proto` only, among tether's crates.

pub mod conn;
pub mod endpoint;
pub mod files;
#[doc(hidden)]
pub mod fuzz;
pub mod gossip;
pub mod limits;
pub mod metrics;
pub mod runtime;
pub mod tasks;
pub mod time;
pub mod tls;
