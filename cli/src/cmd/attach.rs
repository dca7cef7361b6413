//! `tether attach`: the interactive client.

use crate::{exit, term};
use anyhow::{bail, Context};
use std::time::Duration;
use tether_client::{Client, ClientError};
use tether_proto::{msg, AttachSpec, Frame, Offset, Reply, Request, StartAt, StreamControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name.
    pub target: String,
    /// Watch only: no input, no resize.
    #[arg(long)]
    pub read_only: bool,
    /// Detach key (default ctrl-\). Forms: ctrl-a, ^a.
    #[arg(long, env = "TETHER_DETACH_KEY", value_name = "KEY")]
    pub detach_key: Option<String>,
}

/// The detach key when none is given.
pub const DEFAULT_DETACH_KEY: &str = "ctrl-\\";

pub async fn run(client: Client, a: Args) -> anyhow::Result<i32> {
    attach(client, &a.target, a.read_only, a.detach_key.as_deref()).await
}

/// Parses `ctrl-\`, `^\`, `ctrl-a` into the byte the terminal sends.
pub fn parse_detach_key(s: &str) -> anyhow::Result<u8> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("ctrl-")
        .or_else(|| lower.strip_prefix("c-"))
        .or_else(|| lower.strip_prefix('^'));
    match rest.map(|r| r.as_bytes()) {
        Some([c]) if (b'@'..=b'_').contains(&c.to_ascii_uppercase()) => {
            Ok(c.to_ascii_uppercase() - b'@')
        }
        _ => Err(exit::usage(format!(
            "detach key '{s}' is not valid; use a control key such as ctrl-\\ or ctrl-b"
        ))),
    }
}

