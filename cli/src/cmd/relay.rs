//! `tether relay`: a relay of a fleet, in the foreground.

use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Relay config (TOML); see configs/relay.toml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let cfg = tether_relay::RelayConfig::load(&a.config)?;
    // A relay only copies bytes between connections: one worker per core
    // (tokio's default), so that fan-in spreads over all of them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let relay = tether_relay::start(cfg.clone()).await?;
        println!("tether relay {} ready on {}", cfg.name, relay.addr);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        relay.shutdown().await;
        Ok(0)
    })
}
