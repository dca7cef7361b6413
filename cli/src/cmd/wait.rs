//! `tether wait`: until the session exits (its exit code becomes ours), or
//! until its output matches, goes quiet, or it waits for input.

use crate::exit;
use std::time::Duration;
use tether_client::agent::{self, Until, Why};
use tether_client::Client;
use tether_proto::Offset;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("until").args(["pattern", "idle", "input", "exit"])))]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Until the plain text of the output after --from matches this regular
    /// expression (multi-line: ^ and $ match at line ends).
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,
    /// Until no output came for this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub idle: Option<u64>,
    /// Until the foreground process waits for input (read from the
    /// terminal's line discipline and the processes' state, not the text).
    #[arg(long)]
    pub input: bool,
    /// Until the session exits, and exit with its code (the default).
    #[arg(long)]
    pub exit: bool,
    /// Look at the output from this offset (default: the end, when the wait
    /// starts); pass the `next` of a `read` so that nothing is missed.
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<u64>,
    /// Give up after this many seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Print JSON: {"reason", "offset", "matched", "exit_code",
    /// "foreground"}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let timeout = match a.timeout {
        Some(t) => Some(Duration::try_from_secs_f64(t).map_err(|_| {
            exit::usage(format!(
                "--timeout {t}: give a number of seconds, 0 or more"
            ))
        })?),
        None => None,
    };
    let until = if let Some(p) = &a.pattern {
        let re = regex::RegexBuilder::new(p)
            .multi_line(true)
            .build()
            .map_err(|e| exit::usage(format!("--pattern: {e}")))?;
        Until::Pattern(re)
    } else if let Some(ms) = a.idle {
        Until::Idle(Duration::from_millis(ms))
    } else if a.input {
        Until::Input
    } else {
        Until::Exit
    };
    let exit_wait = matches!(until, Until::Exit);
    let w = agent::wait(client, &a.target, until, a.from.map(Offset), timeout).await?;
    if a.json {
        let out = serde_json::json!({
            "reason": w.why.as_str(),
            "offset": w.offset.0,
            "matched": w.matched,
            "exit_code": w.exit.map(|e| e.shell_code()),
            "foreground": w.foreground.as_ref().map(|f| serde_json::json!({"pid": f.pid, "name": f.name})),
        });
        println!("{out}");
    }
    Ok(match w.why {
        Why::Timeout => {
            if !a.json {
                eprintln!(
                    "tether: session {} {} after {} s (offset {})",
                    a.target,
                    if exit_wait {
                        "still runs"
                    } else {
                        "did not get there"
                    },
                    a.timeout.unwrap_or_default(),
                    w.offset
                );
            }
            exit::TIMEOUT
        }
        Why::Exited if exit_wait => match w.exit {
            Some(st) => st.shell_code(),
            None => {
                eprintln!(
                    "tether: session {} was lost (its keeper vanished)",
                    a.target
                );
                exit::LOST
            }
        },
        why => {
            if !a.json {
                println!("{} {}", why.as_str(), w.offset);
            }
            exit::OK
        }
    })
}
