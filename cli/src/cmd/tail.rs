//! `tether tail`: output bytes from an offset, as they are.

use anyhow::bail;
use base64::Engine;
use std::io::Write;
use tether_node::client::Client;
use tether_proto::{msg, AttachSpec, Frame, Offset, Reply, Request, StartAt};

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

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let spec = AttachSpec {
        target: a.target.clone(),
        start: a
            .from
            .map(|o| StartAt::Offset(Offset(o)))
            .unwrap_or(StartAt::Oldest),
        read_only: true,
        follow: a.follow,
        size: None,
    };
    let (mut rd, mut wr) = client.open(&Request::Attach(spec)).await?;
    let mut expected = match rd.control::<Reply>().await? {
        Reply::Attached { start, .. } => start,
        Reply::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected reply from the node: {other:?}"),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        let frame = match rd.next().await? {
            Some(f) => f,
            None => bail!("the node closed the stream before the end of the output; run tail again with --from {expected}"),
        };
        match frame {
            Frame::Output { offset, data } => {
                if offset != expected {
                    bail!("output out of order: expected offset {expected}, got {offset}");
                }
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
                expected = Offset(offset.0 + data.len() as u64);
            }
            Frame::Control(b) => match msg::decode::<Reply>(&b)? {
                Reply::Gap { missed, resume } => {
                    if a.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"gap": {"missed": missed.0, "resume": resume.0}})
                        )?;
                    } else {
                        out.flush()?;
                        eprintln!("tether: bytes {missed}..{resume} are no longer in the ring; going on from {resume}");
                    }
                    expected = resume;
                }
                Reply::End { offset } => {
                    if a.json {
                        writeln!(out, "{}", serde_json::json!({"end": offset.0}))?;
                    }
                    break;
                }
                Reply::Exited { end, status } => {
                    if a.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"end": end.0, "exit_code": status.code, "exit_signal": status.signal})
                        )?;
                    }
                    break;
                }
                Reply::Lost { end } => {
                    if a.json {
                        writeln!(out, "{}", serde_json::json!({"end": end.0, "lost": true}))?;
                    }
                    break;
                }
                Reply::Error { message, .. } => bail!("{message}"),
                _ => {}
            },
            Frame::Input(_) => bail!("the node sent an input frame"),
        }
        if rd.buffered().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    let _ = wr.get_mut().finish();
    Ok(0)
}
