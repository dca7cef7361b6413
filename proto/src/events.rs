//! Lifecycle events of sessions and nodes, for `tether events`: what
//! dashboards and agents subscribe to instead of polling.
//!
//! A node sends its sessions' events on a stream opened with
//! [`crate::Request::Events`], as [`crate::Reply::Event`] frames; a client
//! of a fleet merges the streams of every node it reaches and adds the
//! nodes' own comings and goings as gossip shows them.

use crate::ids::{Offset, SessionId};
use crate::msg::{ExitStatus, WinSize};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A session was created.
    Created,
    /// A client attached (`clients` is the count now).
    Attached,
    /// A client left (`clients` is the count now).
    Detached,
    /// The session's window size changed (`size`).
    Resized,
    /// The session's foreground process started waiting for input.
    AwaitingInput,
    /// The session's process ended (`exit`).
    Exited,
    /// The session's keeper vanished.
    Lost,
    /// An ended session was removed.
    Removed,
    /// A node became reachable (a fleet client sees it through gossip).
    NodeUp,
    /// A node became unreachable.
    NodeDown,
    /// This subscriber fell behind and `missed` events were dropped: what
    /// it knows may be stale; `ls` tells the present.
    Lagged,
    /// A kind this build does not know (a newer peer's).
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The wire word, as `tether events` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Attached => "attached",
            EventKind::Detached => "detached",
            EventKind::Resized => "resized",
            EventKind::AwaitingInput => "awaiting_input",
            EventKind::Exited => "exited",
            EventKind::Lost => "lost",
            EventKind::Removed => "removed",
            EventKind::NodeUp => "node_up",
            EventKind::NodeDown => "node_down",
            EventKind::Lagged => "lagged",
            EventKind::Unknown => "unknown",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When, in milliseconds since the Unix epoch (the sender's clock).
    pub time_ms: u64,
    /// The node it happened on (its name).
    pub node: String,
    /// The session, for session events.
    #[serde(default)]
    pub session: Option<SessionId>,
    /// The session's name, if it has one.
    #[serde(default)]
    pub name: Option<String>,
    /// The session's output offset when it happened (its end).
    #[serde(default)]
    pub offset: Option<Offset>,
    /// Clients attached now (`attached`, `detached`).
    #[serde(default)]
    pub clients: Option<u32>,
    /// The new window size (`resized`).
    #[serde(default)]
    pub size: Option<WinSize>,
    /// How the process ended (`exited`).
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    /// Events dropped (`lagged`).
    #[serde(default)]
    pub missed: Option<u64>,
}

impl Event {
    /// An event of `kind` at `time_ms` on `node`, every other field empty.
    pub fn new(kind: EventKind, time_ms: u64, node: impl Into<String>) -> Event {
        Event {
            kind,
            time_ms,
            node: node.into(),
            session: None,
            name: None,
            offset: None,
            clients: None,
            size: None,
            exit: None,
            missed: None,
        }
    }
}
