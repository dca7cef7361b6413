//! The user's terminal: raw mode that is always restored, and its size.

use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::BorrowedFd;
use std::sync::Mutex;
use tether_proto::WinSize;

static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(stdin_fd()).unwrap_or(false)
}

/// Puts the terminal in raw mode until [`restore`] (also called on panic
/// and on every exit path of `main`).
pub fn enter_raw() -> anyhow::Result<()> {
    let orig = termios::tcgetattr(stdin_fd())?;
    let mut raw = orig.clone();
    termios::cfmakeraw(&mut raw);
    *SAVED.lock().expect("term lock") = Some(orig);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        prev(info);
    }));
    termios::tcsetattr(stdin_fd(), SetArg::TCSADRAIN, &raw)?;
    Ok(())
}

/// Restores the terminal if raw mode was entered. Idempotent.
pub fn restore() {
    if let Ok(mut g) = SAVED.lock() {
        if let Some(orig) = g.take() {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSADRAIN, &orig);
        }
    }
}

/// The terminal's size, if stdout (or stdin) is a terminal.
pub fn size() -> Option<WinSize> {
    for fd in [1, 0, 2] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
        let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
            return Some(WinSize {
                cols: ws.ws_col,
                rows: ws.ws_row,
            });
        }
    }
    None
}
