//! Gossip records shaped like a real fleet's, for harnesses that gossip
//! without daemons (the bench's gossip scenario, chaos-tests' simulated
//! fleet): node records as the daemon builds them (a [`NodeId`] derived
//! from a public key, a 64-hex fingerprint, a QUIC address) and session
//! records with the names, commands and owners users give. Real IDs
//! compress far worse than short names like `m42`, so traffic measured
//! with these is the real one.
//!
//! Randomness comes from the caller (`draw`: 64 random bits per call), so
//! a seeded harness stays seeded.

use std::net::SocketAddr;
use tether_proto::gossip::{short_command, NodeRecord, Role, SessionRecord};
use tether_proto::{NodeId, SessionId, SessionState};

/// Names users give sessions, often the same on many nodes.
pub const NAMES: [&str; 8] = [
    "build", "web", "logs", "shell", "db", "test", "deploy", "repl",
];
/// Commands sessions run.
pub const COMMANDS: [&str; 6] = [
    "bash -l",
    "npm run dev",
    "cargo watch -x test",
    "tail -F /var/log/syslog",
    "python3 -m http.server 8000",
    "psql -h db.internal -U app",
];
/// Fleet clients that own sessions.
pub const OWNERS: [&str; 3] = ["alice", "bob", "ci-runner"];

/// A source of 64 random bits per call.
pub type Draw<'a> = &'a mut dyn FnMut() -> u64;

fn below(draw: Draw<'_>, n: usize) -> usize {
    (draw() % n as u64) as usize
}

fn fingerprint(draw: Draw<'_>) -> String {
    let key: Vec<u8> = (0..4).flat_map(|_| draw().to_le_bytes()).collect();
    blake3::hash(&key).to_hex().to_string()
}

/// Node number `index` (named `node-0042`), reached at `quic`: its ID
/// derived as the daemon derives it, from a drawn "public key", and its
/// record as the daemon announces it.
pub fn node(index: usize, quic: SocketAddr, draw: Draw<'_>) -> (NodeId, NodeRecord) {
    let key: Vec<u8> = (0..6).flat_map(|_| draw().to_le_bytes()).collect();
    let id = NodeId::from_public_key(&key);
    let rec = NodeRecord {
        id: id.to_string(),
        name: format!("node-{index:04}"),
        role: Role::Node,
        quic: Some(quic.to_string()),
        fp: fingerprint(draw),
        ver: env!("CARGO_PKG_VERSION").to_string(),
        relays: vec![],
    };
    (id, rec)
}

/// Relay `name`'s record, as the relay announces it.
pub fn relay(name: &str, quic: SocketAddr, draw: Draw<'_>) -> NodeRecord {
    NodeRecord {
        id: name.to_string(),
        name: name.to_string(),
        role: Role::Relay,
        quic: Some(quic.to_string()),
        fp: fingerprint(draw),
        ver: env!("CARGO_PKG_VERSION").to_string(),
        relays: vec![],
    }
}

/// A session of `owner` created at `created_s` (Unix seconds): a real ID
/// (96 drawn bits and the owner's tag) and its record as the node builds
/// it. `name`: its name, else one of [`NAMES`] or none (1 in 5).
pub fn session(
    owner: NodeId,
    name: Option<String>,
    created_s: u64,
    draw: Draw<'_>,
) -> (SessionId, SessionRecord) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&draw().to_le_bytes());
    b[8..12].copy_from_slice(&draw().to_le_bytes()[..4]);
    b[12..].copy_from_slice(&owner.tag());
    let name =
        name.or_else(|| (below(draw, 5) > 0).then(|| NAMES[below(draw, NAMES.len())].into()));
    let rec = SessionRecord {
        n: name,
        st: SessionState::Running,
        c: short_command(&[COMMANDS[below(draw, COMMANDS.len())].into()]),
        t: created_s,
        o: (below(draw, 2) == 0).then(|| OWNERS[below(draw, OWNERS.len())].into()),
    };
    (SessionId(b), rec)
}
