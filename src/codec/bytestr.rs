//! `ByteStr`: an MQTT UTF-8 string held in `Bytes`, so topics decoded from a
//! socket buffer share its memory instead of being copied.

use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Why bytes are not an MQTT UTF-8 string (MQTT 5.0 section 1.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Utf8Error {
    #[error("not well-formed UTF-8")]
    NotUtf8,
    #[error("contains U+0000")]
    NullCharacter,
    #[error("longer than 65535 bytes")]
    TooLong,
}

/// Immutable, cheaply cloned, validated UTF-8 string.
#[derive(Clone, Default)]
pub struct ByteStr(Bytes);

impl ByteStr {
    pub const fn from_static(s: &'static str) -> ByteStr {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }

    /// Validates MQTT string rules: well-formed UTF-8 (Rust's decoder already
    /// refuses surrogates), no U+0000, at most 65535 bytes.
    pub fn try_from_bytes(bytes: Bytes) -> Result<ByteStr, Utf8Error> {
        if bytes.len() > u16::MAX as usize {
            return Err(Utf8Error::TooLong);
        }
        // Topics and client ids are nearly always ASCII: one pass checks
        // that and the absence of NUL, where the general path takes two.
        if bytes.iter().all(|&b| b.wrapping_sub(1) < 0x7F) {
            return Ok(ByteStr(bytes));
        }
        let s = std::str::from_utf8(&bytes).map_err(|_| Utf8Error::NotUtf8)?;
        if s.as_bytes().contains(&0) {
            return Err(Utf8Error::NullCharacter);
        }
        Ok(ByteStr(bytes))
    }

    /// [`ByteStr::try_from_bytes`] for a topic name, and whether it holds a
    /// wildcard character (`+` or `#`), in one pass over the (nearly always
    /// ASCII) bytes instead of one for the string check and one for the
    /// wildcard scan.
    #[inline(always)]
    pub(crate) fn try_topic_from_bytes(bytes: Bytes) -> Result<(ByteStr, bool), Utf8Error> {
        let mut plain = true;
        let mut wildcard = false;
        for &b in bytes.iter() {
            plain &= b.wrapping_sub(1) < 0x7F;
            wildcard |= b == b'+' || b == b'#';
        }
        if plain && bytes.len() <= u16::MAX as usize {
            return Ok((ByteStr(bytes), wildcard));
        }
        // Non-ASCII, NUL or too long: the general check decides.
        Ok((ByteStr::try_from_bytes(bytes)?, wildcard))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates UTF-8 or starts from a &str.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ByteStr {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for ByteStr {}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for ByteStr {
    // Must hash like `str` so `HashMap<ByteStr, _>::get(&str)` works.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for ByteStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByteStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> ByteStr {
        ByteStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> ByteStr {
        ByteStr(Bytes::from(s.into_bytes()))
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &'static [u8]) -> Result<ByteStr, Utf8Error> {
        ByteStr::try_from_bytes(Bytes::from_static(bytes))
    }

    #[test]
    fn ascii_fast_path_and_general_path_agree() {
        assert_eq!(check(b"a/b/c").unwrap(), "a/b/c");
        assert_eq!(check(b"").unwrap(), "");
        assert_eq!(check(b"\x7f~").unwrap(), "\x7f~");
        assert_eq!(check("a/ü/€".as_bytes()).unwrap(), "a/ü/€");
        assert_eq!(check(b"\0").unwrap_err(), Utf8Error::NullCharacter);
        assert_eq!(check(b"a/b\0").unwrap_err(), Utf8Error::NullCharacter);
        assert_eq!(
            check("ü\0".as_bytes()).unwrap_err(),
            Utf8Error::NullCharacter
        );
        assert_eq!(check(b"a\x80").unwrap_err(), Utf8Error::NotUtf8);
        assert_eq!(check(b"\xed\xa0\x80").unwrap_err(), Utf8Error::NotUtf8);
    }
}
