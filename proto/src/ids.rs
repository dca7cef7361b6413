//! Identities: [`SessionId`], [`NodeId`] and byte [`Offset`]s.
//!
//! A session ID is 128 bits: 96 random bits followed by a 32-bit tag of
//! the owning node, so that a relay can route a full ID to its node before
//! gossip has spread. It prints in a lowercase base32 alphabet without
//! ambiguous letters (26 characters); any unique prefix of it is accepted
//! where a session is named.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Crockford-style base32 alphabet, lowercase: no i, l, o, u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// How many characters [`SessionId::short`] prints.
pub const SHORT_ID_LEN: usize = 10;

/// Why an identity could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseIdError {
    /// The text has a character outside the ID alphabet.
    #[error("'{0}' is not a valid ID character (IDs use 0-9 and a-z without i, l, o, u)")]
    BadChar(char),
    /// The text has the wrong length for a full ID.
    #[error("an ID has {expected} characters, this has {got}")]
    BadLength {
        /// Characters a full ID has.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// The first character of a full ID is too large: it would carry bits
    /// past the ID's end (only one text spells each ID).
    #[error("a full ID cannot start with '{0}'; did you mean an ID printed by tether?")]
    BadFirst(char),
}

fn encode_base32(bytes: &[u8]) -> String {
    let bits = bytes.len() * 8;
    let chars = bits.div_ceil(5);
    let mut out = String::with_capacity(chars);
    // Big-endian bit stream, left-padded with zero bits to a multiple of 5.
    let pad = chars * 5 - bits;
    let mut acc: u32 = 0;
    let mut nacc = pad as u32;
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        nacc += 8;
        while nacc >= 5 {
            nacc -= 5;
            out.push(ALPHABET[((acc >> nacc) & 31) as usize] as char);
        }
        acc &= (1 << nacc) - 1;
    }
    debug_assert_eq!(nacc, 0);
    out
}

fn char_value(c: char) -> Result<u8, ParseIdError> {
    let c = c.to_ascii_lowercase();
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u8)
        .ok_or(ParseIdError::BadChar(c))
}

fn decode_base32<const N: usize>(s: &str) -> Result<[u8; N], ParseIdError> {
    let chars = (N * 8).div_ceil(5);
    let n = s.chars().count();
    if n != chars {
        return Err(ParseIdError::BadLength {
            expected: chars,
            got: n,
        });
    }
    let pad = chars * 5 - N * 8;
    let mut out = [0u8; N];
    let mut acc: u64 = 0;
    let mut nacc: i32 = -(pad as i32);
    let mut i = 0;
    for (k, c) in s.chars().enumerate() {
        let v = char_value(c)? as u64;
        if k == 0 && v >> (5 - pad) != 0 {
            return Err(ParseIdError::BadFirst(c));
        }
        acc = (acc << 5) | v;
        nacc += 5;
        if nacc >= 8 {
            nacc -= 8;
            out[i] = (acc >> nacc) as u8;
            i += 1;
            acc &= (1 << nacc) - 1;
        }
    }
    Ok(out)
}

/// Checks that `prefix` only uses ID characters, so a typo is reported as
/// such rather than as "no such session".
pub fn validate_prefix(prefix: &str) -> Result<(), ParseIdError> {
    prefix.chars().try_for_each(|c| char_value(c).map(|_| ()))
}

/// The identity of a node: 64 bits derived with blake3 from its public key.
/// Serialized as its text form in human-readable formats (JSON), as raw
/// bytes on the wire (msgpack).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 8]);

impl NodeId {
    /// Derives a node ID from the DER bytes of the node's public key.
    pub fn from_public_key(spki_der: &[u8]) -> Self {
        let h = blake3::derive_key("tether node id v1", spki_der);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        NodeId(id)
    }

    /// The 32-bit tag folded into the IDs of this node's sessions.
    pub fn tag(&self) -> [u8; 4] {
        let mut t = [0u8; 4];
        t.copy_from_slice(&self.0[..4]);
        t
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_base32(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_base32::<8>(s).map(NodeId)
    }
}

/// The identity of a session, unique across a fleet. Serialized like
/// [`NodeId`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

macro_rules! id_serde {
    ($t:ident, $n:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
                    let a: [u8; $n] = b.as_slice().try_into().map_err(|_| {
                        serde::de::Error::invalid_length(b.len(), &concat!($n, " bytes"))
                    })?;
                    Ok($t(a))
                }
            }
        }
    };
}

id_serde!(NodeId, 8);
id_serde!(SessionId, 16);

impl SessionId {
    /// A new ID: 96 random bits, then the owner node's tag.
    pub fn generate(owner: NodeId) -> Self {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id[..12]).expect("the OS random source failed");
        id[12..].copy_from_slice(&owner.tag());
        SessionId(id)
    }

    /// The tag of the node that created this session.
    pub fn owner_tag(&self) -> [u8; 4] {
        let mut t = [0u8; 4];
        t.copy_from_slice(&self.0[12..]);
        t
    }

    /// The short, copyable form (a prefix of the full form).
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_LEN);
        s
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_base32(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_base32::<16>(s).map(SessionId)
    }
}

/// An absolute byte offset into a session's output, counted from its start.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default, Debug,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn session_id_roundtrip(bytes in any::<[u8; 16]>()) {
            let id = SessionId(bytes);
            let s = id.to_string();
            prop_assert_eq!(s.len(), 26);
            prop_assert_eq!(s.parse::<SessionId>().unwrap(), id);
            prop_assert!(s.starts_with(&id.short()));
        }

        #[test]
        fn node_id_roundtrip(bytes in any::<[u8; 8]>()) {
            let id = NodeId(bytes);
            prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        }

        #[test]
        fn order_is_preserved(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            // Base32 big-endian keeps byte order, so prefixes group naturally.
            prop_assert_eq!(a.cmp(&b), SessionId(a).to_string().cmp(&SessionId(b).to_string()));
        }
    }

    #[test]
    fn ids_are_text_in_json_and_bytes_in_msgpack() {
        let id = SessionId([7; 16]);
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<SessionId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"zz\"").is_err());
        let m = rmp_serde::to_vec(&id).unwrap();
        assert_eq!(m.len(), 18, "bin8 header + 16 bytes");
        assert_eq!(rmp_serde::from_slice::<SessionId>(&m).unwrap(), id);
    }

    #[test]
    fn generated_ids_carry_owner_tag() {
        let node = NodeId([1, 2, 3, 4, 5, 6, 7, 8]);
        let a = SessionId::generate(node);
        let b = SessionId::generate(node);
        assert_ne!(a, b);
        assert_eq!(a.owner_tag(), [1, 2, 3, 4]);
    }

    #[test]
    fn bad_input_is_explained() {
        assert_eq!(
            "zz".parse::<SessionId>(),
            Err(ParseIdError::BadLength {
                expected: 26,
                got: 2
            })
        );
        assert!(matches!(
            "u".repeat(26).parse::<SessionId>(),
            Err(ParseIdError::BadChar('u'))
        ));
        assert!(validate_prefix("7f3k").is_ok());
        assert!(validate_prefix("7f-").is_err());
    }
}
