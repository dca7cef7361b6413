//! What an MCP client sees of the tools: the guide sent at `initialize`,
//! each tool's description, and its arguments (whose doc comments become
//! the input schema's descriptions). A model picks and calls the tools by
//! these words alone, so they say what each tool is for, how offsets work
//! and how to page.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) const INSTRUCTIONS: &str = "\
tether keeps terminal sessions running on a node (this machine, or a fleet through relays); \
these tools start them, type into them and read them. A session runs on between calls and \
is named by its ID, a unique prefix of it or its name.
Output is addressed by offsets: bytes written since the session started. Every answer that \
returns output gives the offset to go on from (`next`, `to`, `offset`), so nothing is lost \
or read twice between calls.
Shell commands: create with command [\"bash\"], wait input=true (the prompt), then run \
COMMAND (output and exit code). Interactive programs: send text and keys, wait (pattern, \
idle_ms or input) from the offset send returned, then read from that offset, or screen for \
what the terminal shows.
Answers are kept small: a cut answer says so (more, truncated) and where to go on.";

pub(super) const LIST: &str = "\
List the terminal sessions this client can see, oldest first: id, name, state (running, \
exited, lost), exit_code, command, cwd, start_offset (oldest output byte still kept), \
end_offset (bytes of output so far), awaiting_input (its foreground program waits for \
keyboard input) and foreground (that program's name). A long list is cut to fit: call \
again with start = next_start for the rest.";

pub(super) const CREATE: &str = "\
Start a new terminal session: a program in a pseudo-terminal that keeps running between \
calls until it exits or is killed. `command` is the program and its arguments as an array \
(default: the node's shell); to use `run`, start a shell such as [\"bash\"]. Returns its \
`id` and `offset`, the output offset to read or wait from. A shell prints its prompt a \
moment after it starts: call `wait` with input=true before the first `run`.";

pub(super) const SEND: &str = "\
Type into a session: `text` exactly as given (no newline added), then `keys` by name: \
Enter, Tab, Escape, Space, BSpace, Up, Down, Left, Right, Home, End, PageUp, PageDown, \
Insert, Delete, F1..F12, or one character, with modifiers C- (control), M- (alt), S- (shift). \
Examples: text \"ls -l\" with keys [\"Enter\"]; keys [\"C-c\"] to interrupt; keys [\"C-d\"] \
for end of input. Returns `offset`, the end of the output just before the input: pass it \
as `from` to `wait` or `read` to see the response. For a shell command with its output and \
exit code, `run` is simpler.";

pub(super) const READ: &str = "\
Read a session's output (what its programs wrote to the terminal) from offset `from`. \
Offsets count bytes of output since the session started. Returns `data`, `next` (the \
offset to read from next) and `more` (output after `next` is already waiting: call read \
again with from = next; stop when more is false). Without `from`, reading starts at the \
oldest byte kept; `gap` says when the bytes asked for have already left the session's \
buffer. `plain` (default true) strips colours and other escape sequences; offsets stay \
those of the raw output. At most `max_bytes` bytes of output per call, fewer when the \
answer would exceed the server's limit. `ended`: the session exited and everything was \
read. For what the terminal shows now (full-screen programs), use `screen`.";

pub(super) const WAIT: &str = "\
Wait until something happens in a session, for at most `timeout_secs` (default 30). Give \
one of: `pattern`, a regular expression matched against the plain text of the output after \
`from` (multi-line: ^ and $ match at line ends); `idle_ms`, no output for that long; \
`input` = true, the foreground program waits for keyboard input (a shell prompt, a \
question; seen from the processes, not the text); `exit` = true, the session ends (the \
default). `from` is an output offset (default: the end of the output when the wait starts): \
pass the `offset` that send returned, or the `next` of read, so that nothing written in \
between is missed. Returns `reason` (matched, idle, input, exited or timeout), `offset` \
(how far the output was looked at; read from your `from` to see it), `matched` (the text \
the pattern matched) and `exit_code` once the session exited.";

pub(super) const SCREEN: &str = "\
What a session's terminal shows now, from the node's terminal emulator: `lines` (the \
visible rows, top to bottom, as text), `cursor` {col, row} (0-based, null when hidden), \
`title`, `alternate` (true while a full-screen program such as an editor or a pager is \
up), `cols`, `rows`, and `offset` (the output offset the screen reflects). Best for \
full-screen and interactive programs; for a command's output use `run` or `read`. When the \
rows do not fit in `max_bytes` or the server's limit, the top rows are left out: \
`first_row` is the row `lines` starts at.";

pub(super) const RUN: &str = "\
Run a shell command line in a session whose shell waits at its prompt (bash, dash, zsh, \
ksh, busybox sh or fish), wait until it finishes, for at most `timeout_secs` (default 60), \
and return its `output` (plain text) and `exit_code`. `from` and `to` are the output \
offsets of the command's output. If the output does not fit in `max_bytes` or the server's \
limit, `truncated` is true and `next` is the offset to `read` the rest from (up to `to`). \
If the command stops to wait for input, `awaiting_input` names the program: answer with \
`send`, then `wait`. If `timed_out`, the command still runs: `wait` (input = true: the \
prompt is back) and `read` from `to`. Fails, saying why, when another program is in the \
foreground instead of the shell's prompt.";

pub(super) const KILL: &str = "\
Send a signal to a session's processes: `signal` is a name (HUP, TERM, INT, KILL) or a \
number; default HUP, as when a terminal closes. To interrupt only the command running in a \
shell, send keys [\"C-c\"] instead. `wait` with exit = true, or `list`, then tells how it \
ended.";

/// `list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListArgs {
    /// Index of the first session to return (default 0): the `next_start` of a cut answer.
    pub(super) start: Option<usize>,
}

