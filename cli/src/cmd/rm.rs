//! `tether rm`.

use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    client.remove(&a.target).await?;
    Ok(0)
}
