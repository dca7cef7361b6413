//! `tether attach`: the interactive client. It puts the terminal in raw
//! mode and renders the events of one [`OutputStream`]: output to the
//! screen, keystrokes and window sizes to the session, a status line while
//! the stream reconnects by itself (see [`tether_client::stream`]).

use crate::{exit, term};
use anyhow::Context;
use tether_client::{Client, ClientError, Dial, EndKind, OutputStream, StreamEvent};
use tether_proto::{AttachSpec, StartAt};
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

/// How an attach ended.
enum End {
    Detached,
    Exited(i32),
    Lost,
    Signal,
    Closed,
    /// The connection broke and could not be restored.
    GaveUp(ClientError),
}

/// Attaches to `target` until detach, exit or a signal. A dropped
/// connection is resumed by the stream (through the next relay, or to the
/// local node once it is back) from the last offset shown, so the screen
/// gets no byte twice and none is lost.
pub async fn attach(
    client: Client,
    target: &str,
    read_only: bool,
    detach_key: Option<&str>,
) -> anyhow::Result<i32> {
    let detach = parse_detach_key(detach_key.unwrap_or(DEFAULT_DETACH_KEY))?;
    // Raw mode first, so that no keystroke typed while the attach is set
    // up is cooked (a Ctrl-\ would otherwise kill this client).
    let tty = term::stdin_is_tty();
    if tty {
        term::enter_raw().context("putting the terminal in raw mode")?;
    }
    let term = if tty { term::Tty::open() } else { None };
    let mut out = Screen::new(term.as_ref());
    let res = run_stream(client, target, read_only, detach, term.as_ref(), &mut out).await;
    out.flush().await.ok();
    if tty {
        out.write_all(RESET_MODES).await.ok();
        out.flush().await.ok();
    }
    term::restore();
    let (end, label, short) = res?;
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
        End::GaveUp(e) => {
            eprintln!("\n[tether: {e}; then reattach with `tether attach {short}`]");
            exit::of_client(&e)
        }
    })
}

/// Renders one stream until it ends. Returns how, the session's label
/// and its short ID.
async fn run_stream(
    client: Client,
    target: &str,
    read_only: bool,
    detach: u8,
    term: Option<&term::Tty>,
    stdout: &mut Screen<'_>,
) -> anyhow::Result<(End, String, String)> {
    let mut winch = signal(SignalKind::window_change())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut termsig = signal(SignalKind::terminate())?;
    let mut keys = match term {
        Some(t) => Keys::Tty(t, vec![0; 4096]),
        None => Keys::Stdin(stdin_reader()),
    };
    let mut stdin_open = true;
    let spec = AttachSpec {
        target: target.to_string(),
        start: StartAt::Oldest,
        read_only,
        follow: true,
        size: term::size(),
    };
    let mut stream = OutputStream::open(client, spec).await?;
    let label = stream.session().label();
    let short = stream.session().id.short();
    let status: &[u8] = match stream.dial() {
        Dial::Fleet { .. } => {
            b"\r\n[tether: connection lost; reconnecting through the next relay...]\r\n"
        }
        Dial::Local { quic: true, .. } => {
            b"\r\n[tether: the node daemon went away; reconnecting...]\r\n"
        }
        // Straight to the keeper: only the keeper's end breaks this.
        Dial::Local { .. } => {
            b"\r\n[tether: the session's keeper went away; asking the node daemon...]\r\n"
        }
    };
    let end = loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Ok(StreamEvent::Output { data, .. }) => {
                    stdout.write_all(&data).await?;
                    if !stream.has_buffered() {
                        stdout.flush().await?;
                    }
                }
                Ok(StreamEvent::Reconnecting { new_outage, cause, .. }) => {
                    tracing::debug!(%cause, "reconnecting");
                    if new_outage {
                        stdout.write_all(status).await?;
                        stdout.flush().await?;
                    }
                }
                Ok(StreamEvent::Gap { .. } | StreamEvent::Resumed { .. }) => {}
                Ok(StreamEvent::Ended(EndKind::Exited { status, .. })) => {
                    break End::Exited(status.shell_code())
                }
                Ok(StreamEvent::Ended(EndKind::Lost { .. })) => break End::Lost,
                Ok(StreamEvent::Ended(EndKind::End { .. })) => break End::Closed,
                Err(e) if e.is_resumable() => break End::GaveUp(e),
                Err(e) => return Err(e.into()),
            },
            input = keys.next(), if stdin_open => {
                let Some(bytes) = input else {
                    // stdin closed (not a terminal): keep watching output.
                    stdin_open = false;
                    continue;
                };
                // A failed write is reported (and repaired) by next().
                if let Some(i) = bytes.iter().position(|&b| b == detach) {
                    if !read_only && i > 0 {
                        let _ = stream.input(&bytes[..i]).await;
                    }
                    break End::Detached;
                }
                if !read_only {
                    let _ = stream.input(&bytes).await;
                }
            }
            _ = winch.recv() => {
                if let (false, Some(size)) = (read_only, term::size()) {
                    let _ = stream.resize(size).await;
                }
            }
            _ = hup.recv() => break End::Signal,
            _ = termsig.recv() => break End::Signal,
        }
    };
    match end {
        End::Detached => stream.detach().await,
        _ => stream.close().await,
    }
    Ok((end, label, short))
}

/// Where keystrokes come from: the terminal itself, read in the event
/// loop, or (stdin not a terminal) stdin, read by a thread.
enum Keys<'a> {
    Tty(&'a term::Tty, Vec<u8>),
    Stdin(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

impl Keys<'_> {
    /// The next keys typed; `None` once there will be none. Cancel-safe.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Keys::Tty(t, buf) => match t.read(buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            },
            Keys::Stdin(rx) => rx.recv().await,
        }
    }
}

/// Where output goes: the terminal, written in the event loop, or stdout
/// (not the terminal of stdin), written by tokio's thread.
pub(crate) enum Screen<'a> {
    Tty(&'a term::Tty),
    Stdout(tokio::io::Stdout),
}

impl<'a> Screen<'a> {
    fn new(term: Option<&'a term::Tty>) -> Screen<'a> {
        match term {
            Some(t) if t.is_stdout => Screen::Tty(t),
            _ => Screen::Stdout(tokio::io::stdout()),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Screen::Tty(t) => t.write_all(data).await,
            Screen::Stdout(s) => s.write_all(data).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Screen::Tty(_) => Ok(()),
            Screen::Stdout(s) => s.flush().await,
        }
    }
}

/// Reads stdin in the background, chunk by chunk.
fn stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
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
