//! What nodes and relays announce through gossip (chitchat keys and
//! values are strings; the values here are compact JSON).
//!
//! - key [`NODE_KEY`]: one [`NodeRecord`] per member;
//! - key `s:<session id>`: one [`SessionRecord`] per session of a node.
//!
//! Fast-changing figures (offsets, attached clients) are not gossiped;
//! they are fetched from the owner on demand.

use crate::ids::SessionId;
use serde::{Deserialize, Serialize};

/// Key of a member's own record.
pub const NODE_KEY: &str = "node";
/// Prefix of session keys.
pub const SESSION_PREFIX: &str = "s:";

/// The gossip key of a session.
pub fn session_key(id: &SessionId) -> String {
    format!("{SESSION_PREFIX}{id}")
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns sessions.
    Node,
    /// Routes clients to nodes; owns nothing.
    Relay,
}

/// A member's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node ID (base32), or the relay's name for a relay.
    pub id: String,
    /// Human name from the config.
    pub name: String,
    /// What the member is.
    pub role: Role,
    /// QUIC address to dial, if the member accepts connections.
    #[serde(default)]
    pub quic: Option<String>,
    /// blake3 fingerprint (hex) of the member's certificate.
    pub fp: String,
    /// Version of the binary.
    pub ver: String,
    /// Relays this node keeps tunnels to (names).
    #[serde(default)]
    pub relays: Vec<String>,
}

/// A session's record, as gossiped by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// State: `running`, `exited`, `lost`.
    pub st: String,
    /// Command, shortened to [`SHORT_COMMAND`] characters.
    pub c: String,
    /// Creation time, seconds since the Unix epoch.
    pub t: u64,
}

/// Longest command text put in a session record.
pub const SHORT_COMMAND: usize = 40;

/// Shortens a command line for a session record.
pub fn short_command(argv: &[String]) -> String {
    let full = argv.join(" ");
    if full.chars().count() <= SHORT_COMMAND {
        full
    } else {
        let mut s: String = full.chars().take(SHORT_COMMAND - 1).collect();
        s.push('…');
        s
    }
}
