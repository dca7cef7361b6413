//! Control messages, carried in `Frame::Control` as msgpack maps.
//!
//! Structs are encoded as maps (field names on the wire), so a reader skips
//! fields it does not know, and new fields get `#[serde(default)]` so an
//! older writer is still understood.

use crate::ids::{Offset, SessionId};
use crate::screen::{Foreground, ScreenState, SnapshotSpec};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// First control message on every stream, in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// Free-form name and version of the sending program, for logs.
    #[serde(default)]
    pub agent: String,
}

/// Who acts on a stream, as the certificate that authenticated it says
/// (never as a peer claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Name from the client's certificate.
    pub name: String,
    /// The certificate only allows watching.
    #[serde(default)]
    pub read_only: bool,
    /// The certificate grants every session of the fleet.
    #[serde(default)]
    pub admin: bool,
}

/// A session's owner lets another identity in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The client's name (its certificate's).
    pub with: String,
    /// It may watch, not type, resize, kill or remove.
    #[serde(default)]
    pub read_only: bool,
}

impl Hello {
    /// The hello this build sends.
    pub fn current(agent: &str) -> Self {
        Hello {
            version: crate::PROTOCOL_VERSION,
            agent: agent.to_string(),
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

/// How an attached client's window size sets the session's, when several
/// clients attach from windows of different sizes. A read-only client
/// never resizes the session, whatever it asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizing {
    /// The session takes the size of the client that last attached,
    /// resized its window or typed: the one in front of it now.
    #[default]
    Latest,
    /// The session is no larger than the smallest window of the clients
    /// attached with this choice, so that it fits all of them.
    Smallest,
    /// This client never resizes the session; it sees it at whatever size
    /// the others (or the creator) set.
    Fixed,
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
    /// Keep a terminal emulator of its screen (for `screen`, and the exact
    /// redraw on attach); `None` means the node's default (on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<bool>,
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
    /// Start with a snapshot of the screen ([`Reply::Snapshot`]) and the
    /// output after it, instead of replaying from `start`. A session
    /// without an emulator (or an older keeper) replays from `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSpec>,
    /// How this client's window size sets the session's.
    #[serde(default, skip_serializing_if = "is_latest")]
    pub sizing: Sizing,
}

fn is_latest(s: &Sizing) -> bool {
    *s == Sizing::Latest
}

impl AttachSpec {
    /// Following `target` from `start`, read-write, with no size and no
    /// snapshot: the fields every attach has, for struct update syntax.
    pub fn new(target: impl Into<String>, start: StartAt) -> AttachSpec {
        AttachSpec {
            target: target.into(),
            start,
            read_only: false,
            follow: true,
            size: None,
            snapshot: None,
            sizing: Sizing::Latest,
        }
    }
}

fn yes() -> bool {
    true
}

/// A client's request, the first control message after the hello. Nodes
/// and relays answer all of them; what a client sends later on an attach
/// is a [`StreamControl`], what a daemon asks its keepers a
/// [`KeeperRequest`].
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
    /// The visible screen, as the session's terminal emulator has it.
    Screen {
        /// ID, unique ID prefix or name.
        target: String,
    },
    /// Follow lifecycle events: the node answers `Ok`, then sends `Event`
    /// replies until the client closes the stream.
    Events {
        /// Only this session's (ID, unique ID prefix or name); all the
        /// sessions the caller sees when `None`.
        #[serde(default)]
        target: Option<String>,
    },
    /// The members of the fleet (a relay) or the node itself.
    Nodes,
    /// Let another client in to a session (only its owner, or an admin,
    /// may).
    Share {
        /// ID, unique ID prefix or name.
        target: String,
        /// Who, and how far.
        share: Share,
    },
    /// Take a client's share of a session away.
    Unshare {
        /// ID, unique ID prefix or name.
        target: String,
        /// The client's name.
        with: String,
    },
    /// Carry this stream to a node: the answer is [`Reply::Routed`], after
    /// which the stream holds a TLS 1.3 session between the client and
    /// that node, with the rest of the protocol inside. Relays answer it
    /// by forwarding; a node by accepting the TLS session itself.
    Route(Route),
    /// Which of the node's sessions `target` names, for a relay that
    /// routes by a name gossip does not know yet. Only relays ask it; it
    /// reveals the ID, never the session.
    Locate {
        /// ID, unique ID prefix or name.
        target: String,
    },
}

/// Where a [`Request::Route`] goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// To the node that owns the session `target` names.
    Session {
        /// ID, unique ID prefix or name (`name@node` too).
        target: String,
    },
    /// To a node by name; with no name, to a node the relay picks (for a
    /// create).
    Node {
        /// The node's name.
        name: Option<String>,
    },
}

/// What a client sends on an attach after its [`Request::Attach`], as
/// control frames between its `Input` frames.
///
/// Encoded exactly as the `Request` variants of the same names were, so
/// nodes and keepers of the previous layout understand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamControl {
    /// The client's window changed.
    Resize(WinSize),
    /// The client leaves; the session goes on.
    Detach,
}

