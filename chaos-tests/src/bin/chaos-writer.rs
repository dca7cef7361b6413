//! `chaos-writer [BYTES_PER_SECOND]`: writes the known stream of
//! `chaos_tests::stream` to its terminal, forever, at that rate (0 or none:
//! as fast as the terminal takes it).
//!
//! It first puts the terminal in raw mode, so the bytes a session records
//! are exactly the lines written: no echo of what clients type, no
//! `\n` → `\r\n`.

use chaos_tests::stream::{line, LINE};
use nix::sys::termios::{self, SetArg};
use std::io::Write;
use std::time::{Duration, Instant};

/// How often a rate-limited writer wakes.
const TICK: Duration = Duration::from_millis(10);

fn main() -> anyhow::Result<()> {
    let rate: u64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("BYTES_PER_SECOND {a:?}: {e}"))?,
        None => 0,
    };
    let stdout = std::io::stdout();
    if let Ok(mut t) = termios::tcgetattr(&stdout) {
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&stdout, SetArg::TCSANOW, &t)?;
    }
    let mut out = stdout.lock();
    let mut n = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    loop {
        // Lines due by now (rate-limited), or a 64 KiB batch.
        let due = if rate == 0 {
            n + 1024
        } else {
            (start.elapsed().as_secs_f64() * rate as f64 / LINE as f64) as u64
        };
        buf.clear();
        while n < due {
            buf.extend_from_slice(&line(n));
            n += 1;
        }
        out.write_all(&buf)?;
        out.flush()?;
        if rate != 0 {
            std::thread::sleep(TICK);
        }
    }
}
