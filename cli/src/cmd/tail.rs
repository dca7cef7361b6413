//! `tether tail`: output bytes from an offset, as they are, or as JSON
//! lines. It renders the events of one [`OutputStream`], which resumes by
//! itself when the connection breaks (through the next relay, or to the
//! local node once it is back), so no byte is lost or doubled.

use base64::Engine;
use std::io::Write;
use tether_client::{Client, EndKind, OutputStream, StreamEvent};
use tether_proto::{AttachSpec, Offset, StartAt};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// First offset to print (default: the oldest kept).
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<u64>,
    /// Go on with live output until the session exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print JSON lines: {"offset", "len", "data" (UTF-8, lossy), "base64"}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: Client, a: Args) -> anyhow::Result<i32> {
    let spec = AttachSpec {
        target: a.target.clone(),
        start: a
            .from
            .map(|o| StartAt::Offset(Offset(o)))
            .unwrap_or(StartAt::Oldest),
        read_only: true,
        follow: a.follow,
        size: None,
        snapshot: None,
        sizing: tether_proto::Sizing::Latest,
    };
    let mut stream = OutputStream::open(client, spec).await?;
    let fleet = stream.dial().is_fleet();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut last_cause = String::new();
    loop {
        let ev = match stream.next().await {
            Ok(ev) => ev,
            Err(e) => {
                out.flush()?;
                let at = stream.position().0;
                let resumable = e.is_resumable();
                let e = anyhow::Error::new(e);
                return Err(if resumable {
                    e.context(format!(
                        "tail stopped at offset {at} (run it again with --from {at})"
                    ))
                } else {
                    e
                });
            }
        };
        match ev {
            StreamEvent::Output { offset, data } => {
                if a.json {
                    let line = serde_json::json!({
                        "offset": offset.0,
                        "len": data.len(),
                        "data": String::from_utf8_lossy(&data),
                        "base64": b64.encode(&data),
                    });
                    writeln!(out, "{line}")?;
                } else {
                    out.write_all(&data)?;
                }
            }
            // Never asked for.
            StreamEvent::Snapshot { .. } => {}
            StreamEvent::Gap { missed, resume } => {
                if a.json {
                    let gap = serde_json::json!({"gap": {"missed": missed.0, "resume": resume.0}});
                    writeln!(out, "{gap}")?;
                } else {
                    out.flush()?;
                    eprintln!("tether: bytes {missed}..{resume} are no longer in the ring; going on from {resume}");
                }
            }
            StreamEvent::Reconnecting {
                cause,
                new_outage,
                attempt,
                max_attempts,
                resume_at,
                ..
            } => {
                out.flush()?;
                let cause = cause.to_string();
                match (new_outage, fleet) {
                    (true, true) => eprintln!(
                        "tether: {cause}; resuming from offset {resume_at} through the next relay"
                    ),
                    (true, false) => eprintln!(
                        "tether: the stream broke ({cause}); resuming from offset {resume_at}"
                    ),
                    // Each new reason once, not once per attempt.
                    (false, _) if cause != last_cause => eprintln!(
                        "tether: {cause}; trying again (attempt {attempt} of at most {max_attempts})"
                    ),
                    (false, _) => {}
                }
                last_cause = cause;
            }
            StreamEvent::Resumed { .. } => {}
            StreamEvent::Ended(end) => {
                if a.json {
                    let line = match end {
                        EndKind::End { offset } => serde_json::json!({"end": offset.0}),
                        EndKind::Exited { end, status } => serde_json::json!({
                            "end": end.0,
                            "exit_code": status.code,
                            "exit_signal": status.signal,
                        }),
                        EndKind::Lost { end } => serde_json::json!({"end": end.0, "lost": true}),
                    };
                    writeln!(out, "{line}")?;
                }
                break;
            }
        }
        if !stream.has_buffered() {
            out.flush()?;
        }
    }
    out.flush()?;
    stream.close().await;
    Ok(0)
}
