//! The ring buffer: the last N bytes of a session's output, indexed by
//! absolute offset, backed by a memory-mapped file in the state dir.
//!
//! The keeper appends every byte the PTY produces; the file outlives the
//! keeper, so a daemon can still read the last output of a session whose
//! keeper died. The offset arithmetic is in [`plan_read`], a pure function
//! tested by property tests.
//!
//! File layout (little endian):
//! ```text
//! 0..8    magic "TTHRING1"
//! 8..16   capacity
//! 16..24  end offset (one past the last byte written)
//! 24..28  clients attached now (written by the keeper)
//! 28..32  window size: columns, rows (u16 each; 0 when not published)
//! 4096..  data: the byte at offset o is at 4096 + o % capacity
//! ```
//!
//! Bytes 24..32 are the keeper's status page: what the daemon shows in
//! `ls` and `info` without asking the keeper, now that local clients
//! attach to the keeper directly. A ring of an older keeper has zeros
//! there (no size published).
//!
//! The header is read from a file another process wrote, which a crash, a
//! full disk or a stray write may have damaged: every reader checks it with
//! [`Header::parse`] before any offset arithmetic, so a damaged header is
//! an error naming the file, never a read outside it or a megabyte of
//! zeros passed off as output.

use memmap2::MmapMut;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tether_proto::Offset;

const MAGIC: &[u8; 8] = b"TTHRING1";
const HEADER: usize = 4096;

/// Smallest ring a session may have.
pub const MIN_RING_SIZE: u64 = 4096;
/// Largest ring a session may have.
pub const MAX_RING_SIZE: u64 = 1 << 30;
/// Ring size when neither the request nor the config names one.
pub const DEFAULT_RING_SIZE: u64 = 1 << 20;
/// Largest end offset a header may hold: 2^62 bytes (4 EiB) of output, a
/// century of writing at a GB/s. A larger end is a damaged header; below
/// it, sums of offsets and lengths cannot overflow.
pub const MAX_END: u64 = 1 << 62;

/// Why a ring file's header cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file is shorter than a header and the smallest ring.
    #[error("the file is {0} bytes long, too short for a ring")]
    TooShort(u64),
    /// The file does not start with the magic.
    #[error("it does not start with the ring magic \"TTHRING1\"")]
    BadMagic,
    /// The capacity is outside what a ring may have.
    #[error("its capacity {0} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes")]
    BadCapacity(u64),
    /// The capacity does not match the file's length.
    #[error(
        "its capacity {cap} does not match the file's length of {len} bytes (4096 + capacity)"
    )]
    SizeMismatch {
        /// Capacity in the header.
        cap: u64,
        /// Length of the file.
        len: u64,
    },
    /// The end offset is beyond any output a session could have written.
    #[error("its end offset {0} is beyond any real output (at most 2^62 bytes)")]
    ImpossibleEnd(u64),
}

/// A ring file's header, checked against the file's length.
///
/// The header holds no start offset: the start is `end - capacity` (or 0),
/// so `start <= end` and `end - start <= capacity` hold by construction;
/// what can be wrong is the magic, the capacity, the file's length and the
/// end, and [`Header::parse`] checks each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Capacity in bytes: the data area's length.
    pub cap: u64,
    /// One past the last byte written.
    pub end: u64,
    /// What the keeper published: clients attached and window size.
    pub status: Status,
}

/// The keeper's status page in a ring's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Clients attached now.
    pub clients: u32,
    /// The window size; `None` if the keeper published none (an older one).
    pub size: Option<tether_proto::WinSize>,
}

impl Status {
    fn parse(b: &[u8]) -> Status {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let (cols, rows) = (u16_at(28), u16_at(30));
        Status {
            clients: u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
            size: (cols > 0 && rows > 0).then_some(tether_proto::WinSize { cols, rows }),
        }
    }
}

impl Header {
    /// Bytes of the header that hold fields (the rest of the first 4096 is
    /// reserved).
    pub const LEN: usize = 32;

    /// Parses the first [`Header::LEN`] bytes of a ring file `file_len`
    /// bytes long (fewer bytes count as a file too short).
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Header, HeaderError> {
        if file_len < HEADER as u64 + MIN_RING_SIZE || bytes.len() < Self::LEN {
            return Err(HeaderError::TooShort(file_len));
        }
        if &bytes[..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let cap = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let end = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&cap) {
            return Err(HeaderError::BadCapacity(cap));
        }
        if file_len != HEADER as u64 + cap {
            return Err(HeaderError::SizeMismatch { cap, len: file_len });
        }
        if end > MAX_END {
            return Err(HeaderError::ImpossibleEnd(end));
        }
        Ok(Header {
            cap,
            end,
            status: Status::parse(bytes),
        })
    }

