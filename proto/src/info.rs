//! A session's metadata and figures, as every endpoint reports them.

use crate::ids::{NodeId, Offset, SessionId};
use crate::msg::{ExitStatus, SessionState, Share, WinSize};
use crate::screen::Foreground;
use serde::{Deserialize, Serialize};

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
    /// Who created it: a fleet client's name, or none for the node's
    /// local owner (the state dir's user).
    #[serde(default)]
    pub owner: Option<String>,
    /// Who else it is shared with (shown to its owner and admins).
    #[serde(default)]
    pub shared: Vec<Share>,
    /// The foreground process of its terminal, while it runs (from `info`).
    #[serde(default)]
    pub foreground: Option<Foreground>,
    /// The foreground process waits for input (the same as
    /// `foreground.awaiting_input`, at the top for scripts).
    #[serde(default)]
    pub awaiting_input: bool,
}

impl SessionInfo {
    /// A session's info with only its identity and state: every other
    /// field at its empty default (no name, no command, offsets 0, default
    /// window size). The one constructor every endpoint builds on:
    ///
    /// ```
    /// # use tether_proto::{NodeId, SessionId, SessionInfo, SessionState};
    /// # let (id, node) = (SessionId([1; 16]), NodeId([2; 8]));
    /// let info = SessionInfo {
    ///     name: Some("build".into()),
    ///     command: vec!["make".into()],
    ///     ..SessionInfo::new(id, node, SessionState::Running)
    /// };
    /// assert_eq!(info.label(), format!("build ({})", id.short()));
    /// ```
    pub fn new(id: SessionId, node: NodeId, state: SessionState) -> SessionInfo {
        SessionInfo {
            id,
            name: None,
            node,
            command: Vec::new(),
            cwd: String::new(),
            created_at_ms: 0,
            state,
            exit: None,
            exited_at_ms: None,
            size: WinSize::default(),
            start_offset: Offset(0),
            end_offset: Offset(0),
            ring_size: 0,
            clients: 0,
            pid: None,
            node_name: None,
            unreachable: None,
            owner: None,
            shared: Vec::new(),
            foreground: None,
            awaiting_input: false,
        }
    }

    /// `name (shortid)` or just the short ID.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.id.short()),
            None => self.id.short(),
        }
    }
}
