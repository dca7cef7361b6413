//! `tether new`.

use super::attach;
use crate::exit::usage;
use tether_client::Client;
use tether_proto::CreateSpec;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Create detached: print the session ID alone and exit.
    #[arg(short = 'd', long)]
    pub detached: bool,
    /// A name, unique on the node.
    #[arg(long)]
    pub name: Option<String>,
    /// Ring buffer size in bytes (default: the node's, 1 MiB).
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<u64>,
    /// Keep no terminal emulator for this session: no `tether screen`, and
    /// `attach` replays raw output (saves the emulator's memory).
    #[arg(long)]
    pub no_screen: bool,
    /// Working directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<std::path::PathBuf>,
    /// Extra environment variables.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Node to create it on (by name or ID), through a relay.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Detach key when attaching (default ctrl-\).
    #[arg(long, env = "TETHER_DETACH_KEY", value_name = "KEY")]
    pub detach_key: Option<String>,
    /// The command (default: $SHELL).
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub async fn run(client: Client, a: Args) -> anyhow::Result<i32> {
    // A bad detach key is reported before a session is made.
    if !a.detached {
        attach::parse_detach_key(
            a.detach_key
                .as_deref()
                .unwrap_or(attach::DEFAULT_DETACH_KEY),
        )?;
    }
    let mut env = Vec::new();
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => return Err(usage(format!("--env takes KEY=VALUE, got '{kv}'"))),
        }
    }
    if !env.iter().any(|(k, _)| k == "TERM") {
        if let Ok(t) = std::env::var("TERM") {
            env.push(("TERM".into(), t));
        }
    }
    let cwd = match a.cwd {
        Some(c) => {
            std::fs::canonicalize(&c).map_err(|e| usage(format!("--cwd {}: {e}", c.display())))?
        }
        None => std::env::current_dir()?,
    };
    let spec = CreateSpec {
        name: a.name,
        command: a.command,
        cwd: Some(cwd.to_string_lossy().into_owned()),
        env,
        ring_size: a.ring_size,
        size: crate::term::size(),
        node: a.node,
        screen: a.no_screen.then_some(false),
    };
    let s = client.create(spec).await?;
    if a.detached {
        println!("{}", s.id);
        client.close().await;
        return Ok(0);
    }
    let opts = attach::Options {
        read_only: false,
        detach_key: a.detach_key.as_deref(),
        snapshot: Some(attach::screenful()),
        sizing: tether_proto::Sizing::Latest,
    };
    attach::attach(client, &s.id.to_string(), opts).await
}
