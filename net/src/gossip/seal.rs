//! Sealed gossip datagrams: encrypted, authenticated, bound to their
//! receiver, and accepted at most once. Pure: no sockets, no clock (the
//! time is passed in), no randomness (the sender instance is passed in).
//! [`transport`](super::transport) is the IO shell around it.
//!
//! # Datagram layout
//! ```text
//! 0..4      magic "TGS2" (the 2 is the layout's version; "TGS1" was MAC-only)
//! 4         flags: bit 0 = the plaintext was zstd-compressed before sealing;
//!           other bits must be 0
//! 5..21     sender instance: 16 random bytes drawn at each process start
//! 21..29    counter (u64 BE): 1, 2, 3... per instance, never reused
//! 29..37    send time, ms since the Unix epoch (u64 BE)
//! 37..55    receiver: the address the sender sent this datagram to, as
//!           IPv6 (IPv4 as ::ffff:a.b.c.d) (16) + port (u16 BE) (2)
//! 55..n-16  ciphertext of chitchat's envelope (ChaCha20-Poly1305)
//! n-16..n   Poly1305 tag over bytes 0..55 (associated data) + ciphertext
//! ```
//! Everything but the ciphertext travels in clear and is authenticated: a
//! flipped bit anywhere fails the tag. Compression happens only for a
//! chitchat message within [`OVERHEAD`] bytes of the largest datagram; in
//! that corner the ciphertext's length depends on the content's
//! redundancy (a CRIME-style side channel, narrow: it needs a message of
//! nearly 64 KiB, partly chosen by the attacker).
//!
//! # Keys and nonces
//! A secret gives a cluster key, `blake3::derive_key("tether gossip v2
//! cluster key", secret)`. A sender draws a random 128-bit instance at
//! start and seals with its own instance key, `blake3::keyed_hash(cluster
//! key, "instance key" || instance)`, under the nonce `0u32 || counter`.
//! Within a process the counter only grows (at `u64::MAX` the sender
//! draws a new instance rather than wrap), so a nonce is never repeated
//! under one key; after a restart the instance, hence the key, is new, so
//! counters starting again at 1 reuse nothing either (two starts drawing
//! the same 128-bit instance is the only way, with odds of 2^-128 per pair).
//! No state is kept on disk.
//!
//! # What binds a datagram to its receiver
//! The receiver field is in the associated data, and a member accepts only
//! datagrams addressed to one of its own addresses ([`Opener::new`]: the
//! address it advertises, and the one its socket is bound to). A datagram
//! captured on its way from A to B and replayed to C is authentic but
//! addressed to B: C refuses it as [`Reject::Misdirected`]. Replayed to B,
//! it meets B's window for A's instance and is [`Reject::Replayed`]. An
//! address, not a member ID, is what a sender knows of its peer when it
//! sends (chitchat sends to seed addresses before it knows who is there,
//! and answers to the address a message came from), so peers must reach a
//! member at the address it advertises.
//!
//! # A received datagram, check by check
//! 1. length and magic, else [`Reject::Malformed`];
//! 2. the tag, under the sender instance's key if the instance is known,
//!    else under each accepted secret's ([`Keyring`]: current, next,
//!    previous), else [`Reject::Forged`] (altered, forged, another
//!    cluster's, or a secret no longer accepted);
//! 3. flags and decompression, else [`Reject::Malformed`];
//! 4. the receiver field, else [`Reject::Misdirected`];
//! 5. the send time within [`MAX_SKEW_MS`] of now, else [`Reject::Stale`];
//! 6. the counter against the sender's sliding window ([`ReplayWindow`],
//!    [`REPLAY_WINDOW`] counters wide, IPsec style), else
//!    [`Reject::Replayed`]; a sender not yet known needs room in a table
//!    of [`MAX_SENDERS`], else [`Reject::TooManySenders`].
//!
//! The window's state lives in memory. A member that restarts forgets it:
//! a datagram sent to its previous process in the last [`MAX_SKEW_MS`] can
//! be accepted once by the new one. Such a datagram is an authentic, recent
//! chitchat message; chitchat's versioned state makes its content at worst
//! one round old.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The first bytes of every sealed datagram; the digit is the layout's
/// version.
pub const MAGIC: &[u8; 4] = b"TGS2";
/// Bytes before the ciphertext (all of them are associated data).
pub const HEADER_LEN: usize = 55;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest accepted difference between a datagram's send time and now.
pub const MAX_SKEW_MS: u64 = 120_000;
/// Same, as a description for docs and errors.
pub const MAX_SKEW: &str = "2 minutes";
/// How far behind the highest counter seen from a sender a datagram may
/// arrive and still be accepted (reordering). One sender's counter counts
/// its datagrams to every peer.
pub const REPLAY_WINDOW: u64 = (WINDOW_BLOCKS as u64 - 1) * 64;
/// Sender instances a member keeps replay windows for. Only datagrams that
/// pass the tag create an entry; when the table is full, entries silent
/// for longer than twice [`MAX_SKEW_MS`] are dropped (their datagrams are
/// stale by then), and if none is, a new sender is refused.
pub const MAX_SENDERS: usize = 1024;

