//! The inter-node frame header, checked before a body is read (sans-IO).
//!
//! A frame is `version u8, kind u8, flags u8, reserved u8, body length u32
//! little-endian`, then the body. Kinds below `LOGIC_KIND_MIN` belong to
//! this layer (handshake, data stream opening); the others are opaque here
//! and handed upwards (`cluster::logic` decodes their rkyv bodies).

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits;

/// The one frame version this build speaks; a peer sending another is cut.
pub const FRAME_VERSION: u8 = 1;

pub const HEADER_LEN_BYTES: usize = 8;

/// Kind 0: the handshake, first frame each way on the control stream.
pub const KIND_HELLO: u8 = 0;
/// Kind 1: first frame of a data stream, naming the sending shard (u16 LE).
pub const KIND_DATA_OPEN: u8 = 1;
/// Kinds from here on are `cluster::logic`'s.
pub const LOGIC_KIND_MIN: u8 = 16;

/// A checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub flags: u8,
    pub len_bytes: u32,
}

/// Why a header was refused; the link is closed with this as the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame version {0}, this node speaks {FRAME_VERSION}")]
    Version(u8),
    #[error("frame of {len_bytes} bytes over the cap of {max_bytes} (kind {kind})")]
    TooLong {
        kind: u8,
        len_bytes: u32,
        max_bytes: u32,
    },
    #[error("frame kind {0} is not expected here")]
    UnexpectedKind(u8),
    #[error("reserved header byte is {0}, must be 0")]
    Reserved(u8),
}

/// Decodes and checks a header: the version, the reserved byte, and the
/// length against the cap for its kind, before any body byte is read.
pub fn decode_header(raw: &[u8; HEADER_LEN_BYTES]) -> Result<Header, FrameError> {
    let header = Header {
        version: raw[0],
        kind: raw[1],
        flags: raw[2],
        len_bytes: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
    };
    if header.version != FRAME_VERSION {
        return Err(FrameError::Version(header.version));
    }
    if raw[3] != 0 {
        return Err(FrameError::Reserved(raw[3]));
    }
    let max_bytes = match header.kind {
        KIND_HELLO => limits::CLUSTER_HELLO_LEN_MAX_BYTES,
        KIND_DATA_OPEN => 2,
        _ => limits::CLUSTER_FRAME_LEN_MAX_BYTES,
    };
    if header.len_bytes > max_bytes {
        return Err(FrameError::TooLong {
            kind: header.kind,
            len_bytes: header.len_bytes,
            max_bytes,
        });
    }
    Ok(header)
}

/// Header and body in one buffer, ready for one stream write.
pub fn encode(kind: u8, body: &[u8]) -> Bytes {
    let len = u32::try_from(body.len()).expect("frame bodies are capped far below 4 GiB");
    let mut buf = BytesMut::with_capacity(HEADER_LEN_BYTES + body.len());
    buf.put_u8(FRAME_VERSION);
    buf.put_u8(kind);
    buf.put_u8(0);
    buf.put_u8(0);
    buf.put_u32_le(len);
    buf.put_slice(body);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bytes: &[u8]) -> [u8; HEADER_LEN_BYTES] {
        bytes.try_into().unwrap()
    }

    #[test]
    fn an_encoded_frame_decodes() {
        let frame = encode(42, b"hello");
        let header = decode_header(&raw(&frame[..8])).unwrap();
        assert_eq!(
            header,
            Header {
                version: FRAME_VERSION,
                kind: 42,
                flags: 0,
                len_bytes: 5
            }
        );
        assert_eq!(&frame[8..], b"hello");
    }

    #[test]
    fn bad_headers_are_refused_before_the_body() {
        assert_eq!(
            decode_header(&raw(&[9, 16, 0, 0, 1, 0, 0, 0])),
            Err(FrameError::Version(9))
        );
        assert_eq!(
            decode_header(&raw(&[1, 16, 0, 7, 1, 0, 0, 0])),
            Err(FrameError::Reserved(7))
        );
        let over = limits::CLUSTER_FRAME_LEN_MAX_BYTES + 1;
        let mut h = [1, 16, 0, 0, 0, 0, 0, 0];
        h[4..].copy_from_slice(&over.to_le_bytes());
        assert!(matches!(
            decode_header(&h),
            Err(FrameError::TooLong { kind: 16, .. })
        ));
        // A handshake has a much smaller cap than logic frames.
        let mut h = [1, KIND_HELLO, 0, 0, 0, 0, 0, 0];
        h[4..].copy_from_slice(&(limits::CLUSTER_HELLO_LEN_MAX_BYTES + 1).to_le_bytes());
        assert!(decode_header(&h).is_err());
        assert!(decode_header(&raw(&[1, KIND_DATA_OPEN, 0, 0, 3, 0, 0, 0])).is_err());
    }
}
