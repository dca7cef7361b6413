//! The progress line on stderr: rewritten in place (`\r`) on a terminal,
//! one line per step otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static SHOWN: AtomicBool = AtomicBool::new(false);

/// Shows `msg` as the current step.
pub fn set(msg: &str) {
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K{msg}");
        SHOWN.store(true, Ordering::Relaxed);
    } else {
        let _ = writeln!(err, "{msg}");
    }
    let _ = err.flush();
}

/// Clears the progress line, so that other output starts on a clean line.
pub fn clear() {
    if SHOWN.swap(false, Ordering::Relaxed) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