const FLAG_ZSTD: u8 = 1;
const WINDOW_BLOCKS: usize = 32;

/// Which configured secret a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// `secret_file`: seals every datagram sent, and opens.
    Current,
    /// `next_secret_file`: opens only (first phase of a rotation).
    Next,
    /// `previous_secret_file`: opens only (second phase of a rotation).
    Previous,
}

impl KeyRole {
    /// Every role, in the order the metrics list them.
    pub const ALL: [KeyRole; 3] = [KeyRole::Current, KeyRole::Next, KeyRole::Previous];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            KeyRole::Current => "current",
            KeyRole::Next => "next",
            KeyRole::Previous => "previous",
        }
    }
}

/// The key of a cluster, derived from its secret.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// Derives the key from the secret file's contents.
    pub fn from_secret(secret: &[u8]) -> Self {
        ClusterKey(blake3::derive_key("tether gossip v2 cluster key", secret))
    }

    /// The AEAD key of one sender instance.
    fn instance_key(&self, instance: u128) -> LessSafeKey {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"instance key");
        h.update(&instance.to_be_bytes());
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, h.finalize().as_bytes())
            .expect("a 32-byte ChaCha20-Poly1305 key");
        LessSafeKey::new(unbound)
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The keys a member opens datagrams with: the current one, which also
/// seals, and those of a rotation in progress.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<(KeyRole, ClusterKey)>,
}

impl Keyring {
    /// A keyring with only the current key.
    pub fn new(current: ClusterKey) -> Self {
        Keyring {
            keys: vec![(KeyRole::Current, current)],
        }
    }

    /// Also opens datagrams sealed with `key` (never seals with it).
    pub fn accepting(mut self, role: KeyRole, key: ClusterKey) -> Self {
        self.keys.push((role, key));
        self
    }

    /// The key every datagram is sealed with.
    pub fn current(&self) -> &ClusterKey {
        &self.keys[0].1
    }
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// Too short, bad magic or version, unknown flags, or a payload that
    /// does not decompress or decode.
    #[error("malformed")]
    Malformed,
    /// The tag does not verify: forged, altered, another cluster's, or
    /// sealed with a secret this member no longer accepts.
    #[error("does not verify (forged, altered, or another or retired secret)")]
    Forged,
    /// Authentic, but addressed to another member: a replay, or peers
    /// reach this member at an address it does not advertise.
    #[error("addressed to another member")]
    Misdirected,
    /// Sent too long ago, or in the future.
    #[error("send time outside the accepted window")]
    Stale,
    /// Accepted already, or too far behind the sender's newest datagram.
    #[error("replayed")]
    Replayed,
    /// A new sender instance, and the table of senders is full.
    #[error("too many sender instances")]
    TooManySenders,
}

impl Reject {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Reject; 6] = [
        Reject::Forged,
        Reject::Misdirected,
        Reject::Replayed,
        Reject::Stale,
        Reject::Malformed,
        Reject::TooManySenders,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Forged => "forged",
            Reject::Misdirected => "misdirected",
            Reject::Stale => "stale",
            Reject::Replayed => "replayed",
            Reject::TooManySenders => "too_many_senders",
        }
    }

    /// Index in [`Reject::ALL`].
    pub fn index(self) -> usize {
        Reject::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed")
    }
}

/// Why a payload could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Even compressed, the payload does not fit a datagram.
    #[error("a gossip message of {len} bytes does not fit a datagram even compressed")]
    TooLarge {
        /// The payload's length.
        len: usize,
    },
    /// The instance sealed `u64::MAX` datagrams: make a new [`Sealer`]
    /// with a new instance.
    #[error("the sender instance's counter is used up; start a new instance")]
    CounterExhausted,
}

