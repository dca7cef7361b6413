//! Realistic terminal output for the screen scenarios, made here so that
//! every machine draws the same bytes: a coloured log, an `ls -l --color`
//! listing, and a full-screen editor (alternate screen, 256-colour and
//! true-colour syntax highlighting, a status line) redrawn frame after
//! frame. Deterministic: the same arguments give the same bytes.

use std::fmt::Write as _;

/// A small deterministic generator (splitmix64), so that lines differ
/// without a dependency.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const WORDS: [&str; 16] = [
    "request", "session", "keeper", "ring", "client", "offset", "attach", "resize", "frame",
    "snapshot", "relay", "gossip", "socket", "buffer", "window", "stream",
];
const MODULES: [&str; 8] = [
    "node::keeper",
    "node::daemon",
    "net::conn",
    "relay::splice",
    "client::stream",
    "proto::codec",
    "node::ring",
    "cli::attach",
];

/// Line `i` of a coloured application log, as `tracing` or `journalctl`
/// print it: dim timestamp, coloured level, module, message, key=value
/// fields. 70 to 110 visible columns (some wrap at 80), ended by `\n`.
pub fn log_line(i: u64) -> String {
    let r = mix(i);
    let (level, colour) = match r % 20 {
        0 => ("ERROR", "1;31"),
        1 | 2 => ("WARN", "33"),
        3..=5 => ("DEBUG", "34"),
        _ => ("INFO", "32"),
    };
    let module = MODULES[(r >> 8) as usize % MODULES.len()];
    let mut msg = String::new();
    for k in 0..(2 + (r >> 12) % 4) {
        if k > 0 {
            msg.push(' ');
        }
        msg.push_str(WORDS[(mix(r ^ k) % WORDS.len() as u64) as usize]);
    }
    format!(
        "\x1b[2m2026-11-26T{:02}:{:02}:{:02}.{:06}Z\x1b[0m \x1b[{colour}m{level:>5}\x1b[0m \
         \x1b[1m{module}\x1b[0m: {msg} \x1b[3mid\x1b[0m=\x1b[36m{:08x}\x1b[0m \
         \x1b[3mbytes\x1b[0m={}\n",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        (r >> 20) % 1_000_000,
        r >> 32,
        (r >> 40) % 100_000,
    )
}

/// `lines` lines of [`log_line`].
pub fn log(lines: u64) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..lines {
        out.push_str(&log_line(i));
    }
    out.into_bytes()
}

/// An `ls -l --color=always` listing of `lines` entries, with GNU ls's
/// default colours: directories bold blue, executables bold green,
/// symlinks bold cyan, archives bold red.
pub fn ls_color(lines: u64) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "total {}", lines * 4);
    for i in 0..lines {
        let r = mix(i + 1_000_003);
        let base = format!(
            "{}-{}{}",
            WORDS[(r % 16) as usize],
            WORDS[((r >> 4) % 16) as usize],
            i
        );
        let (mode, name) = match r % 6 {
            0 => ("drwxr-xr-x", format!("\x1b[01;34m{base}\x1b[0m")),
            1 => ("-rwxr-xr-x", format!("\x1b[01;32m{base}\x1b[0m")),
            2 => (
                "lrwxrwxrwx",
                format!("\x1b[01;36m{base}\x1b[0m -> ../lib/{base}.so.1"),
            ),
            3 => ("-rw-r--r--", format!("\x1b[01;31m{base}.tar.gz\x1b[0m")),
            _ => ("-rw-r--r--", format!("{base}.rs")),
        };
        let _ = writeln!(
            out,
            "{mode} 1 dev dev {:>8} Nov {:>2} {:02}:{:02} {name}",
            (r >> 16) % 10_000_000,
            1 + (r >> 40) % 28,
            (r >> 48) % 24,
            (r >> 56) % 60
        );
    }
    out.into_bytes()
}

/// Tokens of a line of source code: (text, SGR or "" for plain).
fn code_tokens(n: u64) -> Vec<(String, &'static str)> {
    let r = mix(n + 77);
    let w = |k: u64| WORDS[(mix(r ^ k) % 16) as usize];
    let indent = " ".repeat(4 * ((r % 3) as usize));
    match r % 7 {
        0 => vec![
            (indent, ""),
            ("pub fn".into(), "1;38;5;33"),
            (format!(" {}_{}", w(1), w(2)), "38;5;178"),
            ("(&mut self, ".into(), ""),
            (w(3).into(), ""),
            (": ".into(), ""),
            ("u64".into(), "38;5;37"),
            (") -> ".into(), ""),
            ("Result".into(), "38;5;37"),
            ("<()> {".into(), ""),
        ],
        1 => vec![
            (indent, ""),
            (
                format!("// {} the {} before the {}", w(1), w(2), w(3)),
                "3;38;5;244",
            ),
        ],
        2 => vec![
            (indent, ""),
            ("let".into(), "1;38;5;33"),
            (format!(" {} = ", w(1)), ""),
            (format!("\"{} {}\"", w(2), w(3)), "38;2;152;195;121"),
            (";".into(), ""),
        ],
        3 => vec![
            (indent, ""),
            ("if".into(), "1;38;5;33"),
            (format!(" self.{} > ", w(1)), ""),
            (format!("{}", r % 4096), "38;5;170"),
            (" {".into(), ""),
        ],
        4 => vec![
            (indent, ""),
            ("return".into(), "1;38;5;33"),
            (" Err".into(), "38;5;37"),
            (format!("({}::{}(", w(1), w(2)), ""),
            (format!("\"cannot {}\"", w(3)), "38;2;152;195;121"),
            ("));".into(), ""),
        ],
        5 => vec![(indent, ""), ("}".into(), "")],
        _ => vec![
            (indent, ""),
            (format!("self.{}.{}(", w(1), w(2)), ""),
            (w(3).into(), ""),
            (", ".into(), ""),
            ("true".into(), "38;5;170"),
            (");".into(), ""),
        ],
    }
}

