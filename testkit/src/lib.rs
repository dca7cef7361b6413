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
//! - [`TestNode`]: a `tether node` daemon on a temporary state dir, the
//!   `tether` CLI pointed at it, and a library client.
//! - [`PtyProc`]: a program in a real PTY, its output collected.
//! - [`screen`]: what a terminal shows, cell by cell ([`screen::Vt`],
//!   [`screen::Grid`]), and a [`screen::Witness`] that sees a session's
//!   whole output, to check what a client draws.
//! - [`fleet`]: a fleet CA, certificates, a cluster secret, relays and
//!   nodes as real processes on 127.0.0.x; [`fleet::FleetFiles`] is the
//!   part without processes, for harnesses that start members their own
//!   way (the bench).
//! - [`probe`]: a process's memory and liveness, panics in a log;
//! - [`records`]: gossip records shaped like a real fleet's (real IDs,
//!   sessions), for harnesses that gossip without daemons;
//! - [`wait_until`] and [`poll_until`]: every wait has a deadline;
//! - [`runtime`]: the tokio runtime of a test that drives library clients.
//!
//! What it does not do: build binaries. The caller passes the path of the
//! `tether` binary (an integration test of the cli crate has it as
//! `env!("CARGO_BIN_EXE_tether")`); `tether-keeper` is found beside it by
//! the daemon itself. It does not simulate anything either: no fake time,
//! no fake network (that belongs to `chaos-tests/` and the sans-IO cores).
//!
//! Everything a type here starts is killed when the value drops, also when
//! the test panics.

pub mod cleanup;
pub mod config;
pub mod fleet;
pub mod node;
pub mod ports;
pub mod probe;
pub mod proc;
pub mod pty;
pub mod records;
pub mod screen;
pub mod wait;

pub use fleet::{Fleet, FleetSpec};
pub use node::TestNode;
pub use proc::{output, tether_ok, KillOnDrop, OutputWithin, CLI_TIMEOUT};
pub use pty::PtyProc;
pub use wait::{poll_until, wait_until};

/// A tokio runtime for a test that drives library clients and raw QUIC
/// next to the processes: two workers, IO and time enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}
