//! Failover drills for tether (issue #11): real `tether node` and `tether
//! relay` processes on 127.0.0.x, a userspace UDP fault proxy in front of
//! their QUIC and gossip endpoints, and invariants checked on every byte a
//! client receives; and a fleet of up to a thousand members in simulated
//! time, on the product's own gossip and resolution code ([`sim`]).
//!
//! The rooms:
//! - [`proxy`]: the fault proxy (loss, delay, jitter, reordering,
//!   duplication, a rate cap, one-way blackholes; per source address).
//! - [`switch`]: the gossip switch (faults per pair of members, each seen
//!   at its advertised address, as sealed gossip requires).
//! - [`fleet`]: a fleet whose every endpoint is behind a proxy, its
//!   processes killed, paused and restarted at will.
//! - [`stream`]: the known stream sessions write, and the verifier of
//!   what clients receive (offsets and blake3).
//! - [`watch`]: a client following a session, checked byte by byte.
//! - [`drill`]: a scenario as a list of operations, and the invariants
//!   every drill checks at its end.
//! - [`probe`]: what a drill asks as a client would (one attach,
//!   keystrokes, a session's end offset), and waits with deadlines.
//! - [`report`]: the summary table.
//! - [`bins`]: finding (and building) the binaries a drill runs.
//! - [`abuse`]: bad input for scenario 8 (junk datagrams, forged gossip,
//!   malformed and never-finishing streams).
//! - [`rng`]: the seeded generator the proxy, the switch and the abuse
//!   share.
//! - [`sim`]: the fleet in simulated time.

pub mod abuse;
pub mod bins;
pub mod drill;
pub mod fleet;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod rng;
pub mod sim;
pub mod stream;
pub mod switch;
pub mod watch;

pub use drill::{Drill, Op, Via};
pub use fleet::{ChaosFleet, Endpoint};
pub use proxy::{Counts, FaultProxy, Faults, Link};
