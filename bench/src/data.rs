//! The files sessions `cat`: numbered 80-byte lines, or `yes`-style 2-byte
//! lines, of a fixed size, so that every run of every variant prints
//! exactly the same bytes.

use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Bytes per line of [`lines80`].
pub const LINE: u64 = 80;

/// Writes `lines` numbered lines of 80 bytes (79 visible + `\n`):
/// `000000042 abcdef...`. Line numbers make every line unique, so no
/// line can be mistaken for a marker.
pub fn lines80(path: &Path, lines: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut line = [0u8; LINE as usize];
    for (i, b) in line.iter_mut().enumerate().skip(10) {
        *b = b'a' + (i % 26) as u8;
    }
    line[9] = b' ';
    line[LINE as usize - 1] = b'\n';
    for n in 0..lines {
        let mut v = n;
        for d in (0..9).rev() {
            line[d] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        w.write_all(&line)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `bytes` bytes of `y\n`, like `yes | head -c`.
pub fn yes(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let chunk = b"y\n".repeat(32 * 1024);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Bytes a PTY in its default mode (`onlcr`) turns a file of `bytes`
/// bytes holding `newlines` newlines into.
pub fn through_pty(bytes: u64, newlines: u64) -> u64 {
    bytes + newlines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_their_size() {
        let d = tempfile::tempdir().unwrap();
        lines80(&d.path().join("a"), 1001).unwrap();
        let a = std::fs::read(d.path().join("a")).unwrap();
        assert_eq!(a.len(), 80_080);
        assert!(a.starts_with(b"000000000 klmn"));
        assert_eq!(&a[80..90], b"000000001 ");
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 1001);
        yes(&d.path().join("y"), 100_001).unwrap();
        let y = std::fs::read(d.path().join("y")).unwrap();
        assert_eq!(y.len(), 100_001);
        assert!(y.starts_with(b"y\ny\n"));
    }
}
