//! `tether wait`.

use crate::exit;
use std::time::Duration;
use tether_client::{Client, EndKind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Give up after this many seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let limit = match a.timeout {
        Some(t) => Some((
            t,
            Duration::try_from_secs_f64(t).map_err(|_| {
                exit::usage(format!(
                    "--timeout {t}: give a number of seconds, 0 or more"
                ))
            })?,
        )),
        None => None,
    };
    let wait = client.wait(&a.target);
    let end = match limit {
        Some((t, limit)) => match tokio::time::timeout(limit, wait).await {
            Ok(r) => r?,
            Err(_) => {
                eprintln!("tether: session {} still runs after {t} s", a.target);
                return Ok(exit::TIMEOUT);
            }
        },
        None => wait.await?,
    };
    match end {
        EndKind::Exited { status, .. } => Ok(status.shell_code()),
        EndKind::Lost { .. } => {
            eprintln!(
                "tether: session {} was lost (its keeper vanished)",
                a.target
            );
            Ok(exit::LOST)
        }
        EndKind::End { .. } => anyhow::bail!("the node answered `wait` with the end of a tail"),
    }
}
