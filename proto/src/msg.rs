//! Control messages, carried in `Frame::Control` as msgpack maps.
//!
//! Structs are encoded as maps (field names on the wire), so a reader skips
//! fields it does not know, and new fields get `#[serde(default)]` so an
//! older writer is still understood.

use crate::ids::{NodeId, Offset, SessionId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// First control message on every stream, in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// Free-form name and version of the sending program, for logs.
    #[serde(default)]
    pub agent: String,
    /// Set by a relay: the client it forwards this stream for, as its
    /// certificate says. A node honours it only on a relay's connection.
    #[serde(default)]
    pub on_behalf_of: Option<Principal>,
}

/// A client identity a relay vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Name from the client's certificate.
    pub name: String,
    /// The certificate only allows watching.
    #[serde(default)]
    pub read_only: bool,
}

impl Hello {
    /// The hello this build sends.
    pub fn current(agent: &str) -> Self {
        Hello {
            version: crate::PROTOCOL_VERSION,
            agent: agent.to_string(),
            on_behalf_of: None,
        }
    }
}

/// Terminal window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Default for WinSize {
    fn default() -> Self {
        WinSize { cols: 80, rows: 24 }
    }
}

/// Where an attach or tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// The oldest byte still in the ring.
    Oldest,
    /// The current end: only output produced from now on.
    End,
    /// A given absolute offset, typically the end of what the client holds.
    Offset(Offset),
}

/// What a new session runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    /// Unique name on the node.
    #[serde(default)]
    pub name: Option<String>,
    /// Program and arguments; empty means the user's `$SHELL`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Working directory; `None` means the client's, else the home dir.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Ring buffer size in bytes; `None` means the node's default.
    #[serde(default)]
    pub ring_size: Option<u64>,
    /// Initial window size.
    #[serde(default)]
    pub size: Option<WinSize>,
    /// Node to create it on (by name or ID), when asking a relay.
    #[serde(default)]
    pub node: Option<String>,
}

/// An attach (interactive) or a tail (read only, maybe not following).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachSpec {
    /// ID, unique ID prefix or name.
    pub target: String,
    /// Where the replay starts.
    pub start: StartAt,
    /// A read-only client cannot send input, resize or kill.
    #[serde(default)]
    pub read_only: bool,
    /// Keep streaming live output; `false` stops at the end offset seen
    /// when the request arrives and answers `End`.
    #[serde(default = "yes")]
    pub follow: bool,
    /// The client's window size; a read-write client resizes the session.
    #[serde(default)]
    pub size: Option<WinSize>,
}

fn yes() -> bool {
    true
}

/// A client's request, the first control message after the hello.
/// `Resize` and `Detach` are also sent mid-stream on an attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// All sessions of the node.
    List,
    /// One session's metadata.
    Info {
        /// ID, unique ID prefix or name.
        target: String,
    },
    /// Start a session.
    Create(CreateSpec),
    /// Stream output (replay then live) and send input.
    Attach(AttachSpec),
    /// Type bytes into a session.
    Send {
        /// ID, unique ID prefix or name.
        target: String,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Send a signal to the session's process group.
    Kill {
        /// ID, unique ID prefix or name.
        target: String,
        /// Signal number.
        signal: i32,
    },
    /// Forget an exited or lost session and delete its files.
    Remove {
        /// ID, unique ID prefix or name.
        target: String,
    },
    /// Answer once the session has exited.
    Wait {
        /// ID, unique ID prefix or name.
        target: String,
    },
    /// Keeper only: live figures of the session it holds.
    Status,
    /// The members of the fleet (a relay) or the node itself.
    Nodes,
    /// Mid-stream: the client's window changed.
    Resize(WinSize),
    /// Mid-stream: the client leaves; the session goes on.
    Detach,
}

/// State of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Its process runs.
    Running,
    /// Its process ended; see `exit_code` / `exit_signal`.
    Exited,
    /// Its keeper vanished; the last output is still readable.
    Lost,
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::Running => "running",
            SessionState::Exited => "exited",
            SessionState::Lost => "lost",
        })
    }
}

/// How a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitStatus {
    /// Exit code, when it exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    #[serde(default)]
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// A session's metadata and figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Identity.
    pub id: SessionId,
    /// Optional name, unique on its node.
    #[serde(default)]
    pub name: Option<String>,
    /// Owning node.
    pub node: NodeId,
    /// Program and arguments as run (without the launcher).
    pub command: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// State.
    pub state: SessionState,
    /// How it ended, once exited.
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    /// When it ended, milliseconds since the Unix epoch.
    #[serde(default)]
    pub exited_at_ms: Option<u64>,
    /// Current window size.
    #[serde(default)]
    pub size: WinSize,
    /// Oldest offset still in the ring.
    #[serde(default)]
    pub start_offset: Offset,
    /// Offset one past the last byte of output.
    #[serde(default)]
    pub end_offset: Offset,
    /// Ring capacity in bytes.
    #[serde(default)]
    pub ring_size: u64,
    /// Clients attached now.
    #[serde(default)]
    pub clients: u32,
    /// Process ID of the session's leader, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Name of the owning node, when known (set by relays).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Set by a relay when the owner cannot be reached: why.
    #[serde(default)]
    pub unreachable: Option<String>,
}