    /// Oldest offset the ring holds.
    pub fn start(&self) -> Offset {
        Offset(self.end.saturating_sub(self.cap))
    }

    /// One past the newest byte.
    pub fn end(&self) -> Offset {
        Offset(self.end)
    }
}

/// Why a ring file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The file could not be read or mapped.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a ring, or its header is damaged: its output cannot
    /// be read.
    #[error(
        "the ring file {} is damaged: {why}; its output cannot be read. Remove the session \
         with `tether rm` (move the file away first to keep it)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: HeaderError,
    },
    /// The file system has no room for the ring.
    #[error("no room for a {0}-byte ring: the disk is full; free some space or ask for a smaller --ring-size")]
    DiskFull(u64),
    /// The size asked for is outside the allowed range.
    #[error("ring size {0} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE} bytes")]
    BadSize(u64),
}

/// Where a read from `from` lands, given the ring's capacity and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPlan {
    /// Set when `from` is older than the oldest byte kept: the first offset
    /// that will be returned instead.
    pub gap_to: Option<u64>,
    /// Offset of the first byte returned.
    pub offset: u64,
    /// Position of that byte in the data area.
    pub pos: usize,
    /// Bytes returned (contiguous in the data area, so at most up to the
    /// wrap point; the caller reads again for the rest).
    pub len: usize,
}

/// Plans a read of at most `max` bytes from `from`. Offsets past `end` are
/// clamped to `end` (nothing to read yet).
pub fn plan_read(cap: u64, end: u64, from: u64, max: usize) -> ReadPlan {
    let start = end.saturating_sub(cap);
    let (offset, gap_to) = if from < start {
        (start, Some(start))
    } else {
        (from.min(end), None)
    };
    let pos = (offset % cap) as usize;
    let avail = (end - offset) as usize;
    let to_wrap = cap as usize - pos;
    ReadPlan {
        gap_to,
        offset,
        pos,
        len: avail.min(to_wrap).min(max),
    }
}

/// Reads and checks a ring file's header without mapping the file (cheap
/// enough to do for every session of a listing).
pub fn peek(path: &Path) -> Result<Header, RingError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = [0u8; Header::LEN];
    let n = f.read_at(&mut h, 0)?;
    Header::parse(&h[..n], len).map_err(|why| RingError::Corrupt {
        path: path.to_path_buf(),
        why,
    })
}

/// A ring buffer file, mapped into memory.
pub struct Ring {
    map: MmapMut,
    cap: u64,
    end: u64,
}