/// The sending side of one process: its instance, its counter, its key.
pub struct Sealer {
    instance: u128,
    counter: u64,
    key: LessSafeKey,
}

impl Sealer {
    /// A sender sealing with `key` as `instance`, which must be random
    /// (see the module doc: a repeated instance repeats nonces).
    pub fn new(key: &ClusterKey, instance: u128) -> Self {
        Sealer {
            instance,
            counter: 0,
            key: key.instance_key(instance),
        }
    }

    /// The sender instance.
    pub fn instance(&self) -> u128 {
        self.instance
    }

    /// Seals `payload`, sent at `time_ms` to `to`, into `out`. Payloads
    /// that would not fit a datagram are compressed first.
    pub fn seal(
        &mut self,
        time_ms: u64,
        to: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let counter = self
            .counter
            .checked_add(1)
            .ok_or(SealError::CounterExhausted)?;
        let compressed;
        let (flags, body) = if payload.len() + OVERHEAD > MAX_DATAGRAM {
            compressed = zstd::bulk::compress(payload, 1)
                .map_err(|_| SealError::TooLarge { len: payload.len() })?;
            (FLAG_ZSTD, &compressed[..])
        } else {
            (0, payload)
        };
        if body.len() + OVERHEAD > MAX_DATAGRAM {
            return Err(SealError::TooLarge { len: payload.len() });
        }
        self.counter = counter;
        out.clear();
        out.extend_from_slice(MAGIC);
        out.push(flags);
        out.extend_from_slice(&self.instance.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&time_ms.to_be_bytes());
        out.extend_from_slice(&receiver_bytes(to));
        debug_assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(body);
        let (header, text) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*header), text)
            .expect("ChaCha20-Poly1305 seals any datagram-sized input");
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// A sealer whose next counter is `next` (tests of exhaustion).
    #[cfg(test)]
    fn at_counter(mut self, next: u64) -> Self {
        self.counter = next - 1;
        self
    }
}

/// The nonce of a counter: 4 zero bytes, then the counter (BE).
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn receiver_bytes(to: SocketAddr) -> [u8; 18] {
    let ip = match to.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut b = [0u8; 18];
    b[..16].copy_from_slice(&ip.octets());
    b[16..].copy_from_slice(&to.port().to_be_bytes());
    b
}

/// The address a datagram says it was sent to, read from its header
/// without checking anything (for logs).
pub fn receiver_of(d: &[u8]) -> Option<SocketAddr> {
    if d.len() < HEADER_LEN || &d[..4] != MAGIC {
        return None;
    }
    let ip: [u8; 16] = d[37..53].try_into().expect("16 bytes");
    let port = u16::from_be_bytes([d[53], d[54]]);
    Some(SocketAddr::new(Ipv6Addr::from(ip).to_canonical(), port))
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// A datagram that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// The sender instance.
    pub instance: u128,
    /// Its counter.
    pub counter: u64,
    /// The secret it was sealed with.
    pub key: KeyRole,
    /// The chitchat envelope, decompressed.
    pub payload: Vec<u8>,
}

