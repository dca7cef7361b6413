//! Failover drills for tether (issue #11): real `tether node` and `tether
//! relay` processes on 127.0.0.x, a userspace UDP fault proxy in front of
//! their QUIC and gossip endpoints ([`proxy`]), and invariants checked on
//! every byte a client receives.
//!
//! This crate is being built in steps; what exists so far is the fault
//! proxy, tested on real UDP sockets.

pub mod proxy;

pub use proxy::{Counts, FaultProxy, Faults, Link};
