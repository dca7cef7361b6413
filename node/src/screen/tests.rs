use super::*;
use proptest::prelude::*;

fn size(cols: u16, rows: u16) -> WinSize {
    WinSize { cols, rows }
}

/// What a person sees: cells (char and pen) of every visible row, the
/// cursor, and whether the alternate screen is on.
type Seen = (Vec<Vec<(char, Pen)>>, Option<(usize, usize)>, bool);

fn seen(t: &Terminal) -> Seen {
    let rows = t
        .screen()
        .visible_lines()
        .map(|l| l.cells().iter().map(|c| (c.char(), *c.pen())).collect())
        .collect();
    (
        rows,
        t.cursor().position(),
        t.active_screen_kind() == avt::ScreenKind::Alternate,
    )
}

/// A client terminal that drew the snapshot of `e`.
fn client_of(e: &Emulator, history: u32) -> Terminal {
    let s = e.size();
    let mut t = Terminal::with_scrollback(s.cols as usize, s.rows as usize, Some(1000)).unwrap();
    // What the client showed before: another program's screen and modes.
    t.feed("\x1b[?1049hold junk\x1b[5;5Hmore\x1b[?1h");
    t.feed(String::from_utf8(e.snapshot(history)).unwrap().as_str());
    t
}

fn emulate(size: WinSize, chunks: &[&[u8]]) -> (Emulator, Terminal) {
    let mut e = Emulator::new(size, 100, Offset(0));
    let mut direct =
        Terminal::with_scrollback(size.cols as usize, size.rows as usize, Some(100)).unwrap();
    for c in chunks {
        e.feed(c);
        direct.feed(String::from_utf8_lossy(c).as_ref());
    }
    (e, direct)
}

#[test]
fn a_full_screen_program_is_redrawn_exactly_and_its_exit_restores_the_shell() {
    let shell = b"$ ls\r\nCargo.toml  src\r\n$ \x1b[32mvim\x1b[0m notes\r\n";
    let vim = b"\x1b[?1049h\x1b[?2004h\x1b[?1000h\x1b]2;notes - VIM\x07\x1b[H\x1b[2J\x1b[1mline one\x1b[0m\r\n~\r\n~\x1b[3;1H\x1b[7m-- INSERT --\x1b[0m\x1b[1;5H";
    let (e, _) = emulate(size(40, 6), &[shell, vim]);
    let mut client = client_of(&e, 50);
    let mut reference = Terminal::new(40, 6).unwrap();
    reference.feed(String::from_utf8_lossy(&[&shell[..], &vim[..]].concat()).as_ref());
    assert_eq!(seen(&client), seen(&reference));
    let st = e.state();
    assert!(st.alternate);
    assert_eq!(st.title.as_deref(), Some("notes - VIM"));
    assert_eq!(st.lines[0], "line one");
    assert_eq!(st.cursor, Some((4, 0)));
    let snap = e.snapshot(0);
    for mode in [
        &b"\x1b[?2004h"[..],
        b"\x1b[?1000h",
        b"\x1b]2;notes - VIM\x07",
    ] {
        assert!(
            snap.windows(mode.len()).any(|w| w == mode),
            "{mode:?} restored"
        );
    }
    // Quitting vim shows the shell's screen again, on both.
    let quit = "\x1b[?1049l\x1b[?2004l$ ";
    client.feed(quit);
    reference.feed(quit);
    assert_eq!(seen(&client), seen(&reference));
    assert!(seen(&client).0[2].iter().any(|(c, _)| *c == 'v'));
}

#[test]
fn history_goes_into_the_client_scrollback_not_on_screen() {
    let mut out = Vec::new();
    for i in 0..30 {
        out.extend_from_slice(format!("\x1b[3{}mline {i}\x1b[0m\r\n", i % 8).as_bytes());
    }
    let (e, direct) = emulate(size(20, 5), &[&out]);
    let client = client_of(&e, 10);
    assert_eq!(seen(&client), seen(&direct));
    let lines = client.primary_screen().text();
    // 10 lines of history, then the 5 rows of the screen.
    let want: Vec<String> = (16..26).map(|i| format!("line {i}")).collect();
    let got: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    let at = got
        .iter()
        .position(|l| *l == "line 16")
        .expect("history sent");
    assert_eq!(
        &got[at..at + 10],
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn utf8_cut_anywhere_is_the_same_text() {
    let text = "h\u{e9}llo w\u{f6}rld \u{1f600} \u{4e16}\u{754c}\r\n".repeat(3);
    let bytes = text.as_bytes();
    let (whole, _) = emulate(size(30, 4), &[bytes]);
    for cut in 0..bytes.len() {
        let (split, _) = emulate(size(30, 4), &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(split.state(), whole.state(), "cut at {cut}");
    }
    let (bad, _) = emulate(size(30, 4), &[b"a\xffb\xe2\x82"]);
    assert_eq!(bad.state().lines[0], "a\u{fffd}b");
}

#[test]
fn a_character_cut_at_the_end_is_not_on_the_screen_yet() {
    let (mut e, _) = emulate(size(10, 2), &[b"a\xe4\xb8"]);
    assert_eq!((e.offset(), e.screen_offset()), (Offset(3), Offset(1)));
    assert_eq!(e.state().offset, Offset(1));
    e.feed(b"\x96");
    assert_eq!(
        (e.screen_offset(), e.state().lines[0].as_str()),
        (Offset(4), "a\u{4e16}")
    );
}

#[test]
fn skipping_counts_and_moves_the_offset() {
    let mut e = Emulator::new(size(10, 2), 0, Offset(100));
    e.feed(b"abc");
    assert_eq!(e.offset(), Offset(103));
    e.skip_to(Offset(200));
    e.skip_to(Offset(150));
    assert_eq!(
        (e.offset(), e.skipped(), e.state().skipped),
        (Offset(200), 97, 97)
    );
}

proptest! {
    /// Whatever the output, the client's terminal after the snapshot shows
    /// what a terminal that took the whole output shows.
    #[test]
    fn any_output_is_redrawn_exactly(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("\x1b[?1049h".to_string()),
                Just("\x1b[?1049l".to_string()),
                Just("\x1b[?1047h".to_string()),
                Just("\x1b[1;33;44m".to_string()),
                Just("\x1b[0m".to_string()),
                Just("\x1b[2J".to_string()),
                Just("\x1b[K".to_string()),
                Just("\r\n".to_string()),
                Just("\x1b[2;3r".to_string()),
                Just("\x1b[?25l".to_string()),
                Just("\x1b7".to_string()),
                Just("\x1b8".to_string()),
                (1u8..8, 1u8..20).prop_map(|(r, c)| format!("\x1b[{r};{c}H")),
                "[a-z \u{e9}\u{4e16}]{0,12}",
            ],
            0..40,
        ),
        cols in 4u16..30,
        rows in 2u16..8,
    ) {
        let all = parts.concat();
        let (e, direct) = emulate(size(cols, rows), &[all.as_bytes()]);
        let client = client_of(&e, 20);
        prop_assert_eq!(seen(&client), seen(&direct));
    }
}
