//! `tether send`.

use super::check;
use std::io::Read;
use tether_client::Client;
use tether_proto::Request;

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
    let max = tether_proto::MAX_FRAME_SIZE / 2;
    for chunk in data.chunks(max) {
        check(
            client
                .request(&Request::Send {
                    target: a.target.clone(),
                    data: chunk.to_vec(),
                })
                .await?,
        )?;
    }
    Ok(0)
}
