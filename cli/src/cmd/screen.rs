//! `tether screen`: the visible screen of a session, as the node's
//! terminal emulator has it.

use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Print JSON: lines, cursor, size, title, alternate screen, and the
    /// output offset the screen reflects.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let s = client.screen(&a.target).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.text());
    }
    Ok(0)
}
