//! What scripts and AI agents ask of a session, built once on the client
//! for the CLI's verbs and the MCP server alike: read output by offset,
//! wait for a condition, run a command in a shell and get its output and
//! exit code.
//!
//! Everything is addressed by absolute output offsets, so nothing is lost
//! between two calls or across a reconnect: a read returns the offset to
//! read from next and whether more is waiting, never a silently shortened
//! answer; a wait returns the offset it reached.

use crate::client::Client;
use crate::error::ClientError;
use crate::stream::{OutputStream, StreamEvent};
use regex::Regex;
use std::time::Duration;
use tether_proto::cursor::EndKind;
use tether_proto::plain::Plain;
use tether_proto::{AttachSpec, ExitStatus, Foreground, Offset, StartAt};
use tokio::time::Instant;

/// What [`read`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Offset of the first byte read (later than asked when those bytes
    /// had left the ring: see `gap`).
    pub from: Offset,
    /// The bytes (plain text when asked for).
    pub data: Vec<u8>,
    /// Offset to read from next.
    pub next: Offset,
    /// More output is waiting after `next`.
    pub more: bool,
    /// The bytes from the offset asked for up to `from` are no longer in
    /// the ring: `(missed, resume)`.
    pub gap: Option<(Offset, Offset)>,
    /// The session has ended and everything up to its end was read.
    pub ended: bool,
}

/// Reads a session's output from `from` (the oldest byte kept when
/// `None`), at most `max_bytes` bytes, cut at a character boundary; with
/// `plain`, escape sequences and control characters are removed (the
/// offsets stay those of the raw output), and a page does not end inside
/// a sequence (one longer than `max_bytes` excepted), so that pages read
/// one after the other join up to the text of the whole.
pub async fn read(
    client: &Client,
    target: &str,
    from: Option<Offset>,
    max_bytes: usize,
    plain: bool,
) -> Result<Read, ClientError> {
    let start = from.map_or(StartAt::Oldest, StartAt::Offset);
    let spec = AttachSpec {
        read_only: true,
        follow: false,
        ..AttachSpec::new(target, start)
    };
    let mut s = OutputStream::open(client.clone(), spec).await?;
    let mut end = s.session().end_offset;
    let mut first = s.position();
    let mut raw = Vec::new();
    let mut gap = None;
    let mut ended = false;
    loop {
        match s.next().await? {
            StreamEvent::Output { data, .. } => {
                raw.extend_from_slice(&data);
                if raw.len() > max_bytes {
                    break;
                }
            }
            StreamEvent::Gap { missed, resume } if raw.is_empty() => {
                gap = Some((missed, resume));
                first = resume;
            }
            // A gap after some output: stop before it; the next read from
            // `next` reports it.
            StreamEvent::Gap { .. } => break,
            StreamEvent::Ended(e) => {
                match e {
                    EndKind::End { offset } => end = end.max(offset),
                    EndKind::Exited { end: e, .. } | EndKind::Lost { end: e } => {
                        end = end.max(e);
                        ended = true;
                    }
                }
                break;
            }
            StreamEvent::Snapshot { .. }
            | StreamEvent::Reconnecting { .. }
            | StreamEvent::Resumed { .. } => {}
        }
    }
    s.end().await;
    let keep = page_len(&raw, max_bytes, plain);
    raw.truncate(keep);
    let next = Offset(first.0 + keep as u64);
    let more = next < end;
    let data = if plain {
        let mut out = Vec::with_capacity(raw.len());
        let mut p = Plain::new();
        p.feed(&raw, &mut out);
        out
    } else {
        raw
    };
    Ok(Read {
        from: first,
        data,
        next,
        more,
        gap,
        ended: ended && !more,
    })
}

/// How much of `raw` one page of a read keeps: at most `max` bytes, not
/// ending inside a UTF-8 character; for plain text, not inside an escape
/// sequence either (nor after a CR a LF may join), or the next page would
/// start in its middle and show its tail as text. Either cut is skipped
/// when it would leave nothing.
fn page_len(raw: &[u8], max: usize, plain: bool) -> usize {
    let keep = char_boundary(raw, max);
    if !plain || keep == raw.len() {
        return keep;
    }
    match tether_proto::plain::whole_prefix(&raw[..keep]) {
        0 => keep,
        whole => whole,
    }
}

