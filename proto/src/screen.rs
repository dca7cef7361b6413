//! What a session's screen looks like, as the node's terminal emulator
//! sees it, and who is in the foreground of its terminal.
//!
//! The emulator itself lives with the session's keeper (it needs the
//! session's output and nothing else); these are the shapes its answers
//! take on the wire: [`ScreenState`] for `tether screen`, a snapshot of
//! escape codes for an attach ([`crate::Reply::Snapshot`]), and
//! [`Foreground`] for `info` and `wait --input`.

use crate::ids::Offset;
use serde::{Deserialize, Serialize};

/// Lines of history an interactive attach asks for when it knows neither
/// what the user wants nor its terminal's height: a screenful.
pub const DEFAULT_SNAPSHOT_HISTORY: u32 = 24;

/// What an attach asks for instead of the raw replay: the screen as it is
/// now, redrawn, then the live output from the offset it reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    /// Lines of the primary screen's history to send ahead of the screen,
    /// into the client terminal's own scrollback (at most what the node
    /// keeps).
    #[serde(default)]
    pub history: u32,
}

/// The visible screen of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenState {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Text of each visible row, trailing blanks trimmed (one string per
    /// row, `rows` of them).
    pub lines: Vec<String>,
    /// Cursor column and row (0-based), when it is visible.
    #[serde(default)]
    pub cursor: Option<(u16, u16)>,
    /// Window title the program set (OSC 0 or 2), if any.
    #[serde(default)]
    pub title: Option<String>,
    /// The program switched to the alternate screen (a full-screen program:
    /// an editor, a pager).
    #[serde(default)]
    pub alternate: bool,
    /// The output offset this screen reflects: every byte before it and
    /// none after.
    pub offset: Offset,
    /// Bytes of output the emulator skipped because it fell more than a
    /// ring behind (bulk output faster than it parses): when not zero, the
    /// screen was rebuilt from later output and may differ in what those
    /// bytes would have changed.
    #[serde(default)]
    pub skipped: u64,
}

impl ScreenState {
    /// The visible rows as one text, a newline after each row.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// The foreground process group of a session's terminal, and whether it
/// waits for input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foreground {
    /// The process group's leader.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    /// Every process of the group is asleep, and one is blocked reading
    /// the terminal (or, the terminal in raw mode, polling while holding
    /// it): it waits for input. From the kernel's view of the processes,
    /// not from the text on screen.
    pub awaiting_input: bool,
    /// The terminal is in canonical (line) mode, as a shell prompt or a
    /// `read` leaves it; raw mode is a full-screen program's.
    #[serde(default)]
    pub canonical: bool,
    /// The terminal echoes input; a password prompt turns this off.
    #[serde(default)]
    pub echo: bool,
    /// The output offset when the keeper looked.
    pub offset: Offset,
}
