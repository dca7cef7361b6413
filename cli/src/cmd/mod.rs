//! One module per verb.

pub mod attach;
pub mod ca;
pub mod kill;
pub mod ls;
pub mod new;
pub mod node;
pub mod relay;
pub mod rm;
pub mod send;
pub mod tail;
pub mod wait;

use crate::Verb;
use anyhow::bail;
use std::path::{Path, PathBuf};
use tether_client::{Autostart, Client};
use tether_proto::{Reply, SessionInfo};

/// Where the client verbs go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The local node of this state dir (started if none runs).
    Local(PathBuf),
    /// A fleet, through relays.
    Fleet {
        /// Relay addresses, tried in order.
        relays: Vec<String>,
        /// Client credentials.
        tls: PathBuf,
    },
}

impl Target {
    /// Connects; for a fleet, to the first relay that answers from
    /// `first` on. Returns the relay index used.
    pub async fn connect(&self, first: usize) -> anyhow::Result<(Client, usize)> {
        match self {
            Target::Local(d) => Ok((connect(d).await?, 0)),
            Target::Fleet { relays, tls } => Ok(Client::connect_relay(relays, tls, first).await?),
        }
    }

    /// Whether a dropped connection should be retried elsewhere.
    pub fn can_reconnect(&self) -> bool {
        matches!(self, Target::Fleet { .. })
    }
}

/// Runs a verb that talks to a node or a fleet.
pub async fn client_verb(target: Target, verb: Verb) -> anyhow::Result<i32> {
    let (client, _) = target.connect(0).await?;
    let code = match verb {
        Verb::Tail(a) => return tail::run(client, &target, a).await,
        Verb::New(a) => return new::run(client, &target, a).await,
        Verb::Attach(a) => return attach::run(client, &target, a).await,
        Verb::Ls(a) => ls::run(&client, a).await,
        Verb::Nodes(a) => ls::nodes(&client, a).await,
        Verb::Info(a) => ls::info(&client, a).await,
        Verb::Send(a) => send::run(&client, a).await,
        Verb::Wait(a) => wait::run(&client, a).await,
        Verb::Kill(a) => kill::run(&client, a).await,
        Verb::Rm(a) => rm::run(&client, a).await,
        Verb::Node(_) | Verb::Keeper(_) | Verb::Relay(_) | Verb::Ca(_) => {
            unreachable!("handled in main")
        }
    };
    client.close().await;
    code
}

/// Connects to the local node, starting it when none runs.
pub async fn connect(state_dir: &Path) -> anyhow::Result<Client> {
    let exe = std::env::current_exe()?;
    Ok(Client::connect_local(state_dir, Some(Autostart { exe })).await?)
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
