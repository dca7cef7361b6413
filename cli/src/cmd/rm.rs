//! `tether rm`.

use super::check;
use tether_client::Client;
use tether_proto::Request;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    check(
        client
            .request(&Request::Remove { target: a.target })
            .await?,
    )?;
    Ok(0)
}
