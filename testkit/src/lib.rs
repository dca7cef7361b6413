//! The shared test harness of tether: real processes on a real machine.
//!
//! What it does:
//! - [`ports`]: free UDP and TCP ports on a given 127.0.0.x, held until the
//!   process that binds them starts.
//! - [`cleanup`]: undoes a tether state dir (its daemon, keepers and
//!   session processes) without ever signalling a process that is not
//!   provably one of them; the PID-safety rule is documented there.
//! - [`config`]: node and relay TOML written by serializing the real config
//!   types, so a harness cannot write a key the programs do not know.
//! - [`proc`]: commands run to their end with a deadline, daemons started
//!   until their ready line.
//! - [`wait_until`] and [`poll_until`]: every wait has a deadline.
//!
//! What it does not do: build binaries (the caller passes the path of the
//! `tether` binary) or simulate anything: no fake time, no fake network
//! (that belongs to `chaos-tests/` and the sans-IO cores).

pub mod cleanup;
pub mod config;
pub mod ports;
pub mod proc;
pub mod wait;

pub use proc::{output, tether_ok, KillOnDrop, OutputWithin, CLI_TIMEOUT};
pub use wait::{poll_until, wait_until};
