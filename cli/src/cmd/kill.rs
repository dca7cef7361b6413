//! `tether kill`.

use super::parse_signal;
use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Signal name or number (default HUP, as when a terminal closes).
    #[arg(long, short = 's', default_value = "HUP")]
    pub signal: String,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let signal = parse_signal(&a.signal)?;
    client.kill(&a.target, signal).await?;
    Ok(0)
}
