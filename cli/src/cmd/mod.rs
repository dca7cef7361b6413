//! One module per verb. Each parses its arguments, asks the client library
//! ([`tether_client`]) and renders the answer; what a failure means for
//! the exit code is [`crate::exit`]'s.

pub mod attach;
pub mod ca;
pub mod events;
pub mod kill;
pub mod ls;
pub mod mcp;
pub mod new;
pub mod node;
pub mod read;
pub mod relay;
pub mod rm;
pub mod run;
pub mod screen;
pub mod send;
pub mod share;
pub mod tail;
pub mod wait;

use crate::exit::usage;
use crate::Verb;
use anyhow::Context;
use std::path::PathBuf;
use tether_client::{Autostart, Dial};

/// The relays a client verb goes through: `--relay`, else `$TETHER_RELAY`
/// (host:port, comma-separated; empty items ignored).
///
/// The variable is read here, for the client verbs only, and not by a clap
/// `env` on the global `--relay`: clap fills a global argument into every
/// subcommand's argument of the same ID, so an exported `TETHER_RELAY`
/// (as the fleet's `fleet.sh env` sets) would become the `--relay NAME` of
/// `tether ca issue`, and `ca issue CA --client x` would fail on a relay
/// certificate named after an address.
pub fn relays(flag: Vec<String>, env: Option<std::ffi::OsString>) -> Vec<String> {
    if !flag.is_empty() {
        return flag;
    }
    env.map(|v| {
        v.to_string_lossy()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// Where the client verbs go, from the global flags: a fleet through
/// `--relay` (with `--tls-dir`), else the local node of `state_dir`,
/// started by this binary when none runs, over its unix sockets (over
/// QUIC with `TETHER_LOCAL_QUIC=1`).
pub fn dial(
    state_dir: PathBuf,
    relays: Vec<String>,
    tls_dir: Option<PathBuf>,
) -> anyhow::Result<Dial> {
    match (relays.is_empty(), tls_dir) {
        (true, _) => {
            let exe = std::env::current_exe().context("finding the tether binary")?;
            let dial = Dial::local(state_dir, Some(Autostart { exe }));
            // Diagnostics: the daemon over QUIC, as a remote client sees it.
            let quic = std::env::var_os("TETHER_LOCAL_QUIC").is_some_and(|v| v == "1");
            Ok(if quic { dial.over_quic() } else { dial })
        }
        (false, Some(tls)) => Ok(Dial::fleet(relays, tls)),
        (false, None) => Err(usage(
            "--relay needs fleet client credentials: pass --tls-dir DIR (from `tether ca issue CA --client NAME`)",
        )),
    }
}

/// Runs a verb that talks to a node or a fleet.
pub async fn client_verb(dial: Dial, verb: Verb) -> anyhow::Result<i32> {
    // A server: it connects (and connects again) by itself.
    let verb = match verb {
        Verb::Mcp(a) => return mcp::run(dial, a).await,
        verb => verb,
    };
    let client = dial.connect(0).await?;
    let code = match verb {
        Verb::Tail(a) => return tail::run(client, a).await,
        Verb::New(a) => return new::run(client, a).await,
        Verb::Attach(a) => return attach::run(client, a).await,
        Verb::Ls(a) => ls::run(&client, a).await,
        Verb::Nodes(a) => ls::nodes(&client, a).await,
        Verb::Info(a) => ls::info(&client, a).await,
        Verb::Send(a) => send::run(&client, a).await,
        Verb::Wait(a) => wait::run(&client, a).await,
        Verb::Kill(a) => kill::run(&client, a).await,
        Verb::Rm(a) => rm::run(&client, a).await,
        Verb::Screen(a) => screen::run(&client, a).await,
        Verb::Events(a) => events::run(&client, a).await,
        Verb::Read(a) => read::run(&client, a).await,
        Verb::Run(a) => run::run(&client, a).await,
        Verb::Share(a) => share::run(&client, a).await,
        Verb::Unshare(a) => share::unshare(&client, a).await,
        Verb::Node(_) | Verb::Keeper(_) | Verb::Relay(_) | Verb::Ca(_) | Verb::Mcp(_) => {
            unreachable!("handled in main or above")
        }
    };
    client.close().await;
    code
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
            usage(format!(
                "unknown signal '{s}'; use a name like TERM, HUP, KILL or a number"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_come_from_the_flag_else_the_environment() {
        let env = Some("127.0.0.41:7400, 127.0.0.42:7400,".into());
        assert_eq!(
            relays(vec!["r:1".into()], env.clone()),
            vec!["r:1".to_string()]
        );
        assert_eq!(
            relays(Vec::new(), env),
            vec!["127.0.0.41:7400".to_string(), "127.0.0.42:7400".to_string()]
        );
        assert!(relays(Vec::new(), Some("".into())).is_empty());
        assert!(relays(Vec::new(), None).is_empty());
    }
}
