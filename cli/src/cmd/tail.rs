//! `tether tail`: output bytes from an offset, as they are. Through a
//! fleet, a dropped connection is resumed through the next relay from the
//! last offset received, so no byte is lost or doubled.

use anyhow::{anyhow, bail};
use base64::Engine;
use std::io::Write;
use std::time::Duration;
use tether_client::{Client, ClientError};
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

/// How many times a dropped stream is resumed before giving up.
const MAX_RECONNECTS: u32 = 20;

enum Failure {
    /// The transport broke: resume elsewhere.
    Transport(anyhow::Error),
    /// The node said no, or the stream is corrupt: stop.
    Fatal(anyhow::Error),
}

type Out<'a> = std::io::BufWriter<std::io::StdoutLock<'a>>;

pub async fn run(mut client: Client, a: Args) -> anyhow::Result<i32> {
    let target = client.dial().clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut expected: Option<Offset> = None;
    let mut relay = 0;
    let mut reconnects = 0;
    loop {
        let start = match expected {
            Some(o) => StartAt::Offset(o),
            None => a
                .from
                .map(|o| StartAt::Offset(Offset(o)))
                .unwrap_or(StartAt::Oldest),
        };
        match stream_once(&client, &a, start, &mut expected, &mut out).await {
            Ok(()) => {
                out.flush()?;
                client.close().await;
                return Ok(0);
            }
            Err(Failure::Fatal(e)) => {
                out.flush()?;
                return Err(e);
            }
            Err(Failure::Transport(e)) => {
                out.flush()?;
                if !target.is_fleet() || expected.is_none() {
                    return Err(e.context(format!(
                        "the stream broke; run tail again with --from {}",
                        expected.map(|o| o.0).unwrap_or(0)
                    )));
                }
                loop {
                    reconnects += 1;
                    if reconnects > MAX_RECONNECTS {
                        bail!("gave up after {MAX_RECONNECTS} reconnects: {e:#}");
                    }
                    eprintln!(
                        "tether: connection lost ({e:#}); resuming from offset {} through the next relay",
                        expected.map(|o| o.0).unwrap_or(0)
                    );
                    let backoff = Duration::from_millis(50 << reconnects.min(5));
                    tokio::time::sleep(backoff).await;
                    match target.connect(relay + 1).await {
                        Ok(c) => {
                            relay = c.relay_index();
                            client = c;
                            break;
                        }
                        Err(err) => eprintln!("tether: {err:#}"),
                    }
                }
            }
        }
    }
}

async fn stream_once(
    client: &Client,
    a: &Args,
    start: StartAt,
    expected: &mut Option<Offset>,
    out: &mut Out<'_>,
) -> Result<(), Failure> {
    let spec = AttachSpec {
        target: a.target.clone(),
        start,
        read_only: true,
        follow: a.follow,
        size: None,
    };
    let t = |e: anyhow::Error| Failure::Transport(e);
    let f = |e: anyhow::Error| Failure::Fatal(e);
    let (mut rd, mut wr) = client
        .open(&Request::Attach(spec))
        .await
        .map_err(|e| t(e.into()))?;
    let first = rd.control::<Reply>().await.map_err(|e| t(e.into()))?;
    let mut at = match first {
        Reply::Attached { start, .. } => start,
        Reply::Error { kind, message } => {
            return Err(f(ClientError::refused(kind, message).into()))
        }
        other => return Err(f(anyhow!("unexpected reply: {other:?}"))),
    };
    *expected = Some(at);
    let b64 = base64::engine::general_purpose::STANDARD;
    let io = |e: std::io::Error| Failure::Fatal(e.into());
    loop {
        let frame = match rd.next().await {
            Ok(Some(fr)) => fr,
            Ok(None) => return Err(t(anyhow!("the stream ended before the output did"))),
            Err(e) => return Err(t(e.into())),
        };
        match frame {
            Frame::Output { offset, data } => {
                if offset != at {
                    return Err(f(anyhow!(
                        "output out of order: expected offset {at}, got {offset}"
                    )));
                }
                if a.json {
                    let line = serde_json::json!({
                        "offset": offset.0,
                        "len": data.len(),
                        "data": String::from_utf8_lossy(&data),
                        "base64": b64.encode(&data),
                    });
                    writeln!(out, "{line}").map_err(io)?;
                } else {
                    out.write_all(&data).map_err(io)?;
                }
                at = Offset(offset.0 + data.len() as u64);
                *expected = Some(at);
            }
            Frame::Control(b) => match msg::decode::<Reply>(&b).map_err(|e| f(e.into()))? {
                Reply::Gap { missed, resume } => {
                    if a.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"gap": {"missed": missed.0, "resume": resume.0}})
                        )
                        .map_err(io)?;
                    } else {
                        out.flush().map_err(io)?;
                        eprintln!("tether: bytes {missed}..{resume} are no longer in the ring; going on from {resume}");
                    }
                    at = resume;
                    *expected = Some(at);
                }
                Reply::End { offset } => {
                    if a.json {
                        writeln!(out, "{}", serde_json::json!({"end": offset.0})).map_err(io)?;
                    }
                    break;
                }
                Reply::Exited { end, status } => {
                    if a.json {
                        writeln!(out, "{}", serde_json::json!({"end": end.0, "exit_code": status.code, "exit_signal": status.signal}))
                            .map_err(io)?;
                    }
                    break;
                }
                Reply::Lost { end } => {
                    if a.json {
                        writeln!(out, "{}", serde_json::json!({"end": end.0, "lost": true}))
                            .map_err(io)?;
                    }
                    break;
                }
                Reply::Error { kind, message } => {
                    return Err(f(ClientError::refused(kind, message).into()))
                }
                _ => {}
            },
            Frame::Input(_) => return Err(f(anyhow!("the node sent an input frame"))),
        }
        if rd.buffered().is_empty() {
            out.flush().map_err(io)?;
        }
    }
    let _ = wr.get_mut().finish();
    Ok(())
}
