//! One module per verb.

pub mod attach;
pub mod kill;
pub mod ls;
pub mod new;
pub mod node;
pub mod rm;
pub mod send;
pub mod tail;
pub mod wait;

use crate::Verb;
use anyhow::bail;
use std::path::Path;
use tether_node::client::{Autostart, Client};
use tether_proto::{Reply, SessionInfo};

/// Runs a verb that talks to a node.
pub async fn client_verb(state_dir: &Path, verb: Verb) -> anyhow::Result<i32> {
    let client = connect(state_dir).await?;
    let code = match verb {
        Verb::New(a) => new::run(&client, a).await,
        Verb::Ls(a) => ls::run(&client, a).await,
        Verb::Info(a) => ls::info(&client, a).await,
        Verb::Attach(a) => attach::run(&client, a).await,
        Verb::Tail(a) => tail::run(&client, a).await,
        Verb::Send(a) => send::run(&client, a).await,
        Verb::Wait(a) => wait::run(&client, a).await,
        Verb::Kill(a) => kill::run(&client, a).await,
        Verb::Rm(a) => rm::run(&client, a).await,
        Verb::Node(_) | Verb::Keeper(_) => unreachable!("handled in main"),
    };
    client.close().await;
    code
}

/// Connects to the local node, starting it when none runs.
pub async fn connect(state_dir: &Path) -> anyhow::Result<Client> {
    let exe = std::env::current_exe()?;
    Client::connect_local(state_dir, Some(Autostart { exe })).await
}

/// Turns an error reply into an error.
pub fn check(reply: Reply) -> anyhow::Result<Reply> {
    match reply {
        Reply::Error { message, .. } => bail!("{message}"),
        other => Ok(other),
    }
}

/// Expects a `Session` reply.
pub fn expect_session(reply: Reply) -> anyhow::Result<SessionInfo> {
    match check(reply)? {
        Reply::Session { session } => Ok(session),
        other => bail!("unexpected reply from the node: {other:?}"),
    }
}

/// One line for an error: the outermost context and its cause.
pub fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// Parses a signal given as a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| {
            anyhow::anyhow!("unknown signal '{s}'; use a name like TERM, HUP, KILL or a number")
        })
}
