//! `tether read`: a session's output from an offset, at most so many
//! bytes, with the offset to read from next: paging that loses nothing.

use base64::Engine;
use std::io::Write;
use tether_client::{agent, Client};
use tether_proto::Offset;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// First offset to read (default: the oldest kept).
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<u64>,
    /// Read at most this many bytes of output (cut at a character
    /// boundary); `next` says where the rest starts.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_bytes: usize,
    /// Strip escape sequences and control characters (offsets stay those
    /// of the raw output).
    #[arg(long)]
    pub plain: bool,
    /// Print JSON: {"from", "next", "more", "ended", "gap", "data" (UTF-8,
    /// lossy), "base64"}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let r = agent::read(
        client,
        &a.target,
        a.from.map(Offset),
        a.max_bytes.max(1),
        a.plain,
    )
    .await?;
    if a.json {
        let gap = r
            .gap
            .map(|(m, s)| serde_json::json!({"missed": m.0, "resume": s.0}));
        let out = serde_json::json!({
            "from": r.from.0,
            "next": r.next.0,
            "more": r.more,
            "ended": r.ended,
            "gap": gap,
            "data": String::from_utf8_lossy(&r.data),
            "base64": base64::engine::general_purpose::STANDARD.encode(&r.data),
        });
        println!("{out}");
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&r.data)?;
    out.flush()?;
    if let Some((missed, resume)) = r.gap {
        eprintln!("tether: bytes {missed}..{resume} are no longer in the ring");
    }
    if r.more {
        eprintln!(
            "tether: more output waits; go on with `tether read {} --from {}`",
            a.target, r.next
        );
    }
    Ok(0)
}
