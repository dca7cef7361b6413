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
//! - [`ClientError`]: what went wrong, the node's error kind kept, and
//!   whether trying again may help.
//!
//! What it does not do: run sessions or serve anyone, print anything, or
//! parse command lines. It links neither the daemon nor PTY code, only
//! `tether-proto` and `tether-net`.

mod client;
pub mod dial;
pub mod error;
mod local;

pub use client::{Client, Stream};
pub use dial::{Autostart, Dial};
pub use error::ClientError;
pub use tether_proto::cursor::EndKind;