impl SessionInfo {
    /// `name (shortid)` or just the short ID.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.id.short()),
            None => self.id.short(),
        }
    }
}

/// A fleet member, as a relay sees it through gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Name.
    pub name: String,
    /// Node ID, or the relay's name.
    pub id: String,
    /// `node` or `relay`.
    pub role: String,
    /// Alive according to the failure detector.
    pub live: bool,
    /// QUIC address, if it accepts connections.
    #[serde(default)]
    pub quic: Option<String>,
    /// Sessions it announces.
    #[serde(default)]
    pub sessions: u32,
    /// When this relay first saw it dead (ms since the epoch).
    #[serde(default)]
    pub dead_since_ms: Option<u64>,
}

/// What kind of failure an [`Reply::Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No session matches the target.
    NotFound,
    /// Several sessions match a prefix.
    Ambiguous,
    /// The name is used by another session on this node.
    NameTaken,
    /// The request is malformed or not allowed in this state.
    BadRequest,
    /// A read-only client tried to write.
    ReadOnly,
    /// The protocol versions differ.
    Version,
    /// The node failed; see the message.
    Internal,
    /// A kind this build does not know.
    #[serde(other)]
    Other,
}

/// The node's answers and mid-stream notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `List`.
    Sessions {
        /// Every session of the node.
        sessions: Vec<SessionInfo>,
    },
    /// Answer to `Nodes`.
    Nodes {
        /// Every member known.
        nodes: Vec<MemberInfo>,
    },
    /// Answer to `Info`, `Create` and a keeper's `Status`.
    Session {
        /// The session.
        session: SessionInfo,
    },
    /// Answer to `Attach`: output frames follow, starting at `start`.
    Attached {
        /// The session.
        session: SessionInfo,
        /// Offset of the first byte that will be sent.
        start: Offset,
    },
    /// Bytes from `missed` to `resume` are no longer in the ring and will
    /// not be sent; output goes on at `resume`.
    Gap {
        /// First byte the client asked for or expected.
        missed: Offset,
        /// First byte that will be sent.
        resume: Offset,
    },
    /// The session ended; all its output up to `end` has been sent.
    Exited {
        /// End of output.
        end: Offset,
        /// How it ended.
        status: ExitStatus,
    },
    /// The session's keeper vanished; output up to `end` has been sent.
    Lost {
        /// End of the recorded output.
        end: Offset,
    },
    /// A non-following tail reached the end it started with.
    End {
        /// End of what was sent.
        offset: Offset,
    },
    /// The request succeeded.
    Ok,
    /// The request failed; the stream closes after this.
    Error {
        /// Kind of failure.
        kind: ErrorKind,
        /// What happened and what to do.
        message: String,
    },
}

impl Reply {
    /// An error reply.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Reply::Error {
            kind,
            message: message.into(),
        }
    }
}

/// Encodes a control message as a msgpack map.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    msg.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .expect("control messages always serialize");
    out
}

/// Decodes a control message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_roundtrip() {
        let reqs = vec![
            Request::List,
            Request::Attach(AttachSpec {
                target: "abc".into(),
                start: StartAt::Offset(Offset(42)),
                read_only: true,
                follow: false,
                size: Some(WinSize {
                    cols: 100,
                    rows: 30,
                }),
            }),
            Request::Send {
                target: "x".into(),
                data: vec![0, 1, 255],
            },
            Request::Resize(WinSize { cols: 1, rows: 2 }),
            Request::Detach,
        ];
        for r in reqs {
            assert_eq!(decode::<Request>(&encode(&r)).unwrap(), r);
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_missing_ones_defaulted() {
        #[derive(Serialize)]
        struct NewerHello {
            version: u32,
            agent: String,
            flavour: String,
        }
        let b = encode(&NewerHello {
            version: 7,
            agent: "x".into(),
            flavour: "y".into(),
        });
        assert_eq!(
            decode::<Hello>(&b).unwrap(),
            Hello {
                version: 7,
                agent: "x".into(),
                on_behalf_of: None
            }
        );

        #[derive(Serialize)]
        struct OlderHello {
            version: u32,
        }
        let b = encode(&OlderHello { version: 1 });
        assert_eq!(decode::<Hello>(&b).unwrap().agent, "");
    }

    #[test]
    fn unknown_error_kind_decodes_as_other() {
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Future {
            QuotaExceeded,
        }
        let b = encode(&Future::QuotaExceeded);
        assert_eq!(decode::<ErrorKind>(&b).unwrap(), ErrorKind::Other);
    }
}
