//! A session's screen, rebuilt from its output by a terminal emulator
//! (avt), for `tether screen` and for the exact redraw of an attach.
//!
//! [`Emulator`] is pure: bytes and resizes in, at the offsets where they
//! happened; screen text and snapshots out. The keeper runs it on a thread
//! of its own ([`crate::keeper`]), behind the ring, so that parsing never
//! slows the output stream.
//!
//! # Snapshot
//! A snapshot is escape codes that bring a client's terminal, whatever it
//! showed before, to the session's screen at one offset:
//! 1. leave the alternate screen and reset the modes (the terminal may
//!    hold another program's state);
//! 2. print the last lines of history, then scroll them off the top into
//!    the terminal's own scrollback;
//! 3. clear, and set the tracked modes and the title ([`modes`]);
//! 4. avt's dump: the primary screen, the alternate screen over it when a
//!    full-screen program runs, the cursor, the modes avt keeps, and any
//!    escape sequence left half-written (it must come last, so that the
//!    live output after the offset completes it).

mod modes;
#[cfg(test)]
mod tests;

use avt::{Color, Pen, Terminal};
use modes::Modes;
use tether_proto::{Offset, ScreenState, WinSize};

/// A session's screen as of one offset of its output.
pub struct Emulator {
    term: Terminal,
    modes: Modes,
    /// Bytes of a UTF-8 character cut at the end of the last feed.
    partial: Vec<u8>,
    /// Offset of the next byte to feed.
    offset: Offset,
    /// Bytes skipped since the start ([`Emulator::skip_to`]).
    skipped: u64,
    size: WinSize,
}

impl Emulator {
    /// An emulator of a terminal of `size` whose output starts at
    /// `offset`, keeping `history` lines that scrolled off the primary
    /// screen.
    pub fn new(size: WinSize, history: u32, offset: Offset) -> Emulator {
        let (cols, rows) = dims(size);
        Emulator {
            term: Terminal::with_scrollback(cols, rows, Some(history as usize))
                .expect("dims are at least 1x1"),
            modes: Modes::default(),
            partial: Vec::new(),
            offset,
            skipped: 0,
            size: WinSize {
                cols: cols as u16,
                rows: rows as u16,
            },
        }
    }

    /// Offset of the next byte it expects.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// The offset its screen reflects: every byte before it and none
    /// after. Before [`Emulator::offset`] by the bytes of a UTF-8
    /// character cut at the end of the last feed, which it holds back
    /// (output sent from here repeats them, whole).
    pub fn screen_offset(&self) -> Offset {
        Offset(self.offset.0 - self.partial.len() as u64)
    }

    /// Bytes skipped since the start.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Takes the output from [`Emulator::offset`] on.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.offset = Offset(self.offset.0 + bytes.len() as u64);
        self.modes.feed(bytes);
        feed_utf8(&mut self.term, &mut self.partial, bytes);
    }

    /// Output up to `offset` is gone (the emulator fell more than a ring
    /// behind): go on from there, counting what was skipped.
    pub fn skip_to(&mut self, offset: Offset) {
        if offset.0 > self.offset.0 {
            self.skipped += offset.0 - self.offset.0;
            self.offset = offset;
            self.partial.clear();
        }
    }

    /// The window changed size (at the current offset).
    pub fn resize(&mut self, size: WinSize) {
        let (cols, rows) = dims(size);
        self.term.resize(cols, rows);
        self.size = WinSize {
            cols: cols as u16,
            rows: rows as u16,
        };
    }

    /// The window size it emulates.
    pub fn size(&self) -> WinSize {
        self.size
    }

    /// The visible screen as text.
    pub fn state(&self) -> ScreenState {
        let screen = self.term.screen();
        let lines = screen
            .visible_lines()
            .map(|l| l.text().trim_end().to_string())
            .collect();
        let cursor = self
            .term
            .cursor()
            .position()
            .map(|(c, r)| (c as u16, r as u16));
        ScreenState {
            cols: self.size.cols,
            rows: self.size.rows,
            lines,
            cursor,
            title: self.modes.title().map(str::to_string),
            alternate: self.term.active_screen_kind() == avt::ScreenKind::Alternate,
            offset: self.screen_offset(),
            skipped: self.skipped,
        }
    }

    /// Escape codes that redraw the screen on a terminal of its size (see
    /// the [module documentation](self)), with at most `history` lines of
    /// what scrolled off before it.
    pub fn snapshot(&self, history: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // 1. Whatever the terminal showed: primary screen, default modes,
        // no margins, default pen, autowrap on, cursor shown.
        out.extend_from_slice(b"\x1b[?1049l\x1b[0m\x1b[r\x1b[?6l\x1b[?7h\x1b[?25h\x1b[4l\x1b[?1l");
        Modes::reset_codes(&mut out);
        out.extend_from_slice(b"\x1b(B\x0f\x1b[H\x1b[2J");
        // 2. History, scrolled into the terminal's scrollback.
        let primary = self.term.primary_screen();
        let total = primary.all_lines().count();
        let visible = self.size.rows as usize;
        let kept = total.saturating_sub(visible);
        let from = kept.saturating_sub(history as usize);
        let mut printed = 0usize;
        for line in primary.all_lines().skip(from).take(kept - from) {
            render_line(line, &mut out);
            out.extend_from_slice(b"\x1b[0m\r\n");
            printed += 1;
        }
        if printed > 0 {
            let on_screen = printed.min(visible - 1);
            out.extend_from_slice(format!("\x1b[{visible};1H").as_bytes());
            out.extend(std::iter::repeat_n(b'\n', on_screen + 1));
            out.extend_from_slice(b"\x1b[H\x1b[2J");
        }
        // 3. Modes avt does not keep, and the title.
        self.modes.restore_codes(&mut out);
        // 4. The screens, cursor and modes as avt has them; last.
        out.extend_from_slice(self.term.dump().as_bytes());
        out
    }
}

