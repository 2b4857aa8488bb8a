//! `Origin`: the publisher's client id carried by every `Message` (for No
//! Local, and to pause the publisher of what congests a subscriber).
//!
//! Why not a `ByteStr` clone: cloning the session's client id took a
//! reference count on its shared buffer for every PUBLISH and dropped it
//! with the message, two atomic operations per message on the publish path
//! (4 % of a shard's time in fan-in under `perf`). Client ids are short
//! (MQTT 3.1.1 only guarantees 23 bytes, and generated ids are rarely
//! longer than 30): those are copied into the message, a copy of 32 bytes
//! with no atomic; a longer id still shares the session's buffer.

use std::fmt;
use std::ops::Deref;

use crate::codec::ByteStr;

/// Longest client id held inline.
const INLINE_BYTES_MAX: usize = 30;

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_BYTES_MAX],
    },
    Shared(ByteStr),
}

/// A client id, inline when short (see the module doc).
#[derive(Clone)]
pub struct Origin(Repr);

impl Origin {
    pub fn new(client_id: &ByteStr) -> Origin {
        let s = client_id.as_bytes();
        if s.len() <= INLINE_BYTES_MAX {
            let mut bytes = [0u8; INLINE_BYTES_MAX];
            bytes[..s.len()].copy_from_slice(s);
            Origin(Repr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            Origin(Repr::Shared(client_id.clone()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // SAFETY: the bytes were copied whole from a `ByteStr`,
                // which holds valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(&bytes[..*len as usize]) }
            }
            Repr::Shared(s) => s,
        }
    }

    /// As a `ByteStr` (a copy when inline): for the rare paths that keep
    /// or send the id (pausing a publisher).
    pub fn to_byte_str(&self) -> ByteStr {
        match &self.0 {
            Repr::Inline { .. } => ByteStr::from(self.as_str()),
            Repr::Shared(s) => s.clone(),
        }
    }
}

impl Deref for Origin {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_inline_and_long_ones_shared() {
        for id in [
            "",
            "a",
            "client-17",
            &"x".repeat(30),
            &"y".repeat(31),
            "é日本",
        ] {
            let b = ByteStr::from(id);
            let o = Origin::new(&b);
            assert_eq!(o.as_str(), id);
            assert_eq!(o.to_byte_str(), b);
            assert_eq!(matches!(o.0, Repr::Inline { .. }), id.len() <= 30);
            assert_eq!(o.clone(), o);
        }
    }

    #[test]
    fn no_larger_than_a_shared_id_plus_a_word() {
        assert!(std::mem::size_of::<Option<Origin>>() <= std::mem::size_of::<ByteStr>() + 8);
    }
}