/// The counters seen from one sender instance: the highest, and which of
/// the [`REPLAY_WINDOW`] before it (RFC 6479's ring of bitmap blocks).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    top: u64,
    blocks: [u64; WINDOW_BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            blocks: [0; WINDOW_BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` is new: above the highest seen, or within the
    /// window and not seen.
    pub fn is_new(&self, counter: u64) -> bool {
        if counter > self.top {
            return true;
        }
        if self.top - counter >= REPLAY_WINDOW {
            return false;
        }
        let (block, bit) = Self::slot(counter);
        self.blocks[block] & (1 << bit) == 0
    }

    /// Marks `counter` seen (call after [`ReplayWindow::is_new`]).
    pub fn mark(&mut self, counter: u64) {
        if counter > self.top {
            let (from, to) = (self.top >> 6, counter >> 6);
            let advance = (to - from).min(WINDOW_BLOCKS as u64);
            for i in 1..=advance {
                self.blocks[((from + i) % WINDOW_BLOCKS as u64) as usize] = 0;
            }
            self.top = counter;
        }
        let (block, bit) = Self::slot(counter);
        self.blocks[block] |= 1 << bit;
    }

    fn slot(counter: u64) -> (usize, u64) {
        (
            ((counter >> 6) % WINDOW_BLOCKS as u64) as usize,
            counter & 63,
        )
    }
}

struct Sender {
    key: LessSafeKey,
    role: KeyRole,
    window: ReplayWindow,
    last_ms: u64,
}

/// The receiving side of one member: its keys, its addresses, and a
/// replay window per sender instance.
pub struct Opener {
    keys: Keyring,
    own: Vec<SocketAddr>,
    senders: HashMap<u128, Sender>,
    max_senders: usize,
}

impl Opener {
    /// A receiver that opens with `keys` and answers to the addresses in
    /// `own` (those with port 0 are ignored).
    pub fn new(keys: Keyring, own: impl IntoIterator<Item = SocketAddr>) -> Self {
        let mut own: Vec<SocketAddr> = own
            .into_iter()
            .filter(|a| a.port() != 0)
            .map(canonical)
            .collect();
        own.sort();
        own.dedup();
        Opener {
            keys,
            own,
            senders: HashMap::new(),
            max_senders: MAX_SENDERS,
        }
    }

    /// The addresses this member answers to.
    pub fn own(&self) -> &[SocketAddr] {
        &self.own
    }

    /// Sender instances with a replay window now.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Checks a datagram received at `now_ms` (ms since the epoch) and
    /// returns its payload; see the module doc for the checks.
    pub fn open(&mut self, d: &[u8], now_ms: u64) -> Result<Opened, Reject> {
        if d.len() < OVERHEAD || &d[..4] != MAGIC {
            return Err(Reject::Malformed);
        }
        let (header, sealed) = d.split_at(HEADER_LEN);
        let u64_at = |i: usize| u64::from_be_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let instance = u128::from_be_bytes(header[5..21].try_into().expect("16 bytes"));
        let counter = u64_at(21);
        let time_ms = u64_at(29);
        let mut text = sealed.to_vec();
        let open = |key: &LessSafeKey, text: &mut Vec<u8>| {
            let n = key
                .open_in_place(nonce(counter), Aad::from(header), text)
                .ok()?
                .len();
            text.truncate(n);
            Some(())
        };
        let fresh = match self.senders.get(&instance) {
            Some(s) => {
                open(&s.key, &mut text).ok_or(Reject::Forged)?;
                None
            }
            None => {
                let mut found = None;
                for (role, key) in &self.keys.keys {
                    let k = key.instance_key(instance);
                    let mut attempt = sealed.to_vec();
                    if open(&k, &mut attempt).is_some() {
                        text = attempt;
                        found = Some((*role, k));
                        break;
                    }
                }
                Some(found.ok_or(Reject::Forged)?)
            }
        };
        let flags = header[4];
        if flags & !FLAG_ZSTD != 0 {
            return Err(Reject::Malformed);
        }
        if flags & FLAG_ZSTD != 0 {
            text = zstd::bulk::decompress(&text, MAX_DATAGRAM).map_err(|_| Reject::Malformed)?;
        }
        let to = receiver_of(d).expect("the header was read");
        if !self.own.contains(&to) {
            return Err(Reject::Misdirected);
        }
        if time_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Reject::Stale);
        }
        let role = match fresh {
            None => {
                let s = self.senders.get_mut(&instance).expect("known sender");
                if !s.window.is_new(counter) {
                    return Err(Reject::Replayed);
                }
                s.window.mark(counter);
                s.last_ms = s.last_ms.max(now_ms);
                s.role
            }
            Some((role, key)) => {
                if self.senders.len() >= self.max_senders {
                    // Silent for twice the skew: every datagram it sent
                    // before is stale now, so its window is not needed.
                    self.senders
                        .retain(|_, s| now_ms.saturating_sub(s.last_ms) <= 2 * MAX_SKEW_MS);
                }
                if self.senders.len() >= self.max_senders {
                    return Err(Reject::TooManySenders);
                }
                let mut window = ReplayWindow::default();
                window.mark(counter);
                self.senders.insert(
                    instance,
                    Sender {
                        key,
                        role,
                        window,
                        last_ms: now_ms,
                    },
                );
                role
            }
        };
        Ok(Opened {
            instance,
            counter,
            key: role,
            payload: text,
        })
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
