//! Framing: every message on a tether stream is one frame.
//!
//! ```text
//! +--------+----------------+---------------------------+
//! | tag u8 | length u32 BE  | payload (length bytes)    |
//! +--------+----------------+---------------------------+
//! ```
//! - `TAG_CONTROL`: a msgpack map (see [`crate::msg`]);
//! - `TAG_OUTPUT`: offset u64 BE, then raw terminal bytes;
//! - `TAG_INPUT`: raw bytes typed into the session.
//!
//! Terminal bytes are never msgpack-encoded: they travel as they are, with
//! the absolute offset of their first byte, so a client can check that it
//! received every byte once.

use crate::ids::Offset;

/// Largest payload a frame may carry. A peer announcing a larger one is
/// refused before anything is allocated.
pub const MAX_FRAME_SIZE: usize = 1 << 20;

/// Largest chunk of terminal output put into one `Output` frame.
pub const MAX_OUTPUT_CHUNK: usize = 64 * 1024;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;

const TAG_CONTROL: u8 = 1;
const TAG_OUTPUT: u8 = 2;
const TAG_INPUT: u8 = 3;

/// One frame of a tether stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A msgpack-encoded control message.
    Control(Vec<u8>),
    /// Terminal output whose first byte is at `offset`.
    Output {
        /// Absolute offset of `data[0]` in the session's output.
        offset: Offset,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Bytes typed by a client.
    Input(Vec<u8>),
}

/// Why bytes could not be decoded into a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame announces a payload larger than [`MAX_FRAME_SIZE`].
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME_SIZE}")]
    TooLarge(usize),
    /// The tag byte is not one this version knows.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// An output frame is too short to hold its offset.
    #[error("output frame of {0} bytes has no room for its offset")]
    ShortOutput(usize),
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Control(b) => {
                Self::header(out, TAG_CONTROL, b.len());
                out.extend_from_slice(b);
            }
            Frame::Output { offset, data } => {
                encode_output_header(out, *offset, data.len());
                out.extend_from_slice(data);
            }
            Frame::Input(b) => {
                Self::header(out, TAG_INPUT, b.len());
                out.extend_from_slice(b);
            }
        }
    }

    /// The encoded frame as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    fn header(out: &mut Vec<u8>, tag: u8, len: usize) {
        debug_assert!(len <= MAX_FRAME_SIZE);
        out.push(tag);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (read more),
    /// `Ok(Some((frame, used)))` when a whole frame was read, and an error
    /// when the bytes can never become a valid frame.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            // A bad tag is reported as soon as it arrives.
            if let Some(&t) = buf.first() {
                check_tag(t)?;
            }
            return Ok(None);
        };
        let tag = check_tag(head[0])?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME_SIZE {
            return Err(DecodeError::TooLarge(len));
        }
        if tag == TAG_OUTPUT && len < 8 {
            return Err(DecodeError::ShortOutput(len));
        }
        let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let frame = match tag {
            TAG_CONTROL => Frame::Control(payload.to_vec()),
            TAG_INPUT => Frame::Input(payload.to_vec()),
            _ => {
                let mut o = [0u8; 8];
                o.copy_from_slice(&payload[..8]);
                Frame::Output {
                    offset: Offset(u64::from_be_bytes(o)),
                    data: payload[8..].to_vec(),
                }
            }
        };
        Ok(Some((frame, HEADER_LEN + len)))
    }
}

/// Writes the header of an output frame carrying `len` bytes from `offset`,
/// so a sender can append the bytes straight from its buffer.
pub fn encode_output_header(out: &mut Vec<u8>, offset: Offset, len: usize) {
    Frame::header(out, TAG_OUTPUT, len + 8);
    out.extend_from_slice(&offset.0.to_be_bytes());
}

fn check_tag(t: u8) -> Result<u8, DecodeError> {
    match t {
        TAG_CONTROL | TAG_OUTPUT | TAG_INPUT => Ok(t),
        other => Err(DecodeError::UnknownTag(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Control),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Input),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(o, data)| {
                Frame::Output {
                    offset: Offset(o),
                    data,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip_any_split(frames in proptest::collection::vec(arb_frame(), 1..8), cut in any::<prop::sample::Index>()) {
            let mut wire = Vec::new();
            for f in &frames { f.encode_into(&mut wire); }
            // Feed the bytes in two pieces at an arbitrary point, as a socket would.
            let cut = cut.index(wire.len() + 1);
            let mut buf = wire[..cut].to_vec();
            let mut got = Vec::new();
            let mut rest = &wire[cut..];
            loop {
                match Frame::decode(&buf).unwrap() {
                    Some((f, used)) => { got.push(f); buf.drain(..used); }
                    None if !rest.is_empty() => { buf.extend_from_slice(rest); rest = &[]; }
                    None => break,
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(&bytes);
        }
    }

    #[test]
    fn oversized_is_refused_from_header_alone() {
        let mut b = vec![TAG_INPUT];
        b.extend_from_slice(&((MAX_FRAME_SIZE + 1) as u32).to_be_bytes());
        assert_eq!(
            Frame::decode(&b),
            Err(DecodeError::TooLarge(MAX_FRAME_SIZE + 1))
        );
    }

    #[test]
    fn bad_tag_and_short_output() {
        assert_eq!(Frame::decode(&[9]), Err(DecodeError::UnknownTag(9)));
        assert_eq!(
            Frame::decode(&[TAG_OUTPUT, 0, 0, 0, 3, 1, 2, 3]),
            Err(DecodeError::ShortOutput(3))
        );
        assert_eq!(Frame::decode(&[TAG_CONTROL, 0, 0]), Ok(None));
    }
}
