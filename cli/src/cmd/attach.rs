//! `tether attach`: the interactive client. It puts the terminal in raw
//! mode and renders the events of one [`OutputStream`]: output to the
//! screen, keystrokes and window sizes to the session, a status line while
//! the stream reconnects by itself (see [`tether_client::stream`]).

use crate::{exit, term};
use anyhow::Context;
use tether_client::{Client, ClientError, Dial, EndKind, OutputStream, StreamEvent};
use tether_proto::{AttachSpec, Sizing, SnapshotSpec, StartAt};
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
    /// What to show first: `screen` redraws the screen as it is now
    /// (alternate screen, modes, title and recent history, from the node's
    /// terminal emulator); `raw` replays the ring's raw output.
    #[arg(long, value_enum, default_value = "screen")]
    pub replay: Replay,
    /// Lines of history sent ahead of the screen, into the terminal's
    /// scrollback (with `--replay screen`). Default: one screenful (the
    /// terminal's rows).
    #[arg(long, value_name = "LINES")]
    pub history: Option<u32>,
    /// How this window's size sets the session's when several clients are
    /// attached: `latest` (the client that attached, resized or typed last),
    /// `smallest` (fit every client that chose it), `fixed` (never resize).
    #[arg(long, value_enum, default_value = "latest", env = "TETHER_SIZING")]
    pub sizing: SizingArg,
}

/// `--sizing`, as clap parses it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizingArg {
    /// The client in front of the session sets its size.
    Latest,
    /// The session fits the smallest such window.
    Smallest,
    /// This client never resizes the session.
    Fixed,
}

impl From<SizingArg> for Sizing {
    fn from(s: SizingArg) -> Sizing {
        match s {
            SizingArg::Latest => Sizing::Latest,
            SizingArg::Smallest => Sizing::Smallest,
            SizingArg::Fixed => Sizing::Fixed,
        }
    }
}

/// What an attach shows first.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The screen as it is now, redrawn exactly.
    Screen,
    /// The raw output still in the ring.
    Raw,
}

/// Lines of history an attach asks for when not told: one screenful of
/// the terminal it draws on, what scrolling back a page shows.
pub fn screenful() -> u32 {
    crate::term::size().map_or(tether_proto::screen::DEFAULT_SNAPSHOT_HISTORY, |s| {
        u32::from(s.rows)
    })
}

/// How an attach starts.
pub struct Options<'a> {
    /// Watch only.
    pub read_only: bool,
    /// The detach key as given.
    pub detach_key: Option<&'a str>,
    /// A snapshot with this many lines of history, or the raw replay.
    pub snapshot: Option<u32>,
    /// How this window's size sets the session's.
    pub sizing: Sizing,
}

/// The detach key when none is given.
pub const DEFAULT_DETACH_KEY: &str = "ctrl-\\";

pub async fn run(client: Client, a: Args) -> anyhow::Result<i32> {
    let opts = Options {
        read_only: a.read_only,
        detach_key: a.detach_key.as_deref(),
        snapshot: (a.replay == Replay::Screen).then(|| a.history.unwrap_or_else(screenful)),
        sizing: a.sizing.into(),
    };
    attach(client, &a.target, opts).await
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
pub async fn attach(client: Client, target: &str, opts: Options<'_>) -> anyhow::Result<i32> {
    let detach = parse_detach_key(opts.detach_key.unwrap_or(DEFAULT_DETACH_KEY))?;
    let read_only = opts.read_only;
    // Raw mode first, so that no keystroke typed while the attach is set
    // up is cooked (a Ctrl-\ would otherwise kill this client).
    let tty = term::stdin_is_tty();
    if tty {
        term::enter_raw().context("putting the terminal in raw mode")?;
    }
    let term = if tty { term::Tty::open() } else { None };
    let mut out = Screen::new(term.as_ref());
    let spec = AttachSpec {
        read_only,
        size: term::size(),
        snapshot: opts.snapshot.map(|history| SnapshotSpec { history }),
        sizing: opts.sizing,
        ..AttachSpec::new(target, StartAt::Oldest)
    };
    let mut alt = false;
    let res = run_stream(client, spec, detach, term.as_ref(), &mut out, &mut alt).await;
    out.flush().await.ok();
    if tty {
        if alt {
            // Back to the screen the user had before the attach.
            out.write_all(b"\x1b[?1049l").await.ok();
        }
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
    spec: AttachSpec,
    detach: u8,
    term: Option<&term::Tty>,
    stdout: &mut Screen<'_>,
    alt: &mut bool,
) -> anyhow::Result<(End, String, String)> {
    let read_only = spec.read_only;
    let mut winch = signal(SignalKind::window_change())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut termsig = signal(SignalKind::terminate())?;
    let mut keys = match term {
        Some(t) => Keys::Tty(t, vec![0; 4096]),
        None => Keys::Stdin(stdin_reader()),
    };
    let mut stdin_open = true;
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
                Ok(StreamEvent::Snapshot { data, .. }) => {
                    *alt = alternate_screen(&data).unwrap_or(*alt);
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                Ok(StreamEvent::Output { data, .. }) => {
                    *alt = alternate_screen(&data).unwrap_or(*alt);
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

/// Whether `data` leaves the terminal on the alternate screen (`Some(true)`)
/// or the primary one, if it switches at all. A switch cut between two
/// chunks of output is missed; the price is a terminal left on the wrong
/// screen after a detach, which the next program's switch repairs.
fn alternate_screen(data: &[u8]) -> Option<bool> {
    let mut last = None;
    let mut rest = data;
    while let Some(i) = rest.iter().position(|&b| b == 0x1b) {
        rest = &rest[i + 1..];
        for mode in [&b"[?1049"[..], b"[?1047", b"[?47"] {
            if let Some(tail) = rest.strip_prefix(mode) {
                match tail.first() {
                    Some(b'h') => last = Some(true),
                    Some(b'l') => last = Some(false),
                    _ => {}
                }
            }
        }
    }
    last
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
    use super::{alternate_screen, parse_detach_key};

    #[test]
    fn switches_to_the_alternate_screen_are_seen() {
        assert_eq!(alternate_screen(b"ab\x1b[?1049hcd"), Some(true));
        assert_eq!(alternate_screen(b"\x1b[?1049h..\x1b[?1049l"), Some(false));
        assert_eq!(alternate_screen(b"\x1b[?47h"), Some(true));
        assert_eq!(alternate_screen(b"\x1b[?1000h plain"), None);
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_key("ctrl-\\").unwrap(), 0x1c);
        assert_eq!(parse_detach_key("^a").unwrap(), 1);
        assert_eq!(parse_detach_key("C-b").unwrap(), 2);
        assert!(parse_detach_key("x").is_err());
        assert!(parse_detach_key("ctrl-ab").is_err());
    }
}
