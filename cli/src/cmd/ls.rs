//! `tether ls`, `tether info` and `tether nodes`.

use crate::output;
use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let sessions = client.list().await?;
    if a.json {
        let v: Vec<_> = sessions.iter().map(output::session_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if sessions.is_empty() {
        println!("no sessions; start one with `tether new`");
    } else {
        print!("{}", output::table(&sessions));
    }
    Ok(0)
}

pub async fn info(client: &Client, a: InfoArgs) -> anyhow::Result<i32> {
    let s = client.info(&a.target).await?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::session_json(&s))?
        );
    } else {
        print!("{}", output::details(&s));
    }
    Ok(0)
}

pub async fn nodes(client: &Client, a: Args) -> anyhow::Result<i32> {
    let nodes = client.nodes().await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(0);
    }
    println!(
        "{:<16} {:<6} {:<5} {:<8} {:<22} ID",
        "NAME", "ROLE", "LIVE", "SESSIONS", "QUIC"
    );
    for n in nodes {
        println!(
            "{:<16} {:<6} {:<5} {:<8} {:<22} {}",
            n.name,
            n.role,
            if n.live { "yes" } else { "no" },
            n.sessions,
            n.quic.as_deref().unwrap_or("tunnel"),
            n.id
        );
    }
    Ok(0)
}