/// The length of `data[..max]` cut back so as not to end inside a UTF-8
/// character (unless that leaves nothing).
fn char_boundary(data: &[u8], max: usize) -> usize {
    let len = data.len().min(max);
    if len == data.len() {
        return len;
    }
    for back in 1..=3.min(len) {
        let b = data[len - back];
        if b & 0xc0 == 0xc0 {
            // A lead byte `back` bytes from the end: is its character whole?
            let need = if b >= 0xf0 {
                4
            } else if b >= 0xe0 {
                3
            } else {
                2
            };
            return if need > back && len > back {
                len - back
            } else {
                len
            };
        }
        if b < 0x80 {
            break;
        }
    }
    len
}

/// What [`wait`] waits for.
#[derive(Debug, Clone)]
pub enum Until {
    /// The plain text of the output after the start offset matches (in
    /// multi-line mode: `^` and `$` match at line ends). A match may span
    /// at most about 4 KiB of text; the offset returned is the end of the
    /// output received when it matched, not of the match.
    Pattern(Regex),
    /// No output for this long.
    Idle(Duration),
    /// The session's foreground process waits for input (see
    /// [`Foreground::awaiting_input`]).
    Input,
    /// The session ends.
    Exit,
}

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The pattern matched.
    Matched,
    /// The output went quiet.
    Idle,
    /// The foreground process waits for input.
    Input,
    /// The session ended.
    Exited,
    /// The time ran out first.
    Timeout,
}

impl Why {
    /// The word for it, as `wait --json` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Matched => "matched",
            Why::Idle => "idle",
            Why::Input => "input",
            Why::Exited => "exited",
            Why::Timeout => "timeout",
        }
    }
}

/// What [`wait`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// Why it returned.
    pub why: Why,
    /// The output offset reached: all output before it was looked at.
    pub offset: Offset,
    /// The text the pattern matched.
    pub matched: Option<String>,
    /// How the session ended, if it did.
    pub exit: Option<ExitStatus>,
    /// The foreground process, for `Input`.
    pub foreground: Option<Foreground>,
}

impl Waited {
    fn new(why: Why, offset: Offset) -> Waited {
        Waited {
            why,
            offset,
            matched: None,
            exit: None,
            foreground: None,
        }
    }
}