/// `create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateArgs {
    /// Program and arguments, e.g. ["bash"] or ["python3", "-i"] (default: the node's shell).
    pub(super) command: Option<Vec<String>>,
    /// A name to address the session by, unique on its node.
    pub(super) name: Option<String>,
    /// Working directory (default: the server's current directory; through a fleet, the node's default).
    pub(super) cwd: Option<String>,
    /// Extra environment variables (TERM defaults to xterm-256color).
    pub(super) env: Option<BTreeMap<String, String>>,
    /// Terminal width in columns (default 120).
    pub(super) cols: Option<u16>,
    /// Terminal height in rows (default 40).
    pub(super) rows: Option<u16>,
    /// Node to start it on, by name or ID (through a fleet's relays).
    pub(super) node: Option<String>,
}

/// `send`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendArgs {
    /// Session ID, unique ID prefix, or name.
    pub(super) target: String,
    /// Text to type as is (no newline added).
    pub(super) text: Option<String>,
    /// Keys to press after the text, by name: Enter, Tab, C-c, Up, ...
    pub(super) keys: Option<Vec<String>>,
}

/// `read`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadArgs {
    /// Session ID, unique ID prefix, or name.
    pub(super) target: String,
    /// Offset to read from (default: the oldest byte kept); the `next` of the previous read.
    pub(super) from: Option<u64>,
    /// At most this many bytes of output (default and most: the server's limit).
    pub(super) max_bytes: Option<usize>,
    /// Strip escape sequences and control characters (default true).
    pub(super) plain: Option<bool>,
}

/// `wait`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitArgs {
    /// Session ID, unique ID prefix, or name.
    pub(super) target: String,
    /// Until the plain text of the output after `from` matches this regular expression.
    pub(super) pattern: Option<String>,
    /// Until no output came for this many milliseconds.
    pub(super) idle_ms: Option<u64>,
    /// Until the foreground program waits for keyboard input.
    pub(super) input: Option<bool>,
    /// Until the session exits (the default).
    pub(super) exit: Option<bool>,
    /// Look at the output from this offset (default: the end when the wait starts).
    pub(super) from: Option<u64>,
    /// Give up after this many seconds (default 30).
    pub(super) timeout_secs: Option<f64>,
}

/// `screen`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScreenArgs {
    /// Session ID, unique ID prefix, or name.
    pub(super) target: String,
    /// At most this many bytes of screen text (default and most: the server's limit).
    pub(super) max_bytes: Option<usize>,
}

/// `run`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunArgs {
    /// Session ID, unique ID prefix, or name, of a session whose shell waits at its prompt.
    pub(super) target: String,
    /// The command line, as typed at the shell's prompt.
    pub(super) command: String,
    /// Stop waiting after this many seconds (default 60); the command goes on.
    pub(super) timeout_secs: Option<f64>,
    /// At most this many bytes of output (default and most: the server's limit).
    pub(super) max_bytes: Option<usize>,
}

/// `kill`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KillArgs {
    /// Session ID, unique ID prefix, or name.
    pub(super) target: String,
    /// Signal name (HUP, TERM, INT, KILL, ...) or number; default HUP.
    pub(super) signal: Option<String>,
}
