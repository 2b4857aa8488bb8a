//! Primitive wire types (MQTT 5.0 section 1.5): a bounds-checked reader over
//! one frame and the matching writers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::bytestr::ByteStr;
use super::error::{DecodeError, EncodeError};

/// Largest value a four-byte Variable Byte Integer holds; also the largest
/// remaining length and Subscription Identifier.
pub(crate) const VARIABLE_BYTE_INTEGER_MAX: usize = 268_435_455;

/// Longest string or binary field: its length prefix is 16 bits.
pub(crate) const FIELD_LEN_MAX: usize = u16::MAX as usize;

pub(crate) enum Vbi {
    /// Value and how many bytes encoded it.
    Complete(u32, usize),
    Incomplete,
    /// More than four bytes, or not the shortest encoding (MQTT-1.5.5-1).
    Invalid,
}

/// Parses a Variable Byte Integer from the front of `bytes`.
pub(crate) fn parse_vbi(bytes: &[u8]) -> Vbi {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A zero final byte after the first adds nothing: a longer than
            // necessary encoding, which the spec forbids.
            if i > 0 && byte == 0 {
                return Vbi::Invalid;
            }
            return Vbi::Complete(value, i + 1);
        }
    }
    if bytes.len() >= 4 {
        Vbi::Invalid
    } else {
        Vbi::Incomplete
    }
}

pub(crate) fn vbi_len(value: usize) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Caller guarantees `value <= VARIABLE_BYTE_INTEGER_MAX`.
pub(crate) fn put_vbi(out: &mut BytesMut, value: usize) {
    debug_assert!(value <= VARIABLE_BYTE_INTEGER_MAX);
    let mut rest = value;
    loop {
        let low = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.put_u8(low);
            return;
        }
        out.put_u8(low | 0x80);
    }
}

/// Two-byte length prefix then the bytes; caller checked the length.
pub(crate) fn put_binary(out: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= FIELD_LEN_MAX);
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

pub(crate) fn put_str(out: &mut BytesMut, s: &ByteStr) {
    put_binary(out, s.as_bytes());
}

/// Wire size of a length-prefixed string or binary field.
pub(crate) fn field_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

pub(crate) fn check_field_len(bytes: &[u8], what: &'static str) -> Result<(), EncodeError> {
    if bytes.len() > FIELD_LEN_MAX {
        return Err(EncodeError::TooLong(what));
    }
    Ok(())
}

/// Cursor over one complete frame (or a part of it, such as the property
/// section). Every read is bounds-checked: running out of bytes means the
/// packet lied about its lengths, so it is malformed. Slices share the
/// frame's memory.
pub(crate) struct Reader {
    bytes: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next byte, not consumed.
    pub(crate) fn first(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        if self.bytes.is_empty() {
            return Err(DecodeError::Malformed(what));
        }
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        if self.bytes.len() < 2 {
            return Err(DecodeError::Malformed(what));
        }
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        if self.bytes.len() < 4 {
            return Err(DecodeError::Malformed(what));
        }
        Ok(self.bytes.get_u32())
    }

    pub(crate) fn vbi(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match parse_vbi(&self.bytes) {
            Vbi::Complete(value, len) => {
                self.bytes.advance(len);
                Ok(value)
            }
            Vbi::Incomplete | Vbi::Invalid => Err(DecodeError::Malformed(what)),
        }
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.bytes.len() {
            return Err(DecodeError::Malformed(what));
        }
        Ok(self.bytes.split_to(len))
    }

    /// Two-byte length prefix, then that many bytes.
    #[inline(always)]
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 string: well-formed, no U+0000 (MQTT-1.5.4-1, -2).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<ByteStr, DecodeError> {
        let bytes = self.binary(what)?;
        ByteStr::try_from_bytes(bytes).map_err(|_| DecodeError::Malformed(what))
    }

    /// A topic name: a string as [`Reader::string`] reads it, and whether it
    /// holds a wildcard character, found in the same pass.
    #[inline(always)]
    pub(crate) fn topic_name(&mut self) -> Result<(ByteStr, bool), DecodeError> {
        let bytes = self.binary("topic name")?;
        ByteStr::try_topic_from_bytes(bytes).map_err(|_| DecodeError::Malformed("topic name"))
    }

    /// Everything left; the payload of PUBLISH.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vbi_boundaries_round_trip() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            VARIABLE_BYTE_INTEGER_MAX,
        ] {
            let mut out = BytesMut::new();
            put_vbi(&mut out, value);
            assert_eq!(out.len(), vbi_len(value), "{value}");
            match parse_vbi(&out) {
                Vbi::Complete(parsed, len) => {
                    assert_eq!(parsed as usize, value);
                    assert_eq!(len, out.len());
                }
                _ => panic!("{value} did not parse"),
            }
        }
    }

    #[test]
    fn vbi_rejects_five_bytes_and_padding() {
        assert!(matches!(parse_vbi(&[0xFF, 0xFF, 0xFF, 0xFF]), Vbi::Invalid));
        assert!(matches!(parse_vbi(&[0xFF, 0xFF, 0xFF, 0x80]), Vbi::Invalid));
        assert!(matches!(parse_vbi(&[0x80, 0x00]), Vbi::Invalid));
        assert!(matches!(parse_vbi(&[0xFF, 0xFF, 0xFF]), Vbi::Incomplete));
        assert!(matches!(parse_vbi(&[]), Vbi::Incomplete));
    }

    #[test]
    fn reader_rejects_overlong_string() {
        let mut r = Reader::new(Bytes::from_static(&[0, 5, b'a', b'b']));
        assert_eq!(r.string("s"), Err(DecodeError::Malformed("s")));
    }

    #[test]
    fn reader_rejects_nul_and_bad_utf8() {
        let mut r = Reader::new(Bytes::from_static(&[0, 2, b'a', 0]));
        assert!(r.string("s").is_err());
        let mut r = Reader::new(Bytes::from_static(&[0, 3, 0xED, 0xA0, 0x80]));
        assert!(r.string("s").is_err(), "UTF-16 surrogate U+D800");
    }
}
