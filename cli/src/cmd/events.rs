//! `tether events`: lifecycle events as they happen, of one session or of
//! every session (through a relay: of the whole fleet, and its nodes
//! coming and going).

use std::io::Write;
use tether_client::{events, Client};
use tether_proto::Event;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this session's events (ID, unique ID prefix, or name).
    pub target: Option<String>,
    /// Print JSON lines: {"kind", "time_ms", "node", "session", "name",
    /// "offset", "clients", "size", "exit", "missed"}.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let mut ev = events::follow(client, a.target.as_deref()).await?;
    let mut seen = 0;
    while a.count.is_none_or(|n| seen < n) {
        let Some(e) = ev.next().await else {
            break;
        };
        let e = e?;
        let mut out = std::io::stdout().lock();
        if a.json {
            writeln!(out, "{}", serde_json::to_string(&e)?)?;
        } else {
            writeln!(out, "{}", line(&e))?;
        }
        out.flush()?;
        seen += 1;
    }
    Ok(0)
}

/// One event as a line of text: time, kind, node, session, details.
fn line(e: &Event) -> String {
    let mut s = format!(
        "{} {:<14} {}",
        crate::output::rfc3339(e.time_ms),
        e.kind.as_str(),
        e.node
    );
    if let Some(id) = e.session {
        match &e.name {
            Some(n) => s.push_str(&format!(" {n} ({})", id.short())),
            None => s.push_str(&format!(" {}", id.short())),
        }
    }
    if let Some(c) = e.clients {
        s.push_str(&format!(" clients={c}"));
    }
    if let Some(z) = e.size {
        s.push_str(&format!(" size={}x{}", z.cols, z.rows));
    }
    if let Some(x) = e.exit {
        s.push_str(&format!(" code={}", x.shell_code()));
    }
    if let Some(m) = e.missed {
        s.push_str(&format!(" missed={m}"));
    }
    if let Some(o) = e.offset {
        s.push_str(&format!(" offset={o}"));
    }
    s
}
