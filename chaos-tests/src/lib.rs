//! Failover drills for tether (issue #11): real `tether node` and `tether
//! relay` processes on 127.0.0.x, a userspace UDP fault proxy in front of
//! their QUIC and gossip endpoints ([`proxy`]), and invariants checked on
//! every byte a client receives.
//!
//! This crate is being built in steps; what exists so far:
//! - [`proxy`]: the fault proxy, tested on real UDP sockets;
//! - [`abuse`]: bad input for scenario 8 (junk datagrams, forged gossip,
//!   malformed and never-finishing streams);
//! - [`tether_bin`]: where the `tether` binary under test is;
//! - [`rng`]: the seeded generator both use.

pub mod abuse;
pub mod proxy;
pub mod rng;

pub use proxy::{Counts, FaultProxy, Faults, Link};

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The `tether` binary a drill starts: `$TETHER_BIN`, else `tether` in
/// the cargo target dir the test runs from (`cargo test --workspace`
/// builds it; `cargo test -p chaos-tests` alone does not).
pub fn tether_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TETHER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/tether
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tether"))
        .context("the test executable has no parent dir")?;
    if !bin.is_file() || !bin.with_file_name("tether-keeper").is_file() {
        bail!(
            "the tether binaries are not at {}: build them first with \
             `cargo build -p tether-cli` (same profile and target dir), \
             or set TETHER_BIN",
            bin.display()
        );
    }
    Ok(bin)
}
