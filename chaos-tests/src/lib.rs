//! Failover drills for tether (issue #11): real `tether node` and `tether
//! relay` processes on 127.0.0.x, a userspace UDP fault proxy in front of
//! their QUIC and gossip endpoints ([`proxy`]), and invariants checked on
//! every byte a client receives; and a fleet of up to a thousand members in
//! simulated time, on the product's own gossip and resolution code
//! ([`sim`]).
//!
//! This crate is being built in steps; what exists so far is the fault
//! proxy, tested on real UDP sockets, and the simulated fleet.

pub mod proxy;
pub mod rng;
pub mod sim;

pub use proxy::{Counts, FaultProxy, Faults, Link};
