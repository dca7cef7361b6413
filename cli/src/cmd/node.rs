//! `tether node`: the daemon in the foreground; `tether keeper` (hidden).

use anyhow::Context;
use std::path::{Path, PathBuf};
use tether_node::NodeConfig;
use tether_proto::SessionId;

/// Arguments of `tether node`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file (TOML). Default: <state-dir>/node.toml if it exists,
    /// else built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of the hidden `tether keeper`.
#[derive(clap::Args, Debug)]
pub struct KeeperArgs {
    /// The session to hold.
    #[arg(long)]
    pub session: SessionId,
}

pub fn run(state_dir: &Path, a: Args) -> anyhow::Result<i32> {
    let cfg = match a.config {
        Some(p) => NodeConfig::load(&p)?,
        None => {
            let p = state_dir.join("node.toml");
            if p.exists() {
                NodeConfig::load(&p)?
            } else {
                NodeConfig::default()
            }
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = tether_node::daemon::start(state_dir, cfg).await?;
        println!(
            "tether node {} ready on {} (state dir {})",
            node.node_id,
            node.addr,
            state_dir.display()
        );
        tracing::info!(node = %node.node_id, addr = %node.addr, "ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping; sessions keep running");
        node.shutdown().await;
        Ok(0)
    })
}