/// Line `n` of a source file, as plain text (what an editor opens).
pub fn code_line(n: u64) -> String {
    code_tokens(n).into_iter().map(|(t, _)| t).collect()
}

/// A source file of `lines` lines, for an editor to open.
pub fn code_file(lines: u64) -> Vec<u8> {
    let mut out = String::new();
    for n in 0..lines {
        out.push_str(&code_line(n));
        out.push('\n');
    }
    out.into_bytes()
}

/// Appends `text` in `sgr` (plain if empty), cut at `room` columns;
/// returns the columns used. Text is ASCII.
fn put(out: &mut String, text: &str, sgr: &str, room: usize) -> usize {
    let t = &text[..text.len().min(room)];
    if t.is_empty() {
        return 0;
    }
    if sgr.is_empty() {
        out.push_str(t);
    } else {
        let _ = write!(out, "\x1b[{sgr}m{t}\x1b[0m");
    }
    t.len()
}

/// One frame of a full-screen editor on a `cols` x `rows` terminal, the
/// file scrolled to line `top`: every row positioned and cleared to its
/// end, line numbers, highlighted code, an inverse status line, and
/// `status` at the status line's end.
fn frame(out: &mut String, cols: usize, rows: usize, top: u64, status: &str) {
    out.push_str("\x1b[?25l");
    for row in 0..rows.saturating_sub(1) {
        let n = top + row as u64;
        let _ = write!(out, "\x1b[{};1H", row + 1);
        let mut used = put(out, &format!("{:>5} ", n + 1), "38;5;130", cols);
        for (t, sgr) in code_tokens(n) {
            used += put(out, &t, sgr, cols - used);
        }
        if used < cols {
            out.push_str("\x1b[K");
        }
    }
    let left = format!(" NORMAL  src/keeper/screen.rs  {}:1 ", top + 1);
    let right = format!(" {status} ");
    let pad = cols.saturating_sub(left.len() + right.len());
    let line = format!("{left}{}{right}", " ".repeat(pad));
    let _ = write!(out, "\x1b[{rows};1H");
    put(out, &line, "1;7;38;5;67", cols);
    let _ = write!(out, "\x1b[{};7H\x1b[?25h", rows / 2);
}

/// A full-screen editor: the title is set, the alternate screen entered,
/// then frames are drawn (the file scrolling by three lines a frame) until
/// at least `bytes` bytes have been written; the last frame shows
/// `marker` in its status line, which no earlier frame holds.
pub fn fullscreen(cols: u16, rows: u16, bytes: usize, marker: &str) -> Vec<u8> {
    let (cols, rows) = (cols as usize, rows as usize);
    let mut out =
        String::from("\x1b]0;vi src/keeper/screen.rs\x07\x1b[?1049h\x1b[?1h\x1b=\x1b[H\x1b[2J");
    let mut f = 0u64;
    while out.len() < bytes {
        frame(&mut out, cols, rows, 3 * f, &format!("frame {f:06}"));
        f += 1;
    }
    frame(&mut out, cols, rows, 3 * f, marker);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_sized() {
        assert_eq!(log(50), log(50));
        assert_eq!(log(100).iter().filter(|&&b| b == b'\n').count(), 100);
        assert!(String::from_utf8(ls_color(20))
            .unwrap()
            .contains("\x1b[01;34m"));
        let f = fullscreen(80, 24, 50_000, "THE-END");
        assert!(f.len() >= 50_000);
        let text = String::from_utf8(f).unwrap();
        // The marker is drawn once, in the last frame, in one piece.
        assert_eq!(text.matches("THE-END").count(), 1);
        assert!(!text.contains('\n'));
        assert!(text.contains("frame 000000"));
    }

    #[test]
    fn frames_fit_the_width() {
        let mut s = String::new();
        frame(&mut s, 40, 10, 0, "x");
        let mut visible = 0;
        let mut scan = crate::pty::TextScanner::default();
        scan.feed(s.as_bytes(), |_| visible += 1);
        assert!(visible <= 40 * 10, "{visible} columns drawn");
    }
}
