//! Terminal output as plain text: escape sequences and control characters
//! removed, for `read --plain`, `wait --pattern` and agents that want the
//! words, not the drawing.
//!
//! [`Plain`] is a streaming filter: a sequence split across two chunks of
//! output is still removed whole, so the text does not depend on where the
//! output was cut.

/// Where the filter is inside a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// After ESC and an intermediate byte (`ESC ( B`).
    EscInter,
    /// Inside `ESC [` ... final byte.
    Csi,
    /// Inside a string (OSC, DCS, SOS, PM, APC) up to BEL or ST.
    Str,
    /// ESC inside a string: ST if a backslash follows.
    StrEsc,
    /// After CR: dropped if LF follows, else a line end of its own.
    Cr,
}

/// A streaming filter from terminal output to plain text.
#[derive(Debug, Clone, Default)]
pub struct Plain {
    state: State,
}

impl Plain {
    /// A filter at the start of a stream.
    pub fn new() -> Plain {
        Plain::default()
    }

    /// Appends the text of `input` to `out`: printable characters, tabs
    /// and line ends (CR LF and a lone CR become LF); escape sequences and
    /// other control characters go. Bytes from 0x80 up pass unchanged, so
    /// UTF-8 text stays text (a character split across two calls joins up
    /// in `out`); a reader decodes `out` as UTF-8, lossily.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Cr, b'\n') => {
                    out.push(b'\n');
                    State::Ground
                }
                (State::Cr, _) => {
                    out.push(b'\n');
                    self.ground(b, out)
                }
                (State::Ground, _) => self.ground(b, out),
                (State::Esc, b'[') => State::Csi,
                (State::Esc, b']' | b'P' | b'X' | b'^' | b'_') => State::Str,
                (State::Esc, 0x20..=0x2f) => State::EscInter,
                (State::Esc | State::EscInter, 0x18 | 0x1a) => State::Ground,
                (State::Esc | State::EscInter, 0x1b) => State::Esc,
                (State::Esc | State::EscInter, 0x00..=0x1f) => State::Esc,
                (State::EscInter, 0x20..=0x2f) => State::EscInter,
                (State::Esc | State::EscInter, _) => State::Ground,
                (State::Csi, 0x40..=0x7e) => State::Ground,
                (State::Csi, 0x1b) => State::Esc,
                (State::Csi, 0x18 | 0x1a) => State::Ground,
                (State::Csi, _) => State::Csi,
                (State::Str, 0x07) => State::Ground,
                (State::Str, 0x1b) => State::StrEsc,
                (State::Str, 0x18 | 0x1a) => State::Ground,
                (State::Str, _) => State::Str,
                (State::StrEsc, b'\\') => State::Ground,
                (State::StrEsc, 0x1b) => State::StrEsc,
                (State::StrEsc, _) => State::Str,
            };
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) -> State {
        match b {
            0x1b => State::Esc,
            b'\r' => State::Cr,
            b'\n' | b'\t' => {
                out.push(b);
                State::Ground
            }
            0x00..=0x1f | 0x7f => State::Ground,
            _ => {
                out.push(b);
                State::Ground
            }
        }
    }

    /// The filter is between sequences: not inside an escape sequence, nor
    /// after a CR that a LF may still join.
    pub fn at_rest(&self) -> bool {
        self.state == State::Ground
    }

    /// Ends the stream: a CR left at the very end counts as a line end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Cr {
            out.push(b'\n');
        }
        self.state = State::Ground;
    }
}

/// The plain text of a whole output at once.
pub fn plain(input: &[u8]) -> Vec<u8> {
    let mut p = Plain::new();
    let mut out = Vec::with_capacity(input.len());
    p.feed(input, &mut out);
    p.finish(&mut out);
    out
}