/// What a daemon asks the keeper of a session, on the keeper's unix
/// socket.
///
/// Field names and serde attributes are those of the `Request` variants of
/// the same names: a keeper started by an older daemon outlives the
/// daemon's upgrade and still decodes these as its `Request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeeperRequest {
    /// Live figures of the session; the keeper answers `Session`, keeps
    /// the stream open and sends `Exited` when the process ends.
    Status,
    /// Stream output (replay then live) and send input.
    Attach(AttachSpec),
    /// Type bytes into the session.
    Send {
        /// The session's ID (a keeper holds one session).
        target: String,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Send a signal to the session's process group.
    Kill {
        /// The session's ID.
        target: String,
        /// Signal number.
        signal: i32,
    },
    /// Answer once the session has exited.
    Wait {
        /// The session's ID.
        target: String,
    },
    /// The visible screen; answered with `Screen`.
    Screen {
        /// The session's ID.
        target: String,
    },
    /// The foreground process of the terminal; answered with `Probe`.
    Probe,
    /// `Status`, and then a `Session` again whenever the clients attached,
    /// the window size or the waiting for input change (a keeper of an
    /// older build refuses it: ask `Status` then).
    Watch,
}

/// State of a session. On the wire (msgpack and JSON) a lowercase string:
/// `running`, `exited`, `lost`, `damaged`.
///
/// A state this build does not know (sent by a newer peer) decodes as
/// [`SessionState::Unknown`] instead of failing: one unknown word must not
/// make a whole gossip record, or a whole session list, unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Its process runs.
    Running,
    /// Its process ended; see `exit_code` / `exit_signal`.
    Exited,
    /// Its keeper vanished; the last output is still readable.
    Lost,
    /// Its files in the node's state dir are damaged (metadata unreadable,
    /// or an impossible ring header): listed with what is still known so
    /// that it can be removed; its process may still run. Older peers read
    /// it as `Unknown`.
    Damaged,
    /// A state this build does not know (a newer peer's). Encodes as
    /// `unknown`; never produced by this build for its own sessions.
    #[serde(other)]
    Unknown,
}

impl SessionState {
    /// The wire word, as shown to users.
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Exited => "exited",
            SessionState::Lost => "lost",
            SessionState::Damaged => "damaged",
            SessionState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a fleet member is. On the wire a lowercase string: `node`,
/// `relay`. Ordered `Node` before `Relay`, as the words sort.
///
/// A role this build does not know decodes as [`Role::Unknown`], so a
/// newer kind of member does not make a member list unreadable; code that
/// routes only ever picks `Node` or `Relay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns sessions.
    Node,
    /// Routes clients to nodes; owns nothing.
    Relay,
    /// A role this build does not know (a newer peer's). Encodes as
    /// `unknown`.
    #[serde(other)]
    Unknown,
}

impl Role {
    /// The wire word, as shown to users.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Relay => "relay",
            Role::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

pub use crate::info::SessionInfo;

/// A fleet member, as a relay sees it through gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Name.
    pub name: String,
    /// Node ID, or the relay's name.
    pub id: String,
    /// What it is (`node` or `relay` on the wire).
    pub role: Role,
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
    /// The session's owner cannot be reached now (a relay says so): dead,
    /// partitioned, or not answering in time. Older peers read it as
    /// `Other`.
    Unavailable,
    /// The caller's identity may not do this: the session is not its own
    /// nor shared with it, or a relay tried to act instead of forwarding.
    Forbidden,
    /// A limit of the node's config refuses the request (sessions per node,
    /// ring size); the message names the config key that raises it. Older
    /// peers read it as `Other`.
    Limit,
    /// The session's files are damaged (an impossible ring header): its
    /// output cannot be read; the message names the file. Older peers read
    /// it as `Other`.
    Damaged,
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
    /// Answer to `Route`: the stream now reaches `node`, which must
    /// prove in the TLS handshake that follows that it holds the fleet
    /// certificate of that name (and, when gossip announced one, of that
    /// fingerprint).
    Routed {
        /// The node's name.
        node: String,
        /// Fingerprint of its certificate as gossip announced it (hex).
        fp: String,
    },
    /// Answer to `Screen`.
    Screen {
        /// The screen.
        screen: ScreenState,
    },
    /// On an attach that asked for a snapshot, right after `Attached`:
    /// escape codes that redraw the screen as it was at `offset` (modes,
    /// alternate screen, title and some history included) on a terminal of
    /// the session's size. Output frames follow from `offset`.
    Snapshot {
        /// The output offset the snapshot reflects.
        offset: Offset,
        /// The escape codes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Bytes the emulator skipped (see [`ScreenState::skipped`]).
        #[serde(default)]
        skipped: u64,
    },
    /// On an `Events` stream: one event.
    Event {
        /// The event.
        event: crate::events::Event,
    },
    /// Answer to a keeper's `Probe`.
    Probe {
        /// The foreground process group, if the terminal has one.
        foreground: Option<Foreground>,
    },
    /// Answer to `Locate`.
    Located {
        /// The session's full ID.
        id: SessionId,
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
#[path = "tests/msg.rs"]
mod tests;
