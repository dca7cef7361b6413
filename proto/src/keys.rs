//! Key names, as `tether send --keys` and the agent interface take them,
//! and the bytes a terminal sends for each.
//!
//! The names are tmux's (`Enter`, `C-c`, `M-x`, `Up`, `F5`, `PageDown`),
//! so that `C-c` is the interrupt character and never the text "C-c".
//! Modifiers combine (`C-M-x`, `S-Up`); cursor and function keys with
//! modifiers use xterm's encoding (`ESC [ 1 ; 5 A` for `C-Up`).

use thiserror::Error;

/// A key name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown key {name:?}: use a name like Enter, Tab, Escape, Space, BSpace, Up, Down, Left, Right, Home, End, PageUp, PageDown, Insert, Delete, F1..F12, a single character, or one with modifiers C- (control), M- (alt), S- (shift), as in C-c or M-x; send text without --keys")]
pub struct KeyError {
    /// The name given.
    pub name: String,
}

/// The bytes for one key name, as a terminal in normal cursor-key mode
/// sends them (applications accept those in either mode).
pub fn encode(name: &str) -> Result<Vec<u8>, KeyError> {
    let err = || KeyError {
        name: name.to_string(),
    };
    let (mut ctrl, mut alt, mut shift) = (false, false, false);
    let mut rest = name;
    // A lone "C-" or "M-" is the character after the dash; "C--" is
    // control-minus.
    while rest.len() > 2 && rest.as_bytes()[1] == b'-' {
        match &rest[..2] {
            "C-" => ctrl = true,
            "M-" => alt = true,
            "S-" => shift = true,
            _ => break,
        }
        rest = &rest[2..];
    }
    let modifier = 1 + u8::from(shift) + 2 * u8::from(alt) + 4 * u8::from(ctrl);
    let csi = |last: &str| -> Vec<u8> {
        // Cursor keys and F1-F4: ESC [ A, or ESC [ 1 ; m A with modifiers.
        if modifier == 1 {
            format!("\x1b[{last}").into_bytes()
        } else {
            format!("\x1b[1;{modifier}{last}").into_bytes()
        }
    };
    let tilde = |n: u8| -> Vec<u8> {
        if modifier == 1 {
            format!("\x1b[{n}~").into_bytes()
        } else {
            format!("\x1b[{n};{modifier}~").into_bytes()
        }
    };
    let ss3 = |last: &str| -> Vec<u8> {
        if modifier == 1 {
            format!("\x1bO{last}").into_bytes()
        } else {
            format!("\x1b[1;{modifier}{last}").into_bytes()
        }
    };
    let named = match rest.to_ascii_lowercase().as_str() {
        "up" => Some(csi("A")),
        "down" => Some(csi("B")),
        "right" => Some(csi("C")),
        "left" => Some(csi("D")),
        "home" => Some(csi("H")),
        "end" => Some(csi("F")),
        "insert" | "ic" => Some(tilde(2)),
        "delete" | "dc" | "del" => Some(tilde(3)),
        "pageup" | "pgup" | "ppage" => Some(tilde(5)),
        "pagedown" | "pgdn" | "npage" => Some(tilde(6)),
        "f1" => Some(ss3("P")),
        "f2" => Some(ss3("Q")),
        "f3" => Some(ss3("R")),
        "f4" => Some(ss3("S")),
        "f5" => Some(tilde(15)),
        "f6" => Some(tilde(17)),
        "f7" => Some(tilde(18)),
        "f8" => Some(tilde(19)),
        "f9" => Some(tilde(20)),
        "f10" => Some(tilde(21)),
        "f11" => Some(tilde(23)),
        "f12" => Some(tilde(24)),
        "btab" => Some(b"\x1b[Z".to_vec()),
        "tab" if shift => Some(b"\x1b[Z".to_vec()),
        _ => None,
    };
    if let Some(seq) = named {
        return Ok(seq);
    }
    let base: u8 = match rest.to_ascii_lowercase().as_str() {
        "enter" | "return" | "cr" => b'\r',
        "tab" => b'\t',
        "escape" | "esc" => 0x1b,
        "space" => b' ',
        "bspace" | "backspace" | "bs" => 0x7f,
        _ => {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii() => c as u8,
                (Some(c), None) if !ctrl => {
                    let mut out = Vec::new();
                    if alt {
                        out.push(0x1b);
                    }
                    out.extend_from_slice(c.to_string().as_bytes());
                    return Ok(out);
                }
                _ => return Err(err()),
            }
        }
    };
    let mut byte = base;
    if ctrl {
        byte = control(base).ok_or_else(err)?;
    } else if shift && base.is_ascii_lowercase() {
        byte = base.to_ascii_uppercase();
    }
    let mut out = Vec::with_capacity(2);
    if alt {
        out.push(0x1b);
    }
    out.push(byte);
    Ok(out)
}

/// The control character of `c` (`C-c` is 0x03), as a terminal sends it.
fn control(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a' + 1),
        b'@' | b' ' | b'2' => Some(0),
        b'A'..=b'_' => Some(c - b'@'),
        b'?' | 0x7f | b'8' => Some(0x7f),
        b'3' => Some(0x1b),
        b'4' => Some(0x1c),
        b'5' => Some(0x1d),
        b'6' => Some(0x1e),
        b'7' | b'/' | b'-' => Some(0x1f),
        b'\r' | b'\t' | 0x1b => Some(c),
        _ => None,
    }
}

/// The bytes for a list of key names, one after the other.
pub fn encode_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    for n in names {
        out.extend(encode(n.as_ref())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_bytes_a_terminal_sends() {
        let cases: &[(&str, &[u8])] = &[
            ("C-c", b"\x03"),
            ("C-d", b"\x04"),
            ("C-[", b"\x1b"),
            ("C-Space", b"\x00"),
            ("C-?", b"\x7f"),
            ("Enter", b"\r"),
            ("Tab", b"\t"),
            ("S-Tab", b"\x1b[Z"),
            ("Escape", b"\x1b"),
            ("BSpace", b"\x7f"),
            ("Up", b"\x1b[A"),
            ("C-Up", b"\x1b[1;5A"),
            ("S-Left", b"\x1b[1;2D"),
            ("F1", b"\x1bOP"),
            ("F5", b"\x1b[15~"),
            ("C-F5", b"\x1b[15;5~"),
            ("F12", b"\x1b[24~"),
            ("PageDown", b"\x1b[6~"),
            ("M-x", b"\x1bx"),
            ("C-M-a", b"\x1b\x01"),
            ("q", b"q"),
            (":", b":"),
            ("C--", b"\x1f"),
            ("M-é", "\x1bé".as_bytes()),
        ];
        for (name, bytes) in cases {
            assert_eq!(encode(name).unwrap(), *bytes, "{name}");
        }
    }

    #[test]
    fn text_is_not_a_key() {
        for bad in ["C-c-x", "hello", "F13", "C-é", ""] {
            let e = encode(bad).unwrap_err();
            assert!(e.to_string().contains("send text without --keys"), "{e}");
        }
    }

    #[test]
    fn lists_concatenate() {
        assert_eq!(
            encode_all(&["i", "Escape", ":", "q", "Enter"]).unwrap(),
            b"i\x1b:q\r"
        );
    }
}
