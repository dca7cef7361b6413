//! The client library every kind of tether client uses: the CLI today, an
//! agent API, an MCP server or a browser bridge next.
//!
//! - [`Dial`]: where to connect — the local node of a state dir (started
//!   when none runs, with [`Autostart`]) or a fleet through relays — and
//!   how to connect there again;
//! - [`Client`]: one connection, with typed requests ([`Client::list`],
//!   [`Client::info`], [`Client::create`], [`Client::send`],
//!   [`Client::kill`], [`Client::remove`], [`Client::wait`],
//!   [`Client::nodes`]);
//! - [`OutputStream`]: a session's output from an offset as events, with
//!   input, resize and detach, resumed by itself when the connection
//!   breaks, each byte once ([`tether_proto::cursor`] decides which);
//! - [`ClientError`]: what went wrong, the node's error kind kept, and
//!   whether trying again may help;
//! - [`Backoff`]: how patiently a broken stream is resumed.
//!
//! What it does not do: run sessions or serve anyone, print anything, or
//! parse command lines. It links neither the daemon nor PTY code, only
//! `tether-proto` and `tether-net`.

pub mod agent;
pub mod backoff;
mod client;
pub mod dial;
pub mod error;
pub mod events;
pub mod list;
mod local;
pub mod stream;

pub use backoff::{Backoff, MAX_RECONNECTS};
pub use client::{Client, Stream};
pub use dial::{Autostart, Dial};
pub use error::ClientError;
pub use stream::{OutputStream, StreamEvent};
pub use tether_proto::cursor::EndKind;
