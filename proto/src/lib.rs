//! Wire types and codec of tether: identities, the hello, control messages
//! and terminal frames; and the protocol's behaviour, written once as
//! sans-IO code that every endpoint calls:
//! - [`output`]: how a session's ring becomes `Output` and `Gap` frames and
//!   which reply closes a stream (keeper, daemon);
//! - [`cursor`]: how a client takes those frames, each byte once, and
//!   where it resumes after a reconnect (CLI, client library, bridges);
//! - [`resolve`]: which session a target names (node, relay);
//! - [`SessionInfo::new`]: how a session's info is built.
//!
//! This crate does no IO. It knows how bytes on a stream are laid out and
//! nothing about sockets, QUIC or PTYs, so every kind of client (the CLI, a
//! relay, a browser bridge, an agent API) speaks exactly the same protocol.
//!
//! # Protocol flow
//! Every stream, in either direction, is a sequence of [`frame`]s:
//! 1. the opener sends a `Control(Hello)` frame, then a `Control(Request)`;
//! 2. the node answers with a `Control(Hello)` and a `Control(Reply)`;
//! 3. for an attach, the node then sends `Output` frames, each carrying the
//!    absolute [`Offset`] of its first byte, interleaved with control
//!    notices (`Gap`, `Exited`, `Lost`, `End`); the client may send
//!    `Input` frames and [`StreamControl`]s (`Resize`, `Detach`).
//!
//! A daemon talks to its keepers with the same frames, asking
//! [`KeeperRequest`]s.
//!
//! A malformed or oversized frame ends that stream with an `Error` reply;
//! nothing else is affected.
#![forbid(unsafe_code)]

pub mod cursor;
pub mod events;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod gossip;
pub mod ids;
pub mod info;
pub mod keys;
pub mod msg;
pub mod output;
pub mod plain;
pub mod resolve;
pub mod screen;

pub use cursor::{CursorError, OutputCursor};
pub use events::{Event, EventKind};
pub use frame::{DecodeError, Frame, MAX_FRAME_SIZE};
pub use ids::{NodeId, Offset, ParseIdError, SessionId};
pub use msg::*;
pub use output::{Ending, OutputEncoder, RingRead};
pub use resolve::{looks_like_id, resolve_target, Candidate, ResolveError, MIN_PREFIX_LEN};
pub use screen::{Foreground, ScreenState, SnapshotSpec};

/// Version of the protocol spoken by this build. A peer with another major
/// version is refused in the hello.
pub const PROTOCOL_VERSION: u32 = 1;

/// ALPN identifier for tether over QUIC.
pub const ALPN: &[u8] = b"tether/1";
