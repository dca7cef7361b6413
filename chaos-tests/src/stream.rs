//! The known stream every drilled session writes, and the [`Verifier`]
//! that checks what a client received against it.
//!
//! # How it works
//! - `chaos-writer` (this crate's binary) puts its terminal in raw mode
//!   (no echo, no `\n` → `\r\n`), then writes [`line`]`(0)`,
//!   [`line`]`(1)`, ... So byte `o` of the session's output is byte
//!   `o % LINE` of line `o / LINE`: any chunk a client receives can be
//!   checked where it claims to be, with no copy of the stream kept.
//! - The [`Verifier`] takes a client's events in order: output (offset and
//!   bytes) and gap notices. Each chunk must start where the last one
//!   ended (a later start is a loss, an earlier one a duplicate) and equal
//!   the known bytes at its offset. A gap notice is the only way to skip,
//!   and it must start where the output ended. Every verified byte goes
//!   into a blake3 digest, which the report prints (two clients that got
//!   the same range show the same digest).

use std::fmt;

/// Bytes per line of the known stream.
pub const LINE: u64 = 64;
/// Digits of the line number at the head of each line.
const DIGITS: usize = 12;

/// Line `n` of the known stream: its number, a space, letters that shift
/// with `n`, and `\r\n`; [`LINE`] bytes.
pub fn line(n: u64) -> [u8; LINE as usize] {
    let mut l = [0u8; LINE as usize];
    let num = format!("{:0width$}", n % 10u64.pow(DIGITS as u32), width = DIGITS);
    l[..DIGITS].copy_from_slice(num.as_bytes());
    l[DIGITS] = b' ';
    let end = LINE as usize - 2;
    for (i, b) in l[DIGITS + 1..end].iter_mut().enumerate() {
        *b = b'a' + ((n + i as u64) % 26) as u8;
    }
    l[end..].copy_from_slice(b"\r\n");
    l
}

/// The known bytes `offset..offset + len`.
pub fn known(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut o = offset;
    while out.len() < len {
        let l = line(o / LINE);
        let from = (o % LINE) as usize;
        let take = (LINE as usize - from).min(len - out.len());
        out.extend_from_slice(&l[from..from + take]);
        o += take as u64;
    }
    out
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Output started before the end of what was already received.
    Duplicate {
        /// Where the next byte was expected.
        expected: u64,
        /// Where the chunk started.
        got: u64,
    },
    /// Output started after the end of what was received, with no gap
    /// notice: bytes lost silently (or reordered).
    Skipped {
        /// Where the next byte was expected.
        expected: u64,
        /// Where the chunk started.
        got: u64,
    },
    /// A gap notice that does not start at the end of what was received,
    /// or that goes backwards.
    BadGap {
        /// Where the next byte was expected.
        expected: u64,
        /// The notice's first missed byte.
        missed: u64,
        /// The notice's first byte to come.
        resume: u64,
    },
    /// Bytes that differ from the known stream.
    Corrupt {
        /// Offset of the first byte that differs.
        at: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Duplicate { expected, got } => write!(
                f,
                "duplicate: output at offset {got}, but {expected} was the next byte due"
            ),
            Violation::Skipped { expected, got } => write!(
                f,
                "silent loss: output at offset {got} with no gap notice, but {expected} was due"
            ),
            Violation::BadGap {
                expected,
                missed,
                resume,
            } => write!(
                f,
                "bad gap notice {missed}..{resume}: the next byte due was {expected}"
            ),
            Violation::Corrupt { at } => {
                write!(f, "corrupt: byte {at} differs from the known stream")
            }
        }
    }
}

/// Checks one client's view of one session; see the module doc.
#[derive(Clone)]
pub struct Verifier {
    next: Option<u64>,
    first: Option<u64>,
    verified: u64,
    lost: u64,
    gaps: u32,
    got: blake3::Hasher,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// Nothing received yet; the first chunk may start anywhere.
    pub fn new() -> Verifier {
        Verifier {
            next: None,
            first: None,
            verified: 0,
            lost: 0,
            gaps: 0,
            got: blake3::Hasher::new(),
        }
    }

