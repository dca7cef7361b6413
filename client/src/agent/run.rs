//! `run`: a command typed into a session's shell, its output and exit
//! code found between two markers the shell's echo cannot match.

use super::PROBE_EVERY;
use crate::client::Client;
use crate::error::ClientError;
use crate::stream::{OutputStream, StreamEvent};
use std::time::Duration;
use tether_proto::{AttachSpec, ErrorKind, Foreground, Offset, StartAt};
use tokio::time::Instant;

/// What [`run`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The command's output as plain text (at most `max_bytes` of raw
    /// output; see `truncated`).
    pub output: String,
    /// Its exit code, once it finished.
    pub exit_code: Option<i32>,
    /// Offsets of its raw output: `tether read --from` pages through it.
    pub from: Offset,
    /// One past its output (or what was seen of it).
    pub to: Offset,
    /// The output was longer than `max_bytes`: read the rest by offset.
    pub truncated: bool,
    /// It stopped to wait for input before it finished: answer with
    /// `send`, then `wait`.
    pub awaiting_input: Option<Foreground>,
    /// The time ran out before it finished (it still runs).
    pub timed_out: bool,
}

/// How long `run` waits for a shell that is busy (finishing the last
/// command, drawing its prompt) to come back to its prompt.
const SHELL_BUSY: Duration = Duration::from_secs(5);

