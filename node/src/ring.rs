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
//! 32..40  pending end: the end plus the bytes a PTY read may be writing
//!         into the data area now (for the keeper's screen thread)
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
use std::sync::atomic::{AtomicU64, Ordering};
use tether_proto::Offset;

const MAGIC: &[u8; 8] = b"TTHRING1";
/// Header bytes of the end offset.
const END: usize = 16;
/// Header bytes of the pending end (see the layout).
const PENDING: usize = 32;
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
        self.store(PENDING, self.end + data.len() as u64);
        while !data.is_empty() {
            let pos = (self.end % self.cap) as usize;
            let n = data.len().min(self.cap as usize - pos);
            self.map[HEADER + pos..HEADER + pos + n].copy_from_slice(&data[..n]);
            self.end += n as u64;
            data = &data[n..];
        }
        // The end is published after the bytes, so a reader of a file whose
        // writer died never sees an end beyond what was written.
        self.publish_end();
    }

    /// Stores the end offset in the header, after the bytes it counts: an
    /// atomic store, for the keeper's screen thread ([`RingView`]), which
    /// reads the same page.
    fn publish_end(&mut self) {
        self.store(END, self.end);
        self.store(PENDING, self.end);
    }

    /// Stores a u64 of the header at byte `at` (8-aligned) atomically.
    fn store(&mut self, at: usize, v: u64) {
        let p = self.map[at..at + 8].as_mut_ptr().cast::<u64>();
        // SAFETY: the map is page-aligned and `at` a multiple of 8, so this
        // is an aligned u64 that lives as long as the map; every access to
        // it in this process goes through atomics.
        let a = unsafe { AtomicU64::from_ptr(p) };
        a.store(v.to_le(), Ordering::SeqCst);
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
        // Before the kernel writes there: a reader in this process
        // ([`RingView`]) must not trust those bytes meanwhile.
        self.store(PENDING, self.end + n as u64);
        &mut self.map[HEADER + pos..HEADER + pos + n]
    }

    /// Counts `n` bytes written into [`Ring::spare`] as output.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.cap - self.end % self.cap);
        self.end += n as u64;
        self.publish_end();
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

/// A second, read-only mapping of a ring that its writer appends to
/// meanwhile, in this process: the keeper's screen thread reads the output
/// through it, behind the writer.
pub struct RingView {
    map: memmap2::Mmap,
    cap: u64,
}

impl RingView {
    /// Maps the ring file at `path` (written by a [`Ring`] of this
    /// process) for reading.
    pub fn open(path: &Path) -> Result<RingView, RingError> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        // SAFETY: the file is the keeper's own ring; it is never truncated
        // while the keeper runs.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let h = Header::parse(&map[..Header::LEN.min(map.len())], len).map_err(|why| {
            RingError::Corrupt {
                path: path.to_path_buf(),
                why,
            }
        })?;
        Ok(RingView { map, cap: h.cap })
    }

    /// The end offset the writer published last.
    pub fn end(&self) -> Offset {
        Offset(self.load(END))
    }

    fn load(&self, at: usize) -> u64 {
        let p = self.map[at..at + 8].as_ptr().cast::<u64>().cast_mut();
        // SAFETY: as in `Ring::store`; the atomic is only loaded through
        // this read-only mapping.
        let a = unsafe { AtomicU64::from_ptr(p) };
        u64::from_le(a.load(Ordering::SeqCst))
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Copies up to `max` bytes from `from` (which must not be past the
    /// end) into `out`. Returns false when the writer overwrote part of
    /// them meanwhile (or had already): the caller is more than a ring
    /// behind and must skip ahead.
    pub fn copy(&self, from: Offset, max: usize, out: &mut Vec<u8>) -> bool {
        let end = self.end().0;
        let p = plan_read(self.cap, end, from.0, max);
        if p.gap_to.is_some() {
            return false;
        }
        out.extend_from_slice(&self.map[HEADER + p.pos..HEADER + p.pos + p.len]);
        // The writer may have lapped us while we copied, or be reading the
        // PTY into the oldest bytes now: what it may have written over
        // ends at the pending end.
        self.load(PENDING).max(self.load(END)) - from.0 <= self.cap
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
#[path = "ring_tests.rs"]
mod tests;
