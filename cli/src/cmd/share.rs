//! `tether share` and `tether unshare`: let another fleet client into a
//! session you own, or take its share away.

use tether_client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name of a session you own.
    pub target: String,
    /// The client's name, as its certificate says (`tether ca issue CA --client NAME`).
    #[arg(long = "with")]
    pub with: String,
    /// It may watch and tail, not type, resize, kill or remove.
    #[arg(long)]
    pub read_only: bool,
}

#[derive(clap::Args, Debug)]
pub struct UnshareArgs {
    /// ID, unique ID prefix, or name of a session you own.
    pub target: String,
    /// The client whose share is taken away.
    #[arg(long = "with")]
    pub with: String,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    client.share(&a.target, &a.with, a.read_only).await?;
    Ok(0)
}

pub async fn unshare(client: &Client, a: UnshareArgs) -> anyhow::Result<i32> {
    client.unshare(&a.target, &a.with).await?;
    Ok(0)
}
