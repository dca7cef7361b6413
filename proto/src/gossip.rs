//! What nodes and relays announce through gossip (chitchat keys and
//! values are strings; the values here are compact JSON).
//!
//! - key [`NODE_KEY`]: one [`NodeRecord`] per member;
//! - key `s:<session id>`: one [`SessionRecord`] per session of a node.
//!
//! Fast-changing figures (offsets, attached clients) are not gossiped;
//! they are fetched from the owner on demand.

use crate::ids::SessionId;
use crate::msg::SessionState;
use serde::{Deserialize, Serialize};

/// Key of a member's own record.
pub const NODE_KEY: &str = "node";
/// Prefix of session keys.
pub const SESSION_PREFIX: &str = "s:";

/// The gossip key of a session.
pub fn session_key(id: &SessionId) -> String {
    format!("{SESSION_PREFIX}{id}")
}

/// What a member is; defined with the other messages, kept here too for
/// the callers that know it from gossip.
pub use crate::msg::Role;

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
    /// State (`running`, `exited`, `lost` on the wire). A word this build
    /// does not know decodes as [`SessionState::Unknown`], so the rest of
    /// the record (name, command) is still usable.
    pub st: SessionState,
    /// Command, shortened to [`SHORT_COMMAND`] characters.
    pub c: String,
    /// Creation time, seconds since the Unix epoch.
    pub t: u64,
    /// Owner: a fleet client's name; absent for the node's local owner.
    /// A relay lists a session of an unreachable node only to its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as it was when its state was a free string.
    #[derive(Serialize, Deserialize)]
    struct OldRecord {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        n: Option<String>,
        st: String,
        c: String,
        t: u64,
    }

    #[test]
    fn state_is_the_same_word_on_the_wire() {
        for (state, word) in [
            (SessionState::Running, "running"),
            (SessionState::Exited, "exited"),
            (SessionState::Lost, "lost"),
        ] {
            let new = SessionRecord {
                n: Some("web".into()),
                st: state,
                c: "sh".into(),
                t: 7,
                o: None,
            };
            let old = OldRecord {
                n: Some("web".into()),
                st: word.into(),
                c: "sh".into(),
                t: 7,
            };
            let (nj, oj) = (
                serde_json::to_string(&new).unwrap(),
                serde_json::to_string(&old).unwrap(),
            );
            assert_eq!(nj, oj);
            assert_eq!(crate::msg::encode(&new), crate::msg::encode(&old));
            assert_eq!(serde_json::from_str::<SessionRecord>(&oj).unwrap(), new);
            assert_eq!(
                crate::msg::decode::<SessionRecord>(&crate::msg::encode(&old)).unwrap(),
                new
            );
        }
    }

    #[test]
    fn unknown_state_keeps_the_record() {
        let j = r#"{"n":"job","st":"paused","c":"make","t":1}"#;
        let r: SessionRecord = serde_json::from_str(j).unwrap();
        assert_eq!(r.st, SessionState::Unknown);
        assert_eq!((r.n.as_deref(), r.c.as_str()), (Some("job"), "make"));
    }

    #[test]
    fn roles_are_the_same_words_as_before() {
        assert_eq!(serde_json::to_string(&Role::Node).unwrap(), "\"node\"");
        assert_eq!(serde_json::to_string(&Role::Relay).unwrap(), "\"relay\"");
        assert_eq!(
            serde_json::from_str::<Role>("\"bridge\"").unwrap(),
            Role::Unknown
        );
        assert!(Role::Node < Role::Relay, "sorted as the words were");
    }
}