    /// Output `data` at `offset`.
    pub fn output(&mut self, offset: u64, data: &[u8]) -> Result<(), Violation> {
        if let Some(expected) = self.next {
            if offset < expected {
                return Err(Violation::Duplicate {
                    expected,
                    got: offset,
                });
            }
            if offset > expected {
                return Err(Violation::Skipped {
                    expected,
                    got: offset,
                });
            }
        }
        let want = known(offset, data.len());
        if let Some(i) = data.iter().zip(&want).position(|(a, b)| a != b) {
            return Err(Violation::Corrupt {
                at: offset + i as u64,
            });
        }
        self.got.update(data);
        self.first.get_or_insert(offset);
        self.next = Some(offset + data.len() as u64);
        self.verified += data.len() as u64;
        Ok(())
    }

    /// A gap notice: bytes `missed..resume` will not come.
    pub fn gap(&mut self, missed: u64, resume: u64) -> Result<(), Violation> {
        let expected = self.next.unwrap_or(missed);
        if missed != expected || resume < missed {
            return Err(Violation::BadGap {
                expected,
                missed,
                resume,
            });
        }
        self.lost += resume - missed;
        self.gaps += 1;
        self.next = Some(resume);
        Ok(())
    }

    /// Bytes checked so far.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Bytes announced lost by gap notices.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Gap notices received.
    pub fn gaps(&self) -> u32 {
        self.gaps
    }

    /// The next offset due, once anything arrived.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// The first offset received.
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    /// The digest of every verified byte (each already compared with the
    /// known stream, so it is the known stream's digest over the same
    /// offsets).
    pub fn digest(&self) -> Result<blake3::Hash, Violation> {
        Ok(self.got.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_are_fixed_width_and_numbered() {
        let l = line(42);
        assert_eq!(&l[..13], b"000000000042 ");
        assert_eq!(&l[62..], b"\r\n");
        assert_ne!(line(1)[13..62], line(2)[13..62]);
        assert_eq!(known(LINE * 3 - 2, 4), b"\r\n00");
    }

    #[test]
    fn each_broken_invariant_is_caught() {
        let mut v = Verifier::new();
        v.output(100, &known(100, 50)).unwrap();
        assert_eq!(
            v.output(120, &known(120, 10)),
            Err(Violation::Duplicate {
                expected: 150,
                got: 120
            })
        );
        assert_eq!(
            v.output(151, &known(151, 10)),
            Err(Violation::Skipped {
                expected: 150,
                got: 151
            })
        );
        let mut bad = known(150, 10);
        bad[3] ^= 1;
        assert_eq!(v.output(150, &bad), Err(Violation::Corrupt { at: 153 }));
        assert!(matches!(v.gap(149, 300), Err(Violation::BadGap { .. })));
        v.gap(150, 300).unwrap();
        v.output(300, &known(300, 1)).unwrap();
        assert_eq!((v.verified(), v.lost(), v.gaps()), (51, 150, 1));
        v.digest().unwrap();
    }

    proptest! {
        #[test]
        fn the_stream_cut_anywhere_verifies_and_hashes_as_a_whole(
            start in 0u64..10_000,
            cuts in proptest::collection::vec(1usize..300, 1..40),
        ) {
            let total: usize = cuts.iter().sum();
            let whole = known(start, total);
            let mut v = Verifier::new();
            let mut o = start;
            for c in cuts {
                let at = (o - start) as usize;
                v.output(o, &whole[at..at + c]).unwrap();
                o += c as u64;
            }
            prop_assert_eq!(v.digest().unwrap(), blake3::hash(&whole));
            prop_assert_eq!(v.verified(), total as u64);
        }
    }
}