/// Text of the output kept for matching, at most.
const WINDOW: usize = 1 << 20;
/// A match may start this far before the newest output, at most.
const OVERLAP: usize = 4096;
/// How often `Until::Input` asks the node.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Waits until `until` holds for the output after `from` (the end of the
/// output when `None`), or `timeout` passes.
pub async fn wait(
    client: &Client,
    target: &str,
    until: Until,
    from: Option<Offset>,
    timeout: Option<Duration>,
) -> Result<Waited, ClientError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    match until {
        Until::Exit => wait_exit(client, target, deadline).await,
        Until::Input => wait_input(client, target, deadline).await,
        Until::Pattern(_) | Until::Idle(_) => {
            wait_output(client, target, until, from, deadline).await
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Waits for the exit on one long request; a connection that breaks
/// meanwhile (a relay killed, a path silent for a second) is dialed again
/// and the wait asked again, as an attached stream would resume, up to the
/// default backoff's attempts in a row.
async fn wait_exit(
    client: &Client,
    target: &str,
    deadline: Option<Instant>,
) -> Result<Waited, ClientError> {
    let backoff = crate::Backoff::default();
    let mut client = client.clone();
    let mut attempt = 0;
    loop {
        let end = tokio::select! {
            end = client.wait(target) => end,
            _ = sleep_until(deadline) => {
                let at = client.info(target).await?.end_offset;
                return Ok(Waited::new(Why::Timeout, at));
            }
        };
        match end {
            Ok(end) => {
                let (offset, exit) = match end {
                    EndKind::Exited { end, status } => (end, Some(status)),
                    EndKind::Lost { end } | EndKind::End { offset: end } => (end, None),
                };
                return Ok(Waited {
                    exit,
                    ..Waited::new(Why::Exited, offset)
                });
            }
            Err(e) if e.is_resumable() => {
                attempt += 1;
                let Some(delay) = backoff.delay(attempt) else {
                    return Err(e);
                };
                tokio::time::sleep(delay).await;
                if let Ok(c) = client.dial().connect(client.relay_index() + 1).await {
                    client = c;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn wait_input(
    client: &Client,
    target: &str,
    deadline: Option<Instant>,
) -> Result<Waited, ClientError> {
    // Twice in a row, with no output in between: a process that reads
    // between two bursts of output is not waiting for anyone.
    let mut last: Option<Offset> = None;
    loop {
        let info = client.info(target).await?;
        if info.state != tether_proto::SessionState::Running {
            return Ok(Waited {
                exit: info.exit,
                ..Waited::new(Why::Exited, info.end_offset)
            });
        }
        match &info.foreground {
            Some(f) if f.awaiting_input => {
                if last == Some(f.offset) {
                    return Ok(Waited {
                        foreground: info.foreground.clone(),
                        ..Waited::new(Why::Input, f.offset)
                    });
                }
                last = Some(f.offset);
            }
            _ => last = None,
        }
        if deadline.is_some_and(|d| Instant::now() + PROBE_EVERY > d) {
            return Ok(Waited::new(Why::Timeout, info.end_offset));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn wait_output(
    client: &Client,
    target: &str,
    until: Until,
    from: Option<Offset>,
    deadline: Option<Instant>,
) -> Result<Waited, ClientError> {
    let spec = AttachSpec {
        read_only: true,
        ..AttachSpec::new(target, from.map_or(StartAt::End, StartAt::Offset))
    };
    let mut s = OutputStream::open(client.clone(), spec).await?;
    let mut plain = Plain::new();
    let mut text: Vec<u8> = Vec::new();
    let idle = match &until {
        Until::Idle(d) => Some(*d),
        _ => None,
    };
    let mut quiet_since = Instant::now();
    let result = loop {
        let quiet = async {
            match idle {
                Some(d) => tokio::time::sleep_until(quiet_since + d).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = s.next() => ev?,
            _ = quiet => break Waited::new(Why::Idle, s.position()),
            _ = sleep_until(deadline) => break Waited::new(Why::Timeout, s.position()),
        };
        match ev {
            StreamEvent::Output { data, .. } => {
                quiet_since = Instant::now();
                let Until::Pattern(re) = &until else {
                    continue;
                };
                let before = text.len();
                plain.feed(&data, &mut text);
                // Search from the start of a line (so that `^` means one),
                // up to OVERLAP before the new text.
                let from = before.saturating_sub(OVERLAP);
                let from = text[from.saturating_sub(OVERLAP)..from]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(from, |i| from.saturating_sub(OVERLAP) + i + 1);
                let hay = String::from_utf8_lossy(&text[from..]);
                if let Some(m) = re.find(&hay) {
                    break Waited {
                        matched: Some(m.as_str().to_string()),
                        ..Waited::new(Why::Matched, s.position())
                    };
                }
                if text.len() > WINDOW {
                    text.drain(..text.len() - OVERLAP);
                }
            }
            StreamEvent::Ended(e) => {
                let (offset, exit) = match e {
                    EndKind::Exited { end, status } => (end, Some(status)),
                    EndKind::Lost { end } | EndKind::End { offset: end } => (end, None),
                };
                break Waited {
                    exit,
                    ..Waited::new(Why::Exited, offset)
                };
            }
            _ => {}
        }
    };
    s.end().await;
    Ok(result)
}

mod run;
pub use run::{run, Ran};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_end_on_character_boundaries() {
        let s = "a\u{e9}\u{4e16}\u{1f600}".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=s.len()).map(|m| char_boundary(s, m)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
    }

    #[test]
    fn plain_pages_join_up_to_the_whole_text() {
        // A bash prompt: bracketed paste on and off around each line.
        let raw: &[u8] =
            b"\x1b[?2004hbash$ echo hi\r\n\x1b[?2004l\rhi\r\n\x1b]0;t\x07\x1b[?2004hbash$ ";
        let whole = tether_proto::plain::plain(raw);
        for max in 9..raw.len() {
            let mut text = Vec::new();
            let mut at = 0;
            while at < raw.len() {
                let len = page_len(&raw[at..], max, true);
                assert!(len > 0 && len <= max, "max {max} at {at}");
                let mut p = Plain::new();
                p.feed(&raw[at..at + len], &mut text);
                at += len;
            }
            assert_eq!(
                String::from_utf8_lossy(&text),
                String::from_utf8_lossy(&whole),
                "pages of {max} bytes"
            );
        }
        // Raw pages are cut at the byte (on a character boundary).
        assert_eq!(page_len(raw, 3, false), 3);
    }
}