/// Feeds output bytes to an avt terminal, which takes text: UTF-8 decoded
/// across feeds (`partial` holds a character cut at the end of the last
/// one), an invalid byte shown as U+FFFD, as a terminal shows it.
pub fn feed_utf8(term: &mut Terminal, partial: &mut Vec<u8>, bytes: &[u8]) {
    let joined;
    let mut rest = if partial.is_empty() {
        bytes
    } else {
        let mut j = std::mem::take(partial);
        j.extend_from_slice(bytes);
        joined = j;
        &joined[..]
    };
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                term.feed(s);
                return;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                term.feed(std::str::from_utf8(good).expect("the valid prefix"));
                match e.error_len() {
                    Some(n) => {
                        term.feed('\u{fffd}');
                        rest = &bad[n..];
                    }
                    None => {
                        // A character cut at the end: wait for the rest.
                        *partial = bad.to_vec();
                        return;
                    }
                }
            }
        }
    }
}

fn dims(size: WinSize) -> (usize, usize) {
    (size.cols.max(1) as usize, size.rows.max(1) as usize)
}

/// Appends one line of history with its colours and attributes.
fn render_line(line: &avt::Line, out: &mut Vec<u8>) {
    let cells = line.cells();
    // Trailing blanks in the default pen are not worth sending.
    let end = cells
        .iter()
        .rposition(|c| c.char() != ' ' || !c.pen().is_default())
        .map_or(0, |i| i + 1);
    let mut pen: Option<&Pen> = None;
    for cell in &cells[..end] {
        if cell.width() == 0 {
            // The second half of a wide character.
            continue;
        }
        if pen != Some(cell.pen()) {
            sgr(cell.pen(), out);
            pen = Some(cell.pen());
        }
        let mut b = [0u8; 4];
        out.extend_from_slice(cell.char().encode_utf8(&mut b).as_bytes());
    }
}

/// Appends the SGR sequence that sets `pen` from scratch.
fn sgr(pen: &Pen, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\x1b[0");
    let flags = [
        (pen.is_bold(), ";1"),
        (pen.is_faint(), ";2"),
        (pen.is_italic(), ";3"),
        (pen.is_underline(), ";4"),
        (pen.is_blink(), ";5"),
        (pen.is_inverse(), ";7"),
        (pen.is_strikethrough(), ";9"),
    ];
    for (on, code) in flags {
        if on {
            out.extend_from_slice(code.as_bytes());
        }
    }
    for (color, base) in [(pen.foreground(), 38), (pen.background(), 48)] {
        match color {
            Some(Color::Indexed(i)) => {
                out.extend_from_slice(format!(";{base};5;{i}").as_bytes());
            }
            Some(Color::RGB(c)) => {
                out.extend_from_slice(format!(";{base};2;{};{};{}", c.r, c.g, c.b).as_bytes());
            }
            None => {}
        }
    }
    out.push(b'm');
}
