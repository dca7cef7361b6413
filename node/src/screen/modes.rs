//! The terminal state avt does not keep, tracked from the same output:
//! mouse reporting, bracketed paste, focus events, the keypad mode and the
//! window title. A client attaching to a full-screen program needs them
//! restored as much as the cells: without bracketed paste a paste into
//! vim is typed as keys, without mouse reporting clicks go nowhere.
//!
//! A small byte-level parser of its own, bounded in what it holds: it
//! only looks at `CSI ? Pn ; ... h/l`, `ESC =`, `ESC >`, `ESC c` and
//! `OSC 0/2 ; title`.

/// Private modes (DECSET numbers) tracked, in the order they are restored.
const TRACKED: [u16; 9] = [1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004, 1007];
/// Longest title kept, in bytes; a longer OSC is ignored.
const MAX_TITLE: usize = 1024;
/// Longest CSI parameter string looked at.
const MAX_PARAMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    Osc,
    OscEsc,
}

/// Modes and title, as the output left them.
#[derive(Debug, Clone)]
pub struct Modes {
    state: State,
    /// Parameter bytes of the current CSI (`?` included).
    params: Vec<u8>,
    /// Payload of the current OSC.
    osc: Vec<u8>,
    /// Bit i: `TRACKED[i]` is set.
    set: u16,
    /// Application keypad (`ESC =`).
    keypad: bool,
    title: Option<String>,
}

impl Default for Modes {
    fn default() -> Self {
        Modes {
            state: State::Ground,
            params: Vec::new(),
            osc: Vec::new(),
            set: 0,
            keypad: false,
            title: None,
        }
    }
}

impl Modes {
    /// Takes more output.
    pub fn feed(&mut self, input: &[u8]) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Ground, 0x1b) => State::Esc,
                (State::Ground, _) => State::Ground,
                (State::Esc, b'[') => {
                    self.params.clear();
                    State::Csi
                }
                (State::Esc, b']') => {
                    self.osc.clear();
                    State::Osc
                }
                (State::Esc, b'=') => {
                    self.keypad = true;
                    State::Ground
                }
                (State::Esc, b'>') => {
                    self.keypad = false;
                    State::Ground
                }
                (State::Esc, b'c') => {
                    // RIS: every mode back to its default (the title stays,
                    // as in xterm).
                    self.set = 0;
                    self.keypad = false;
                    State::Ground
                }
                (State::Esc, 0x1b) => State::Esc,
                (State::Esc, _) => State::Ground,
                (State::Csi, 0x30..=0x3f) => {
                    if self.params.len() < MAX_PARAMS {
                        self.params.push(b);
                    }
                    State::Csi
                }
                (State::Csi, b'h' | b'l') => {
                    self.decset(b == b'h');
                    State::Ground
                }
                (State::Csi, 0x20..=0x2f) => State::Csi,
                (State::Csi, 0x1b) => State::Esc,
                (State::Csi, _) => State::Ground,
                (State::Osc, 0x07) => {
                    self.osc_end();
                    State::Ground
                }
                (State::Osc, 0x1b) => State::OscEsc,
                (State::Osc, 0x18 | 0x1a) => State::Ground,
                (State::Osc, _) => {
                    if self.osc.len() <= MAX_TITLE + 2 {
                        self.osc.push(b);
                    }
                    State::Osc
                }
                (State::OscEsc, b'\\') => {
                    self.osc_end();
                    State::Ground
                }
                (State::OscEsc, b'[') => {
                    self.params.clear();
                    State::Csi
                }
                (State::OscEsc, _) => State::Ground,
            };
        }
    }

    fn decset(&mut self, on: bool) {
        let Some(rest) = self.params.strip_prefix(b"?") else {
            return;
        };
        for p in rest.split(|&c| c == b';') {
            let Some(n) = std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            else {
                continue;
            };
            if let Some(i) = TRACKED.iter().position(|&m| m == n) {
                if on {
                    self.set |= 1 << i;
                } else {
                    self.set &= !(1 << i);
                }
            }
        }
    }

    fn osc_end(&mut self) {
        if self.osc.len() > MAX_TITLE + 2 {
            return;
        }
        let (kind, text) = match self.osc.iter().position(|&c| c == b';') {
            Some(i) => (&self.osc[..i], &self.osc[i + 1..]),
            None => return,
        };
        if kind == b"0" || kind == b"2" {
            self.title = Some(String::from_utf8_lossy(text).into_owned()).filter(|t| !t.is_empty());
        }
    }

    /// The window title the program set, if any.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Escape codes that turn every tracked mode off: the state a terminal
    /// starts in.
    pub fn reset_codes(out: &mut Vec<u8>) {
        for m in TRACKED {
            out.extend_from_slice(format!("\x1b[?{m}l").as_bytes());
        }
        out.extend_from_slice(b"\x1b>");
    }

    /// Escape codes that set the modes and title as they are now, on a
    /// terminal in its starting state.
    pub fn restore_codes(&self, out: &mut Vec<u8>) {
        for (i, m) in TRACKED.iter().enumerate() {
            if self.set & (1 << i) != 0 {
                out.extend_from_slice(format!("\x1b[?{m}h").as_bytes());
            }
        }
        if self.keypad {
            out.extend_from_slice(b"\x1b=");
        }
        if let Some(t) = &self.title {
            out.extend_from_slice(b"\x1b]2;");
            // No control characters, C1 included (U+009C is ST): the title
            // cannot end its own OSC.
            let clean: String = t.chars().filter(|c| !c.is_control()).collect();
            out.extend_from_slice(clean.as_bytes());
            out.push(0x07);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(input: &[u8]) -> Vec<u8> {
        let mut m = Modes::default();
        // Byte by byte: a sequence cut anywhere is still understood.
        for b in input {
            m.feed(std::slice::from_ref(b));
        }
        let mut out = Vec::new();
        m.restore_codes(&mut out);
        out
    }

    #[test]
    fn modes_and_title_are_restored() {
        assert_eq!(
            after(b"\x1b[?1000;1006h\x1b[?2004h\x1b]0;vim: notes\x07x"),
            b"\x1b[?1000h\x1b[?1006h\x1b[?2004h\x1b]2;vim: notes\x07"
        );
        assert_eq!(after(b"\x1b[?2004h\x1b[?2004l"), b"");
        assert_eq!(after(b"\x1b=\x1b]2;t\x1b\\"), b"\x1b=\x1b]2;t\x07");
        assert_eq!(after(b"\x1b[?1000h\x1bc"), b"");
        // Not private, or not tracked: nothing.
        assert_eq!(after(b"\x1b[1000h\x1b[?25l\x1b[?1049h"), b"");
    }

    #[test]
    fn hostile_titles_are_bounded_and_cannot_escape() {
        let mut long = b"\x1b]2;".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100_000));
        long.push(7);
        assert_eq!(after(&long), b"");
        assert_eq!(after(b"\x1b]2;a\x1bb\x07"), b"");
        // ST as a C1 character (U+009C in UTF-8), and CSI (U+009B).
        let mut m = Modes::default();
        m.feed("\x1b]2;x\u{9c}\u{9b}2Jy\x07".as_bytes());
        let mut out = Vec::new();
        m.restore_codes(&mut out);
        assert_eq!(out, b"\x1b]2;x2Jy\x07");
    }
}
