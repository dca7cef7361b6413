//! `tether`: persistent, network-addressable terminal sessions.
//!
//! One binary: the client verbs, the node daemon (`tether node`) and the
//! per-session keeper (a hidden verb the daemon runs). The client verbs
//! are thin: connecting, requests and resumable output streams are
//! `tether-client`'s; what each failure exits with is [`exit`]'s.

mod cmd;
mod exit;
mod output;
mod term;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Persistent terminal sessions that outlive every client and every
/// restart of their node daemon.
#[derive(Parser, Debug)]
#[command(name = "tether", version, about, propagate_version = true)]
pub struct Cli {
    /// State dir of the local node. Default: $TETHER_STATE_DIR, else
    /// $XDG_STATE_HOME/tether, else ~/.local/state/tether.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Use a fleet through these relays (host:port, comma-separated)
    /// instead of the local node. Default: $TETHER_RELAY.
    // No clap `env` here: see `cmd::relays`.
    #[arg(long, global = true, value_delimiter = ',', value_name = "ADDR")]
    pub relay: Vec<String>,
    /// Fleet client credentials (cert.pem, key.pem, ca.pem from `tether ca
    /// issue CA --client NAME`), for --relay.
    #[arg(long, global = true, env = "TETHER_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run the node daemon in the foreground.
    Node(cmd::node::Args),
    /// Create a session (and attach to it, unless -d).
    New(cmd::new::Args),
    /// List sessions.
    Ls(cmd::ls::Args),
    /// List the members of the fleet (through a relay) or the local node.
    Nodes(cmd::ls::Args),
    /// Attach to a session: replay its recent output, then go live.
    Attach(cmd::attach::Args),
    /// Print a session's output from an offset.
    Tail(cmd::tail::Args),
    /// Type text, or keys by name (--keys C-c Enter), into a session.
    Send(cmd::send::Args),
    /// Read a session's output from an offset: bytes, next offset, more.
    Read(cmd::read::Args),
    /// Run a command in a session's shell: its output and exit code.
    Run(cmd::run::Args),
    /// Show a session's metadata.
    Info(cmd::ls::InfoArgs),
    /// Print a session's visible screen (text, or --json).
    Screen(cmd::screen::Args),
    /// Follow lifecycle events: created, attached, detached, resized,
    /// awaiting input, exited, lost, removed, node up or down.
    Events(cmd::events::Args),
    /// Wait until a session exits (exit with its code), or its output
    /// matches, goes quiet, or it waits for input.
    Wait(cmd::wait::Args),
    /// Send a signal to a session.
    Kill(cmd::kill::Args),
    /// Remove an ended session and its files.
    Rm(cmd::rm::Args),
    /// Let another fleet client into a session you own.
    Share(cmd::share::Args),
    /// Take a client's share of a session away.
    Unshare(cmd::share::UnshareArgs),
    /// Serve the Model Context Protocol on stdin/stdout: tools for AI
    /// agents (list, create, send, read, wait, screen, run, kill).
    Mcp(cmd::mcp::Args),
    /// Run a relay of a fleet in the foreground.
    Relay(cmd::relay::Args),
    /// Fleet certificate authority: make one, issue and revoke
    /// certificates.
    #[command(subcommand)]
    Ca(cmd::ca::CaVerb),
    /// Internal: hold one session (started by the node daemon).
    #[command(hide = true)]
    Keeper(cmd::node::KeeperArgs),
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            term::restore();
            eprintln!("tether: {}", cmd::describe(&e));
            exit::of_error(&e)
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let state_dir = match cli.state_dir {
        Some(d) => d,
        None => tether_net::runtime::default_state_dir()?,
    };
    match cli.verb {
        Verb::Keeper(a) => {
            init_logs("info");
            tether_node::keeper::run(&state_dir, a.session)?;
            Ok(0)
        }
        Verb::Node(a) => {
            init_logs("info");
            cmd::node::run(&state_dir, a)
        }
        Verb::Relay(a) => {
            init_logs("info");
            cmd::relay::run(a)
        }
        Verb::Ca(v) => cmd::ca::run(v),
        verb => {
            init_logs("warn");
            // One thread: a verb is one conversation, and worker threads
            // would only cost start-up time and wake-ups between them.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let relays = cmd::relays(cli.relay, std::env::var_os("TETHER_RELAY"));
            let dial = cmd::dial(state_dir, relays, cli.tls_dir)?;
            let r = rt.block_on(cmd::client_verb(dial, verb));
            // The stdin reader of an attach sits in a blocking read that
            // never returns; do not wait for it.
            rt.shutdown_background();
            r
        }
    }
}
