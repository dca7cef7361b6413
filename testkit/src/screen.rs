//! Screens as a terminal shows them, for tests that check what a client
//! draws, cell by cell.
//!
//! - [`Vt`]: a terminal emulator (avt, the one the node runs) fed raw
//!   bytes, as a user's terminal would take them from a program.
//! - [`Grid`]: what a terminal shows: every cell's character and pen, the
//!   cursor, which screen is active; two grids compare with `==` and
//!   [`Grid::diff`] says where they differ.
//! - [`Witness`]: a `tether tail --from 0 --follow --json` of a session,
//!   every byte of its output fed to a [`Vt`]: the screen of a terminal
//!   that saw the whole stream, at a known offset, to hold a snapshot and
//!   the node's own screen against.
//!
//! A witness does not see resizes: it is right while the session keeps
//! the size it started with (clients attach at that size).

use crate::proc::{describe, KillOnDrop};
use anyhow::{bail, Context};
use base64::Engine;
use std::fmt::Write as _;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most differences [`Grid::diff`] lists.
const MAX_DIFFS: usize = 12;

/// A terminal emulator fed raw bytes: UTF-8 decoded across feeds, an
/// invalid byte shown as U+FFFD.
pub struct Vt {
    term: avt::Terminal,
    /// Bytes of a character cut at the end of the last feed.
    partial: Vec<u8>,
}

impl Vt {
    /// A terminal of `cols` x `rows` (both at least 1).
    pub fn new(cols: u16, rows: u16) -> Vt {
        Vt {
            term: avt::Terminal::new(cols.max(1) as usize, rows.max(1) as usize)
                .expect("a size of at least 1x1"),
            partial: Vec::new(),
        }
    }

    /// Takes more output.
    pub fn feed(&mut self, bytes: &[u8]) {
        tether_node::screen::feed_utf8(&mut self.term, &mut self.partial, bytes);
    }

    /// What it shows now.
    pub fn grid(&self) -> Grid {
        let (cols, rows) = self.term.size();
        let cells = self
            .term
            .screen()
            .visible_lines()
            .map(|l| l.cells().iter().map(|c| (c.char(), *c.pen())).collect())
            .collect();
        let c = self.term.cursor();
        Grid {
            cols,
            rows,
            cells,
            cursor: (c.col, c.row),
            cursor_visible: c.visible,
            alternate: self.term.active_screen_kind() == avt::ScreenKind::Alternate,
        }
    }
}

/// What a terminal shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub cols: usize,
    pub rows: usize,
    /// Each visible row's cells: character and pen (colours, attributes).
    pub cells: Vec<Vec<(char, avt::Pen)>>,
    /// Cursor column and row (0-based), also when hidden.
    pub cursor: (usize, usize),
    pub cursor_visible: bool,
    /// The alternate screen is active (a full-screen program runs).
    pub alternate: bool,
}

impl Grid {
    /// Each row's text, trailing blanks trimmed (as `tether screen` has
    /// them).
    pub fn lines(&self) -> Vec<String> {
        self.cells
            .iter()
            .map(|row| {
                let s: String = row.iter().map(|&(c, _)| c).collect();
                s.trim_end().to_string()
            })
            .collect()
    }

    /// The cursor as `tether screen` has it: only when visible.
    pub fn visible_cursor(&self) -> Option<(usize, usize)> {
        self.cursor_visible.then_some(self.cursor)
    }

    /// The rows, numbered, with the cursor and the screen, for a message.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}x{} {} screen, cursor {:?}{}\n",
            self.cols,
            self.rows,
            if self.alternate {
                "alternate"
            } else {
                "primary"
            },
            self.cursor,
            if self.cursor_visible { "" } else { " (hidden)" }
        );
        for (i, l) in self.lines().iter().enumerate() {
            let _ = writeln!(out, "{i:3}|{l}");
        }
        out
    }

    /// Where `self` and `other` differ (the first few cells), empty if
    /// nowhere.
    pub fn diff(&self, other: &Grid) -> Vec<String> {
        let mut d = Vec::new();
        if (self.cols, self.rows) != (other.cols, other.rows) {
            d.push(format!(
                "size {}x{} vs {}x{}",
                self.cols, self.rows, other.cols, other.rows
            ));
        }
        if self.alternate != other.alternate {
            d.push(format!(
                "alternate screen {} vs {}",
                self.alternate, other.alternate
            ));
        }
        if (self.cursor, self.cursor_visible) != (other.cursor, other.cursor_visible) {
            d.push(format!(
                "cursor {:?} (visible {}) vs {:?} (visible {})",
                self.cursor, self.cursor_visible, other.cursor, other.cursor_visible
            ));
        }
        let cells = self.cells.iter().zip(&other.cells).enumerate();
        for (r, (a, b)) in cells {
            for (c, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y && d.len() < MAX_DIFFS {
                    d.push(format!("cell ({c}, {r}): {x:?} vs {y:?}"));
                }
            }
        }
        d
    }
}

