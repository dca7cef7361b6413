//! `tether attach`: the interactive client.

use crate::term;
use anyhow::{bail, Context};
use tether_node::client::Client;
use tether_proto::{msg, AttachSpec, Frame, Offset, Reply, Request, StartAt};
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

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
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
        _ => bail!("detach key '{s}' is not valid; use a control key such as ctrl-\\ or ctrl-b"),
    }
}

const RESET_MODES: &[u8] =
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b[?25h\x1b[0m";

/// Attaches to `target` until detach, exit or a signal.
pub async fn attach(
    client: &Client,
    target: &str,
    read_only: bool,
    detach_key: Option<&str>,
) -> anyhow::Result<i32> {
    let detach = parse_detach_key(detach_key.unwrap_or("ctrl-\\"))?;
    let spec = AttachSpec {
        target: target.to_string(),
        start: StartAt::Oldest,
        read_only,
        follow: true,
        size: term::size(),
    };
    // Raw mode first, so that no keystroke typed while the attach is set
    // up is cooked (a Ctrl-\ would otherwise kill this client).
    let tty = term::stdin_is_tty();
    if tty {
        term::enter_raw().context("putting the terminal in raw mode")?;
    }
    let (mut rd, mut wr) = client.open(&Request::Attach(spec)).await?;
    let (session, mut expected) = match rd.control::<Reply>().await? {
        Reply::Attached { session, start } => (session, start),
        Reply::Error { message, .. } => {
            term::restore();
            bail!("{message}")
        }
        other => {
            term::restore();
            bail!("unexpected reply from the node: {other:?}")
        }
    };
    let label = session.label();
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
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
    let mut winch = signal(SignalKind::window_change())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut termsig = signal(SignalKind::terminate())?;
    let mut stdout = tokio::io::stdout();
    let mut stdin_open = true;

    enum End {
        Detached,
        Exited(i32),
        Lost,
        Signal,
        Closed,
    }
    let end = loop {
        tokio::select! {
            f = rd.next() => {
                match f? {
                    Some(Frame::Output { offset, data }) => {
                        if offset != expected {
                            term::restore();
                            bail!("output out of order: expected offset {expected}, got {offset}");
                        }
                        expected = Offset(offset.0 + data.len() as u64);
                        stdout.write_all(&data).await?;
                        if rd.buffered().is_empty() {
                            stdout.flush().await?;
                        }
                    }
                    Some(Frame::Control(b)) => match msg::decode::<Reply>(&b)? {
                        Reply::Gap { resume, .. } => expected = resume,
                        Reply::Exited { status, .. } => break End::Exited(status.shell_code()),
                        Reply::Lost { .. } => break End::Lost,
                        Reply::End { .. } => break End::Closed,
                        Reply::Error { message, .. } => {
                            term::restore();
                            bail!("{message}");
                        }
                        _ => {}
                    },
                    Some(Frame::Input(_)) => {}
                    None => break End::Closed,
                }
            }
            input = in_rx.recv(), if stdin_open => {
                let Some(bytes) = input else {
                    // stdin closed (not a terminal): keep watching output.
                    stdin_open = false;
                    continue;
                };
                if let Some(i) = bytes.iter().position(|&b| b == detach) {
                    if !read_only && i > 0 {
                        wr.send(&Frame::Input(bytes[..i].to_vec())).await?;
                    }
                    wr.control(&Request::Detach).await?;
                    break End::Detached;
                }
                if !read_only {
                    wr.send(&Frame::Input(bytes)).await?;
                }
            }
            _ = winch.recv() => {
                if let (false, Some(size)) = (read_only, term::size()) {
                    wr.control(&Request::Resize(size)).await?;
                }
            }
            _ = hup.recv() => break End::Signal,
            _ = termsig.recv() => break End::Signal,
        }
    };
    stdout.flush().await?;
    if tty {
        stdout.write_all(RESET_MODES).await?;
        stdout.flush().await?;
    }
    term::restore();
    let _ = wr.get_mut().finish();
    Ok(match end {
        End::Detached => {
            eprintln!("\n[detached from {label}]");
            0
        }
        End::Exited(code) => {
            eprintln!("\n[exited: {code}]");
            code
        }
        End::Lost => {
            eprintln!(
                "\n[lost: the keeper of {label} vanished; `tether tail` still shows its output]"
            );
            255
        }
        End::Signal => 129,
        End::Closed => {
            eprintln!(
                "\n[connection to the node closed; reattach with `tether attach {}`]",
                session.id.short()
            );
            1
        }
    })
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
