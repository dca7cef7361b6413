//! `tether send`: type text, or keys by name, into a session.

use crate::exit::usage;
use std::io::Read;
use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Text to type, sent as is (no newline added). Without it and without
    /// --keys: stdin.
    pub text: Option<String>,
    /// Keys to press after the text, by name: Enter, Tab, Escape, Space,
    /// BSpace, Up, Down, Left, Right, Home, End, PageUp, PageDown, Insert,
    /// Delete, F1..F12, a character; with modifiers C- (control), M- (alt),
    /// S- (shift): C-c is the interrupt, not the text "C-c".
    #[arg(long, num_args = 1.., value_name = "KEY")]
    pub keys: Vec<String>,
    /// Print JSON: {"bytes": N}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let mut data = match (a.text, a.keys.is_empty()) {
        (Some(t), _) => t.into_bytes(),
        (None, false) => Vec::new(),
        (None, true) => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    let keys = tether_proto::keys::encode_all(&a.keys).map_err(|e| usage(e.to_string()))?;
    data.extend(keys);
    client.send(&a.target, &data).await?;
    if a.json {
        println!("{}", serde_json::json!({ "bytes": data.len() }));
    }
    Ok(0)
}