/// What the witness's reader has seen.
struct Seen {
    vt: Vt,
    /// Every byte, from offset 0.
    bytes: Vec<u8>,
    /// Why the witness is no good (a gap, a broken line), if it is not.
    error: Option<String>,
}

/// Every byte of a session's output, from offset 0, on a [`Vt`]; see the
/// module's doc. Its `tether tail` is killed on drop.
pub struct Witness {
    seen: Arc<Mutex<Seen>>,
    size: (u16, u16),
    _tail: KillOnDrop,
}

impl Witness {
    /// Runs `tether ... tail TARGET --from 0 --follow --json` (`tail` is
    /// the command up to `tail`'s options, e.g. `tether --state-dir D tail
    /// NAME`) and feeds what it prints to a terminal of `size` (columns,
    /// rows). Fails later ([`Witness::grid`]) if the session's output no
    /// longer starts at offset 0, or has a gap.
    pub fn start(mut tail: Command, size: (u16, u16)) -> anyhow::Result<Witness> {
        tail.args(["--from", "0", "--follow", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let what = describe(&tail);
        let mut child = KillOnDrop(tail.spawn().with_context(|| format!("starting {what}"))?);
        let stdout = child.stdout.take().context("the witness's stdout")?;
        let seen = Arc::new(Mutex::new(Seen {
            vt: Vt::new(size.0, size.1),
            bytes: Vec::new(),
            error: None,
        }));
        let theirs = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = theirs.lock().expect("witness lock");
                if s.error.is_some() {
                    break;
                }
                if let Err(e) = take_line(&mut s, &line) {
                    s.error = Some(format!("{e:#}"));
                }
            }
        });
        Ok(Witness {
            seen,
            size,
            _tail: child,
        })
    }

    /// Offset of the next byte it expects: how much output it has seen.
    pub fn offset(&self) -> u64 {
        self.seen.lock().expect("witness lock").bytes.len() as u64
    }

    /// The screen after every byte seen, and their count; an error if the
    /// witness missed output.
    pub fn grid(&self) -> anyhow::Result<(u64, Grid)> {
        let s = self.seen.lock().expect("witness lock");
        if let Some(e) = &s.error {
            bail!("the witness missed output: {e}");
        }
        Ok((s.bytes.len() as u64, s.vt.grid()))
    }

    /// The screen after the first `offset` bytes, if it has seen them.
    pub fn grid_at(&self, offset: u64) -> Option<Grid> {
        let s = self.seen.lock().expect("witness lock");
        let bytes = s.bytes.get(..usize::try_from(offset).ok()?)?;
        let mut vt = Vt::new(self.size.0, self.size.1);
        vt.feed(bytes);
        Some(vt.grid())
    }

    /// Waits until it has seen `offset` bytes, at most `timeout`.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> anyhow::Result<()> {
        crate::wait::poll_until(
            &format!("the witness to see output up to {offset}"),
            timeout,
            || {
                let s = self.seen.lock().expect("witness lock");
                if let Some(e) = &s.error {
                    bail!("the witness missed output: {e}");
                }
                Ok(s.bytes.len() as u64 >= offset)
            },
        )
    }
}

/// One line of `tail --json`: output at the next offset, else an error.
fn take_line(s: &mut Seen, line: &str) -> anyhow::Result<()> {
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
    if v.get("gap").is_some() {
        bail!("a gap: {line} (it read too slowly)");
    }
    if v.get("end").is_some() {
        return Ok(());
    }
    let offset = v["offset"].as_u64().context("no offset")?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(v["base64"].as_str().context("no base64")?)
        .context("bad base64")?;
    if offset != s.bytes.len() as u64 {
        bail!(
            "output at {offset}, expected {} (the ring had wrapped before it started?)",
            s.bytes.len()
        );
    }
    s.vt.feed(&data);
    s.bytes.extend_from_slice(&data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_compare_cell_by_cell() {
        let mut a = Vt::new(10, 3);
        a.feed("h\u{e9}llo\r\n\x1b[1mbo".as_bytes());
        // A character cut between feeds is still one character.
        let mut b = Vt::new(10, 3);
        let all = "h\u{e9}llo\r\n\x1b[1mbo".as_bytes();
        b.feed(&all[..2]);
        b.feed(&all[2..]);
        assert_eq!(a.grid(), b.grid());
        assert_eq!(a.grid().lines(), ["h\u{e9}llo", "bo", ""]);
        // The same text in another pen differs.
        let mut c = Vt::new(10, 3);
        c.feed("h\u{e9}llo\r\nbo".as_bytes());
        assert_eq!(c.grid().lines(), a.grid().lines());
        let d = a.grid().diff(&c.grid());
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("cell (0, 1)"), "{d:?}");
        c.feed(b"\x1b[?1049h");
        assert!(c.grid().alternate);
        assert!(a.grid().diff(&c.grid())[0].contains("alternate"));
    }
}
