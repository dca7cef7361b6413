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

/// The terminal of stdin, opened again for this process alone, with
/// `O_NONBLOCK`: reads and writes wait in the runtime's event loop. Tokio's
/// own stdin and stdout hand every read and write to a blocking thread,
/// two thread hops per keystroke that an attach pays in latency. A new
/// open file description keeps the non-blocking flag ours: the shell that
/// shares the terminal never sees it.
pub struct Tty {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    /// Whether stdout is this same terminal (else output goes to stdout).
    pub is_stdout: bool,
}

impl Tty {
    /// The terminal of stdin, if stdin is one and it can be opened.
    pub fn open() -> Option<Tty> {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::{fstat, Mode};
        if !stdin_is_tty() {
            return None;
        }
        let path = nix::unistd::ttyname(stdin_fd()).ok()?;
        let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = open(&path, flags, Mode::empty()).ok()?;
        // SAFETY: fd 1 stays open for the life of the process.
        let stdout = unsafe { BorrowedFd::borrow_raw(1) };
        let is_stdout = match (fstat(stdout), fstat(&fd)) {
            (Ok(a), Ok(b)) => a.st_rdev == b.st_rdev && a.st_mode & libc::S_IFMT == libc::S_IFCHR,
            _ => false,
        };
        // SAFETY: the AsyncFd owns the descriptor and nothing else closes
        // or replaces it while registered.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok()?;
        Some(Tty { fd, is_stdout })
    }

    /// Reads what was typed; 0 when the terminal is gone.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let res = ready.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(Into::into));
            match res {
                // EIO: the terminal hung up.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(r) => return r,
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}
