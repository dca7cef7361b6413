//! `tether wait`.

use super::check;
use anyhow::bail;
use std::time::Duration;
use tether_client::Client;
use tether_proto::{Reply, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Give up after this many seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let req = Request::Wait {
        target: a.target.clone(),
    };
    let reply = match a.timeout {
        Some(t) => {
            match tokio::time::timeout(Duration::from_secs_f64(t), client.request(&req)).await {
                Ok(r) => r?,
                Err(_) => {
                    eprintln!("tether: session {} still runs after {t} s", a.target);
                    return Ok(124);
                }
            }
        }
        None => client.request(&req).await?,
    };
    match check(reply)? {
        Reply::Exited { status, .. } => Ok(status.shell_code()),
        Reply::Lost { .. } => {
            eprintln!(
                "tether: session {} was lost (its keeper vanished)",
                a.target
            );
            Ok(255)
        }
        other => bail!("unexpected reply from the node: {other:?}"),
    }
}