impl Ring {
    /// Creates (or truncates) a ring file of `cap` data bytes.
    pub fn create(path: &Path, cap: u64) -> Result<Ring, RingError> {
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&cap) {
            return Err(RingError::BadSize(cap));
        }
        // Output is private: 0600 from the start, and also when an older
        // file of looser mode is reused.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        // Allocate the blocks now, so a full disk is an error here and not a
        // SIGBUS later when a page of the map is first written.
        let full = |e: io::Error| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                RingError::DiskFull(cap)
            } else {
                RingError::Io(e)
            }
        };
        file.set_len(HEADER as u64 + cap).map_err(full)?;
        if let Err(e) = allocate(&file, HEADER as u64 + cap) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(full(e));
        }
        // SAFETY: the file is private to this session's keeper (state dir,
        // 0700); nobody truncates it while it is mapped.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        map[..8].copy_from_slice(MAGIC);
        map[8..16].copy_from_slice(&cap.to_le_bytes());
        map[16..24].copy_from_slice(&0u64.to_le_bytes());
        Ok(Ring { map, cap, end: 0 })
    }

    /// Opens an existing ring file, checking its header
    /// ([`RingError::Corrupt`] if it cannot be right).
    pub fn open(path: &Path) -> Result<Ring, RingError> {
        let corrupt = |why| RingError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len < HEADER as u64 + MIN_RING_SIZE {
            return Err(corrupt(HeaderError::TooShort(len)));
        }
        // SAFETY: as in `create`.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let Header { cap, end, .. } = Header::parse(&map[..Header::LEN], len).map_err(corrupt)?;
        Ok(Ring { map, cap, end })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Oldest offset still held.
    pub fn start(&self) -> Offset {
        Offset(self.end.saturating_sub(self.cap))
    }

    /// One past the newest byte.
    pub fn end(&self) -> Offset {
        Offset(self.end)
    }

    /// Appends output. Bytes older than the capacity are overwritten.
    pub fn append(&mut self, mut data: &[u8]) {
        if data.len() as u64 > self.cap {
            // Only the last `cap` bytes can be kept; skip the rest.
            let skip = data.len() - self.cap as usize;
            self.end += skip as u64;
            data = &data[skip..];
        }
        while !data.is_empty() {
            let pos = (self.end % self.cap) as usize;
            let n = data.len().min(self.cap as usize - pos);
            self.map[HEADER + pos..HEADER + pos + n].copy_from_slice(&data[..n]);
            self.end += n as u64;
            data = &data[n..];
        }
        // The end is published after the bytes, so a reader of a file whose
        // writer died never sees an end beyond what was written.
        self.map[16..24].copy_from_slice(&self.end.to_le_bytes());
    }

    /// Publishes the keeper's status in the header.
    pub fn set_status(&mut self, clients: u32, size: tether_proto::WinSize) {
        self.map[24..28].copy_from_slice(&clients.to_le_bytes());
        self.map[28..30].copy_from_slice(&size.cols.to_le_bytes());
        self.map[30..32].copy_from_slice(&size.rows.to_le_bytes());
    }

    /// Where the next output goes: the data area from the end position to
    /// the wrap point, at most `max` bytes (never empty). The keeper reads
    /// the PTY straight into it, so output is copied once, by the kernel;
    /// bytes written there become output only when [`Ring::commit`] counts
    /// them (until then they overwrite the oldest bytes, which no reader in
    /// the keeper looks at in between).
    pub fn spare(&mut self, max: usize) -> &mut [u8] {
        let pos = (self.end % self.cap) as usize;
        let n = (self.cap as usize - pos).min(max.max(1));
        &mut self.map[HEADER + pos..HEADER + pos + n]
    }

    /// Counts `n` bytes written into [`Ring::spare`] as output.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.cap - self.end % self.cap);
        self.end += n as u64;
        self.map[16..24].copy_from_slice(&self.end.to_le_bytes());
    }

    /// Reads up to `max` bytes from `from`. Returns the plan (with any gap)
    /// and the bytes, which may be fewer than available at the wrap point.
    pub fn read(&self, from: Offset, max: usize) -> (ReadPlan, &[u8]) {
        let p = plan_read(self.cap, self.end, from.0, max);
        (p, &self.map[HEADER + p.pos..HEADER + p.pos + p.len])
    }

    /// Reads everything from `from` to the end into `out` (at most the
    /// capacity). Returns the offset of the first byte and any gap.
    pub fn read_all(&self, from: Offset, out: &mut Vec<u8>) -> (Offset, Option<Offset>) {
        let mut at = from;
        let mut first = None;
        let mut gap = None;
        loop {
            let (p, bytes) = self.read(at, usize::MAX);
            if first.is_none() {
                first = Some(Offset(p.offset));
                gap = p.gap_to.map(Offset);
            }
            if bytes.is_empty() {
                break;
            }
            out.extend_from_slice(bytes);
            at = Offset(p.offset + bytes.len() as u64);
        }
        (first.unwrap_or(from), gap)
    }

    /// Flushes the map to the file (for a clean shutdown; the kernel writes
    /// dirty pages back on its own otherwise).
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush_async()
    }
}

impl tether_proto::output::RingRead for Ring {
    fn start(&self) -> Offset {
        Ring::start(self)
    }
    fn end(&self) -> Offset {
        Ring::end(self)
    }
    fn read_at(&self, from: Offset, max: usize) -> &[u8] {
        self.read(from, max).1
    }
}

fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match r {
        0 => Ok(()),
        // Filesystems without fallocate: fall back to the sparse file.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A model: the whole output, never dropped.
    fn check_against_model(cap: u64, writes: &[Vec<u8>], reads: &[(u64, usize)]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut ring = Ring::create(&path, cap).unwrap();
        let mut model: Vec<u8> = Vec::new();
        for w in writes {
            ring.append(w);
            model.extend_from_slice(w);
            assert_eq!(ring.end().0, model.len() as u64);
            assert_eq!(ring.start().0, (model.len() as u64).saturating_sub(cap));
        }
        for &(from, max) in reads {
            let (p, bytes) = ring.read(Offset(from), max);
            let start = ring.start().0;
            if from < start {
                assert_eq!(p.gap_to, Some(start));
                assert_eq!(p.offset, start);
            } else {
                assert_eq!(p.gap_to, None);
                assert_eq!(p.offset, from.min(ring.end().0));
            }
            assert!(bytes.len() <= max);
            let o = p.offset as usize;
            assert_eq!(bytes, &model[o..o + bytes.len()]);
            // Reading on from there yields the rest, contiguously.
            let mut all = Vec::new();
            let (first, _) = ring.read_all(Offset(p.offset), &mut all);
            assert_eq!(first.0, p.offset);
            assert_eq!(&all[..], &model[o..]);
        }
        // Reopening the file (as a daemon does after the keeper died) shows
        // the same contents.
        drop(ring);
        let ring = Ring::open(&path).unwrap();
        let h = peek(&path).unwrap();
        assert_eq!((h.start(), h.end(), h.cap), (ring.start(), ring.end(), cap));
        let mut all = Vec::new();
        let (first, _) = ring.read_all(Offset(0), &mut all);
        assert_eq!(&all[..], &model[first.0 as usize..]);
        assert_eq!(ring.end().0, model.len() as u64);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn ring_matches_model(
            cap in 4096u64..9000,
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..12),
            reads in proptest::collection::vec((0u64..40000, 1usize..10000), 1..8),
        ) {
            check_against_model(cap, &writes, &reads);
        }

        #[test]
        fn plan_stays_in_bounds(cap in 1u64..1_000_000, end in 0u64..u64::MAX / 2, from in any::<u64>(), max in 1usize..1_000_000) {
            let p = plan_read(cap, end, from, max);
            prop_assert!(p.pos < cap as usize);
            prop_assert!(p.pos + p.len <= cap as usize);
            prop_assert!(p.offset + p.len as u64 <= end);
            prop_assert!(p.offset >= end.saturating_sub(cap));
            prop_assert!(p.len <= max);
        }
    }

    #[test]
    fn spare_and_commit_match_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Ring::create(&dir.path().join("a"), 4096).unwrap();
        let mut b = Ring::create(&dir.path().join("b"), 4096).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        for chunk in data.chunks(1500) {
            a.append(chunk);
            let mut rest = chunk;
            while !rest.is_empty() {
                let room = b.spare(rest.len());
                let n = room.len();
                room.copy_from_slice(&rest[..n]);
                b.commit(n);
                rest = &rest[n..];
            }
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.read_all(Offset(0), &mut x);
        b.read_all(Offset(0), &mut y);
        assert_eq!((x, a.end()), (y, b.end()));
        assert_eq!(b.spare(usize::MAX).len(), 4096 - 10_000 % 4096);
    }

    #[test]
    fn write_larger_than_capacity_keeps_the_tail() {
        let data: Vec<u8> = (0..20000u32).map(|i| i as u8).collect();
        check_against_model(
            4096,
            &[data],
            &[(0, 100_000), (15904, 10), (19999, 5), (20000, 5)],
        );
    }

    #[test]
    fn corrupt_and_bad_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring");
        std::fs::write(&p, vec![0u8; 9000]).unwrap();
        assert!(matches!(
            Ring::open(&p),
            Err(RingError::Corrupt {
                why: HeaderError::BadMagic,
                ..
            })
        ));
        assert!(matches!(Ring::create(&p, 10), Err(RingError::BadSize(10))));
    }

    /// A valid header's bytes.
    fn header(cap: u64, end: u64) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&cap.to_le_bytes());
        h.extend_from_slice(&end.to_le_bytes());
        // No status published.
        h.extend_from_slice(&[0; 8]);
        h
    }

    #[test]
    fn impossible_headers_are_refused_with_the_reason() {
        let len = HEADER as u64 + 4096;
        assert_eq!(
            Header::parse(&header(4096, 10), len),
            Ok(Header {
                cap: 4096,
                end: 10,
                status: Status::default()
            })
        );
        assert_eq!(
            Header::parse(&header(4096, MAX_END), len).map(|h| h.start()),
            Ok(Offset(MAX_END - 4096))
        );
        let cases = [
            (
                header(4096, u64::MAX),
                len,
                HeaderError::ImpossibleEnd(u64::MAX),
            ),
            (
                header(4096, MAX_END + 1),
                len,
                HeaderError::ImpossibleEnd(MAX_END + 1),
            ),
            (header(0, 0), len, HeaderError::BadCapacity(0)),
            (
                header(MAX_RING_SIZE + 1, 0),
                len,
                HeaderError::BadCapacity(MAX_RING_SIZE + 1),
            ),
            (
                header(8192, 0),
                len,
                HeaderError::SizeMismatch { cap: 8192, len },
            ),
            (header(4096, 0), 100, HeaderError::TooShort(100)),
            (
                header(4096, 0)[..20].to_vec(),
                len,
                HeaderError::TooShort(len),
            ),
            (vec![0; Header::LEN], len, HeaderError::BadMagic),
        ];
        for (bytes, len, why) in cases {
            assert_eq!(Header::parse(&bytes, len), Err(why));
        }
    }

    #[test]
    fn the_keepers_status_is_read_back_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring");
        let mut ring = Ring::create(&p, 4096).unwrap();
        assert_eq!(peek(&p).unwrap().status, Status::default());
        let size = tether_proto::WinSize {
            cols: 132,
            rows: 43,
        };
        ring.set_status(2, size);
        ring.append(b"hello");
        let h = peek(&p).unwrap();
        assert_eq!((h.end, h.status.clients, h.status.size), (5, 2, Some(size)));
    }

    #[test]
    fn a_damaged_end_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring");
        let mut ring = Ring::create(&p, 4096).unwrap();
        ring.append(b"hello");
        drop(ring);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        for err in [Ring::open(&p).err().unwrap(), peek(&p).unwrap_err()] {
            let RingError::Corrupt { path, why } = &err else {
                panic!("{err:?}")
            };
            assert_eq!((path, why), (&p, &HeaderError::ImpossibleEnd(u64::MAX)));
            let msg = err.to_string();
            assert!(
                msg.contains(&p.display().to_string())
                    && msg.contains("18446744073709551615")
                    && msg.contains("tether rm"),
                "{msg}"
            );
        }
    }

    #[test]
    fn ring_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring");
        // Also a file left with a looser mode is made private.
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        Ring::create(&p, 4096).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Header bytes that are sometimes valid: the magic or not, capacities
    /// and ends in range, at the edges, or anything.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        let cap = prop_oneof![
            MIN_RING_SIZE..=MIN_RING_SIZE + 64,
            Just(MAX_RING_SIZE),
            any::<u64>()
        ];
        let end = prop_oneof![
            0u64..100_000,
            MAX_END - 100_000..=MAX_END + 1,
            u64::MAX - 100_000..=u64::MAX,
            any::<u64>()
        ];
        (
            any::<bool>(),
            cap,
            end,
            proptest::collection::vec(any::<u8>(), 0..30),
        )
            .prop_map(
                |(magic, cap, end, junk)| {
                    if magic {
                        header(cap, end)
                    } else {
                        junk
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever a header says, a header that passes the check never
        /// makes `plan_read` point outside the file or before the start.
        #[test]
        fn no_header_plans_a_read_outside_the_file(
            bytes in header_bytes(),
            len_off in prop_oneof![Just(0u64), any::<u64>()],
            from in prop_oneof![0u64..200_000, any::<u64>()],
            max in 1usize..10_000_000,
        ) {
            // The file's length: what the header implies, or anything.
            let implied = bytes.get(8..16).map(|c| u64::from_le_bytes(c.try_into().unwrap()));
            let len = match (len_off, implied) {
                (0, Some(cap)) => (HEADER as u64).saturating_add(cap),
                (l, _) => l,
            };
            if let Ok(h) = Header::parse(&bytes, len) {
                let p = plan_read(h.cap, h.end, from, max);
                prop_assert!(HEADER as u64 + p.pos as u64 + p.len as u64 <= len);
                prop_assert!(p.offset >= h.start().0 && p.offset + p.len as u64 <= h.end);
                prop_assert!(p.len <= max);
            }
        }
    }

    #[test]
    fn reads_of_a_file_with_any_header_stay_inside_it() {
        // The same through `Ring::open` on real files, for a few headers at
        // the edges: open refuses, or every read lands in the map.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring");
        for (cap, end) in [(4096, 0), (4096, MAX_END), (4096, u64::MAX), (5000, 12345)] {
            Ring::create(&p, 4096).unwrap();
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[..Header::LEN].copy_from_slice(&header(cap, end));
            std::fs::write(&p, &bytes).unwrap();
            match Ring::open(&p) {
                Ok(r) => {
                    let mut out = Vec::new();
                    r.read_all(Offset(0), &mut out);
                    assert!(out.len() as u64 <= r.capacity());
                    assert_eq!((cap, r.end().0), (4096, end));
                }
                Err(e) => assert!(matches!(e, RingError::Corrupt { .. }), "{e}"),
            }
        }
    }
}