const RESET_MODES: &[u8] =
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b[?25h\x1b[0m";

/// How many times a dropped attach is resumed before giving up.
const MAX_RECONNECTS: u32 = 20;

/// How one attach stream ended.
enum End {
    Detached,
    Exited(i32),
    Lost,
    Signal,
    Closed,
    /// The transport broke (relay or node gone): resume if we can.
    Broken(anyhow::Error),
}

/// What lives across reconnects: the terminal side of the client.
struct Term {
    detach: u8,
    read_only: bool,
    in_rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    stdin_open: bool,
    winch: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    termsig: tokio::signal::unix::Signal,
    stdout: tokio::io::Stdout,
}

/// Attaches to `target` until detach, exit or a signal. Through a fleet,
/// a dropped connection is resumed through the next relay from the last
/// offset shown, so the screen gets no byte twice and none is lost.
pub async fn attach(
    mut client: Client,
    target: &str,
    read_only: bool,
    detach_key: Option<&str>,
) -> anyhow::Result<i32> {
    let detach = parse_detach_key(detach_key.unwrap_or(DEFAULT_DETACH_KEY))?;
    let via = client.dial().clone();
    // Raw mode first, so that no keystroke typed while the attach is set
    // up is cooked (a Ctrl-\ would otherwise kill this client).
    let tty = term::stdin_is_tty();
    if tty {
        term::enter_raw().context("putting the terminal in raw mode")?;
    }
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut t = Term {
        detach,
        read_only,
        in_rx,
        stdin_open: true,
        winch: signal(SignalKind::window_change())?,
        hup: signal(SignalKind::hangup())?,
        termsig: signal(SignalKind::terminate())?,
        stdout: tokio::io::stdout(),
    };
    let mut expected: Option<Offset> = None;
    let mut label: String;
    let mut short: String;
    let mut relay = 0;
    let mut reconnects = 0;
    let end = loop {
        let start = expected.map(StartAt::Offset).unwrap_or(StartAt::Oldest);
        let end = match one_stream(&client, target, start, &mut t, &mut expected).await {
            Ok((end, l, s)) => {
                label = l;
                short = s;
                end
            }
            Err(e) => {
                t.stdout.flush().await.ok();
                term::restore();
                return Err(e);
            }
        };
        let End::Broken(err) = end else { break end };
        if !via.is_fleet() || expected.is_none() {
            break End::Broken(err);
        }
        // One status line while reconnecting.
        let _ = t
            .stdout
            .write_all(b"\r\n[tether: connection lost; reconnecting through the next relay...]\r\n")
            .await;
        let _ = t.stdout.flush().await;
        let mut last_err = err;
        loop {
            reconnects += 1;
            if reconnects > MAX_RECONNECTS {
                t.stdout.flush().await.ok();
                term::restore();
                bail!("gave up after {MAX_RECONNECTS} reconnects: {last_err:#}");
            }
            tokio::time::sleep(Duration::from_millis(50 << reconnects.min(5))).await;
            match via.connect(relay + 1).await {
                Ok(c) => {
                    relay = c.relay_index();
                    client = c;
                    break;
                }
                Err(e) => last_err = e.into(),
            }
        }
    };
    t.stdout.flush().await?;
    if tty {
        t.stdout.write_all(RESET_MODES).await?;
        t.stdout.flush().await?;
    }
    term::restore();
    Ok(match end {
        End::Detached => {
            eprintln!("\n[detached from {label}]");
            exit::OK
        }
        End::Exited(code) => {
            eprintln!("\n[exited: {code}]");
            code
        }
        End::Lost => {
            eprintln!(
                "\n[lost: the keeper of {label} vanished; `tether tail` still shows its output]"
            );
            exit::LOST
        }
        End::Signal => exit::SIGNALLED,
        End::Closed => {
            eprintln!("\n[connection closed; reattach with `tether attach {short}`]");
            exit::FAILURE
        }
        End::Broken(e) => {
            eprintln!("\n[connection lost: {e:#}; reattach with `tether attach {short}`]");
            exit::FAILURE
        }
    })
}

/// Runs one attach stream until it ends. Returns how it ended, the
/// session's label and short ID.
async fn one_stream(
    client: &Client,
    target: &str,
    start: StartAt,
    t: &mut Term,
    expected: &mut Option<Offset>,
) -> anyhow::Result<(End, String, String)> {
    let spec = AttachSpec {
        target: target.to_string(),
        start,
        read_only: t.read_only,
        follow: true,
        size: term::size(),
    };
    let broken = |e: anyhow::Error| Ok((End::Broken(e), target.to_string(), target.to_string()));
    let (mut rd, mut wr) = match client.open(&Request::Attach(spec)).await {
        Ok(s) => s,
        Err(e) => return broken(e.into()),
    };
    let (session, mut at) = match rd.control::<Reply>().await {
        Ok(Reply::Attached { session, start }) => (session, start),
        Ok(Reply::Error { kind, message }) => {
            return Err(ClientError::refused(kind, message).into())
        }
        Ok(other) => bail!("unexpected reply from the node: {other:?}"),
        Err(e) => return broken(e.into()),
    };
    *expected = Some(at);
    let label = session.label();
    let short = session.id.short();
    let done = |end: End| Ok((end, label.clone(), short.clone()));
    loop {
        tokio::select! {
            f = rd.next() => {
                let f = match f {
                    Ok(f) => f,
                    Err(e) => return done(End::Broken(e.into())),
                };
                match f {
                    Some(Frame::Output { offset, data }) => {
                        if offset != at {
                            bail!("output out of order: expected offset {at}, got {offset}");
                        }
                        at = Offset(offset.0 + data.len() as u64);
                        *expected = Some(at);
                        t.stdout.write_all(&data).await?;
                        if rd.buffered().is_empty() {
                            t.stdout.flush().await?;
                        }
                    }
                    Some(Frame::Control(b)) => match msg::decode::<Reply>(&b)? {
                        Reply::Gap { resume, .. } => {
                            at = resume;
                            *expected = Some(at);
                        }
                        Reply::Exited { status, .. } => return done(End::Exited(status.shell_code())),
                        Reply::Lost { .. } => return done(End::Lost),
                        Reply::End { .. } => return done(End::Closed),
                        Reply::Error { kind, message } => return Err(ClientError::refused(kind, message).into()),
                        _ => {}
                    },
                    Some(Frame::Input(_)) => {}
                    None => return done(End::Broken(anyhow::anyhow!("the stream ended"))),
                }
            }
            input = t.in_rx.recv(), if t.stdin_open => {
                let Some(bytes) = input else {
                    // stdin closed (not a terminal): keep watching output.
                    t.stdin_open = false;
                    continue;
                };
                if let Some(i) = bytes.iter().position(|&b| b == t.detach) {
                    if !t.read_only && i > 0 {
                        wr.send(&Frame::Input(bytes[..i].to_vec())).await?;
                    }
                    wr.control(&StreamControl::Detach).await?;
                    let _ = wr.get_mut().finish();
                    return done(End::Detached);
                }
                if !t.read_only {
                    if let Err(e) = wr.send(&Frame::Input(bytes)).await {
                        return done(End::Broken(e.into()));
                    }
                }
            }
            _ = t.winch.recv() => {
                if let (false, Some(size)) = (t.read_only, term::size()) {
                    if let Err(e) = wr.control(&StreamControl::Resize(size)).await {
                        return done(End::Broken(e.into()));
                    }
                }
            }
            _ = t.hup.recv() => return done(End::Signal),
            _ = t.termsig.recv() => return done(End::Signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_detach_key;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_key("ctrl-\\").unwrap(), 0x1c);
        assert_eq!(parse_detach_key("^a").unwrap(), 1);
        assert_eq!(parse_detach_key("C-b").unwrap(), 2);
        assert!(parse_detach_key("x").is_err());
        assert!(parse_detach_key("ctrl-ab").is_err());
    }
}
