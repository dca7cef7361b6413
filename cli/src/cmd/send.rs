//! `tether send`.

use std::io::Read;
use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Text to type, sent as is (no newline added). Without it: stdin.
    pub text: Option<String>,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let data = match a.text {
        Some(t) => t.into_bytes(),
        None => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    client.send(&a.target, &data).await?;
    Ok(0)
}