/// The session's info once its shell waits at its prompt, or as it is
/// when another program is in the foreground, or at `until`.
async fn shell_at_prompt(
    client: &Client,
    target: &str,
    until: Instant,
) -> Result<tether_proto::SessionInfo, ClientError> {
    loop {
        let info = client.info(target).await?;
        let shell_busy = matches!(
            (&info.foreground, info.pid),
            (Some(f), Some(pid)) if is_shell(f, pid) && !f.awaiting_input
        );
        if !shell_busy || Instant::now() + PROBE_EVERY > until {
            return Ok(info);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Longest line `run` types: a terminal in canonical mode (dash, busybox
/// sh, ksh) takes at most 4095 bytes on a line.
const MAX_LINE: usize = 4000;

/// Shells `run` types into, when one is in the foreground but is not the
/// session's first process (a launcher such as `bwrap` started it, or
/// another shell did).
const SHELLS: [&str; 11] = [
    "bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "yash", "posh",
];

/// Whether `f` is a shell: the session's first process (`leader`), or a
/// program of a shell's name.
fn is_shell(f: &Foreground, leader: u32) -> bool {
    f.pid == leader || SHELLS.contains(&f.name.as_str())
}

/// `command` as one single-quoted word for `eval` in a POSIX shell or in
/// fish, with its control characters (a tab would complete, others would
/// edit the line) made by `printf` instead of typed.
fn quote(command: &str, fish: bool) -> String {
    let mut out = String::from("'");
    for c in command.chars() {
        match c {
            '\'' if fish => out.push_str("\\'"),
            '\\' if fish => out.push_str("\\\\"),
            '\'' => out.push_str("'\\''"),
            '\n' => out.push('\n'),
            c if c.is_control() && (c as u32) < 0x80 => {
                let made = format!("printf '\\{:03o}'", c as u32);
                if fish {
                    out.push_str(&format!("'({made})'"));
                } else {
                    out.push_str(&format!("'\"$({made})\"'"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The OSC that brackets a command's output: terminals ignore it, and the
/// shell's echo of the command line (which holds `\033` and `%s` as text)
/// can never contain it.
const MARK: &[u8] = b"\x1b]7777;tether-run;";

/// Types `command` into the shell of session `target` and waits for it to
/// finish, by markers that the shell's echo of the command cannot match
/// (the nonce is printed by `printf` from an argument; the echo holds the
/// format, not the bytes). Supports POSIX shells (bash, dash, zsh, ksh,
/// busybox sh) and fish. The shell must be waiting at its prompt.
pub async fn run(
    client: &Client,
    target: &str,
    command: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Ran, ClientError> {
    let deadline = Instant::now() + timeout;
    let info = shell_at_prompt(client, target, deadline.min(Instant::now() + SHELL_BUSY)).await?;
    let shell = match (&info.foreground, info.pid) {
        (Some(f), Some(pid)) if is_shell(f, pid) && f.awaiting_input => f.name.clone(),
        (Some(f), _) => {
            return Err(ClientError::refused(
                ErrorKind::BadRequest,
                format!(
                    "session {} has {} (pid {}) in the foreground{}, not its shell waiting at a \
                     prompt; finish that first (`tether send {target} --keys C-c`, or answer \
                     it) or use another session",
                    info.label(),
                    f.name,
                    f.pid,
                    if f.awaiting_input {
                        ", waiting for input"
                    } else {
                        ", busy"
                    }
                ),
            ))
        }
        (None, _) => {
            return Err(ClientError::refused(
                ErrorKind::BadRequest,
                format!(
                    "session {} is not running a shell with a terminal to type into",
                    info.label()
                ),
            ))
        }
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)
        .map_err(|e| ClientError::Config(format!("no randomness for the run marker: {e}")))?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let status = if shell.contains("fish") {
        "$status"
    } else {
        "$?"
    };
    let quoted = quote(command, shell.contains("fish"));
    // Ctrl-E Ctrl-U first: whatever was left on the prompt line goes (in
    // line editors and in the kernel's canonical mode alike). A leading
    // space keeps the line out of the history where the shell allows.
    let line = format!(
        "\x05\x15 printf '\\033]7777;tether-run;%s;start\\007' {nonce}; eval {quoted}; printf \
         '\\033]7777;tether-run;%s;end;%d\\007' {nonce} {status}\r"
    );
    if line.len() > MAX_LINE {
        return Err(ClientError::refused(
            ErrorKind::BadRequest,
            format!(
                "the command is too long to type as one terminal line ({} bytes with its \
                 markers, at most {MAX_LINE}); put it in a script file and run that",
                line.len()
            ),
        ));
    }
    let start_mark = [MARK, nonce.as_bytes(), b";start\x07"].concat();
    let end_mark = [MARK, nonce.as_bytes(), b";end;"].concat();

    // Follow from the end as it is now, before typing: nothing is missed.
    let spec = AttachSpec {
        read_only: true,
        ..AttachSpec::new(target, StartAt::Offset(info.end_offset))
    };
    let mut s = OutputStream::open(client.clone(), spec).await?;
    client.send(target, line.as_bytes()).await?;

    let mut scan = Scan::new(start_mark, end_mark, max_bytes);
    let mut waiting = 0;
    let mut probe_at = Instant::now() + Duration::from_millis(200);
    let timed_out = loop {
        tokio::select! {
            ev = s.next() => match ev? {
                StreamEvent::Output { offset, data } if scan.feed(offset, &data) => break false,
                StreamEvent::Ended(_) => break false,
                _ => {}
            },
            _ = tokio::time::sleep_until(probe_at), if scan.started() => {
                probe_at = Instant::now() + PROBE_EVERY;
                let info = client.info(target).await?;
                match info.foreground {
                    // Awaiting input, and everything up to the probe read
                    // without the end marker: the command itself waits.
                    Some(f) if f.awaiting_input && s.position() >= f.offset => {
                        waiting += 1;
                        if waiting >= 2 {
                            scan.awaiting = Some(f);
                            break false;
                        }
                    }
                    _ => waiting = 0,
                }
            }
            _ = tokio::time::sleep_until(deadline) => break true,
        }
    };
    s.end().await;
    Ok(scan.result(timed_out, info.end_offset))
}

/// Finds a run's markers in its output and keeps what lies between.
struct Scan {
    start_mark: Vec<u8>,
    end_mark: Vec<u8>,
    max: usize,
    /// The last bytes seen, for markers cut across two chunks.
    window: Vec<u8>,
    /// Offset of `window[0]`.
    window_at: u64,
    /// Offset right after the start marker, once seen.
    body_at: Option<u64>,
    body: Vec<u8>,
    /// Offset where the end marker begins, and the exit code.
    end: Option<(u64, i32)>,
    /// Offset reached.
    seen: u64,
    awaiting: Option<Foreground>,
}

impl Scan {
    fn new(start_mark: Vec<u8>, end_mark: Vec<u8>, max: usize) -> Scan {
        Scan {
            start_mark,
            end_mark,
            max,
            window: Vec::new(),
            window_at: 0,
            body_at: None,
            body: Vec::new(),
            end: None,
            seen: 0,
            awaiting: None,
        }
    }

    fn started(&self) -> bool {
        self.body_at.is_some()
    }

    /// Takes output at `offset`; true once the end marker was seen.
    fn feed(&mut self, offset: Offset, data: &[u8]) -> bool {
        if self.window.is_empty() {
            self.window_at = offset.0;
        }
        self.window.extend_from_slice(data);
        self.seen = offset.0 + data.len() as u64;
        if self.body_at.is_none() {
            if let Some(i) = find(&self.window, &self.start_mark) {
                let at = i + self.start_mark.len();
                self.body_at = Some(self.window_at + at as u64);
                self.window.drain(..at);
                self.window_at += at as u64;
            }
        }
        if let Some(body_at) = self.body_at {
            // Body bytes are those of the window from `body_at` on.
            let have = self.body.len() as u64;
            let win_from = (body_at + have).saturating_sub(self.window_at) as usize;
            if self.body.len() < self.max + self.end_mark.len() + 16 {
                let room = self.max + self.end_mark.len() + 16 - self.body.len();
                let new = &self.window[win_from.min(self.window.len())..];
                self.body.extend_from_slice(&new[..new.len().min(room)]);
            }
            if let Some(i) = find(&self.window, &self.end_mark) {
                let digits = &self.window[i + self.end_mark.len()..];
                if let Some(stop) = digits.iter().position(|&b| b == 0x07) {
                    let code = std::str::from_utf8(&digits[..stop])
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(-1);
                    self.end = Some((self.window_at + i as u64, code));
                    return true;
                }
                // The code is not all here yet: keep the marker.
                return false;
            }
        }
        // Keep a marker's length of the window, for one cut in two.
        let keep = self.start_mark.len().max(self.end_mark.len()) + 16;
        if self.window.len() > keep {
            let cut = self.window.len() - keep;
            self.window.drain(..cut);
            self.window_at += cut as u64;
        }
        false
    }

    fn result(self, timed_out: bool, fallback: Offset) -> Ran {
        let from = self.body_at.unwrap_or(fallback.0);
        let to = self.end.map_or(self.seen.max(from), |(at, _)| at);
        let len = ((to - from) as usize).min(self.body.len());
        let truncated = len > self.max;
        let raw = &self.body[..len.min(self.max)];
        Ran {
            output: String::from_utf8_lossy(&tether_proto::plain::plain(raw)).into_owned(),
            exit_code: self.end.map(|(_, c)| c),
            from: Offset(from),
            to: Offset(to),
            truncated,
            awaiting_input: self.awaiting,
            timed_out,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_the_shell() {
        assert_eq!(quote("echo 'a' b", false), r"'echo '\''a'\'' b'");
        assert_eq!(quote("echo 'a' \\", true), r"'echo \'a\' \\'");
        assert_eq!(quote("a\tb", false), r#"'a'"$(printf '\011')"'b'"#);
        assert_eq!(quote("a\tb", true), r"'a'(printf '\011')'b'");
        assert_eq!(quote("x\ny", false), "'x\ny'");
    }

    fn scan_all(chunks: &[&[u8]], max: usize) -> Ran {
        let mut sc = Scan::new(b"<S>".to_vec(), b"<E;".to_vec(), max);
        let mut at = 100;
        for c in chunks {
            if sc.feed(Offset(at), c) {
                break;
            }
            at += c.len() as u64;
        }
        sc.result(false, Offset(100))
    }

    #[test]
    fn output_between_the_markers_wherever_they_are_cut() {
        // The echo holds text like the markers, never the markers.
        let all: &[u8] = b"echo of <S line\r\n<S>hello <E not\r\n<E;7\x07$ ";
        for cut in 0..all.len() {
            let r = scan_all(&[&all[..cut], &all[cut..]], 1000);
            assert_eq!(r.output, "hello <E not\n", "cut at {cut}");
            assert_eq!(r.exit_code, Some(7));
            assert_eq!((r.from, r.to), (Offset(100 + 20), Offset(100 + 34)));
        }
    }

    #[test]
    fn long_output_is_cut_and_says_so() {
        let r = scan_all(&[b"<S>0123456789<E;0\x07"], 4);
        assert_eq!((r.output.as_str(), r.truncated), ("0123", true));
        assert_eq!(r.to.0 - r.from.0, 10);
    }
}