/// The length of the longest prefix of `input` (output that starts between
/// sequences) that does not end inside an escape sequence or right after a
/// CR: where a page of output can end so that the plain text of the pages,
/// each filtered on its own, is the plain text of the whole. `input.len()`
/// when it ends at rest; 0 when it ends inside a sequence that starts at 0.
pub fn whole_prefix(input: &[u8]) -> usize {
    let mut p = Plain::new();
    let mut sink = Vec::new();
    let mut whole = 0;
    for (i, b) in input.iter().enumerate() {
        p.feed(std::slice::from_ref(b), &mut sink);
        sink.clear();
        if p.at_rest() {
            whole = i + 1;
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_prefixes_end_between_sequences() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"abc", 3),
            (b"ab\x1b[?20", 2),
            (b"ab\x1b]0;ti", 2),
            (b"ab\r", 2),
            (b"ab\r\n", 4),
            (b"\x1b[1m", 4),
            (b"\x1b[1", 0),
            (b"a\x1b", 1),
        ];
        for (input, want) in cases {
            assert_eq!(
                whole_prefix(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn sequences_and_controls_go() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"\x1b[31mred\x1b[0m\r\n", b"red\n"),
            (b"\x1b]0;title\x07$ ls\r\n", b"$ ls\n"),
            (b"\x1b]2;t\x1b\\x", b"x"),
            (b"\x1b[?1049h\x1b[H\x1b[2Jvim", b"vim"),
            (b"\x1b(Bplain\x1b=", b"plain"),
            (b"a\rb", b"a\nb"),
            (b"tab\there\x08\x07", b"tab\there"),
            (b"\x1bP1$r0m\x1b\\ok", b"ok"),
            (
                "h\u{e9}llo \u{1f600}".as_bytes(),
                "h\u{e9}llo \u{1f600}".as_bytes(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(plain(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    proptest! {
        /// Where the output is cut does not change the text.
        #[test]
        fn splitting_does_not_change_the_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"\x1b[1;31m".to_vec()),
                    Just(b"\x1b]0;x\x07".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"\x1b(B".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ],
                0..20,
            ),
            cut in 0usize..200,
        ) {
            let all: Vec<u8> = parts.concat();
            let cut = cut.min(all.len());
            let mut p = Plain::new();
            let mut out = Vec::new();
            p.feed(&all[..cut], &mut out);
            p.feed(&all[cut..], &mut out);
            p.finish(&mut out);
            prop_assert_eq!(out, plain(&all));
        }

        /// Pages cut where `whole_prefix` says have, filtered one by one,
        /// the text of the whole output (sequences shorter than a page).
        #[test]
        fn pages_cut_at_whole_prefixes_keep_the_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"\x1b[?2004h".to_vec()),
                    Just(b"\x1b]0;title\x07".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"\r".to_vec()),
                    Just(b"\x1b(B".to_vec()),
                    Just("\u{e9}\u{1f600}".as_bytes().to_vec()),
                    // Any bytes but ESC, which could open a sequence that
                    // never ends.
                    proptest::collection::vec(any::<u8>().prop_filter("no ESC", |b| *b != 0x1b), 0..8),
                ],
                0..30,
            ),
            page in 12usize..40,
        ) {
            let all: Vec<u8> = parts.concat();
            let mut text = Vec::new();
            let mut at = 0;
            while at < all.len() {
                let end = (at + page).min(all.len());
                let mut len = end - at;
                if end < all.len() {
                    len = whole_prefix(&all[at..end]);
                    // A sequence (or run of CRs) longer than a page.
                    prop_assume!(len > 0);
                }
                let mut p = Plain::new();
                p.feed(&all[at..at + len], &mut text);
                at += len;
            }
            let mut p = Plain::new();
            let mut want = Vec::new();
            p.feed(&all, &mut want);
            prop_assert_eq!(text, want);
        }

        /// No escape or control byte other than tab and newline survives.
        #[test]
        fn only_text_survives(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let out = plain(&input);
            prop_assert!(out.iter().all(|&b| b == b'\n' || b == b'\t' || (b >= 0x20 && b != 0x7f)));
        }
    }
}
