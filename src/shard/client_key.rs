//! `ClientKey`: a client id as a key of the shard's registry maps
//! (the slots of `Sessions`, the registry's owners), one pointer wide.
//!
//! Those maps hold an entry per session and grow by doubling, so every
//! session pays up to two buckets of each: with 10,000 sessions, 16,384
//! buckets. A `ByteStr` key took 32 bytes of every bucket, a `Box<str>` 16;
//! this takes 8, the length living in the allocation beside the bytes
//! (docs/performance.md, idle connections round 4). A clone is the same
//! allocation with its count raised. Both maps once shared one key per id
//! homed on the shard that holds its session (round 5); since "Idle
//! connections after issue 12", round 2, such an id is in `slots` only.

use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;

/// Bytes before the id in the allocation: the reference count (`u32`)
/// and the length (`u16`).
const COUNT_BYTES: usize = std::mem::size_of::<u32>();
const HEADER_BYTES: usize = COUNT_BYTES + std::mem::size_of::<u16>();

// The length is a `u16`: every client id the shard keeps is within the
// named limit, which MQTT's two-byte string length sets.
const _: () = assert!(crate::limits::CLIENT_ID_LEN_MAX_BYTES <= u16::MAX as u32);

/// A shared client id: a pointer to its reference count (`u32`) and length
/// (`u16`, both native endian) followed by its UTF-8 bytes. Hashes and
/// compares as the `str` it holds, so maps keyed by it are looked up with a
/// `&str`. Not `Send` (the count is not atomic): a shard's own maps only.
pub struct ClientKey(NonNull<u8>);

impl ClientKey {
    /// # Panics
    /// On ids longer than `limits::CLIENT_ID_LEN_MAX_BYTES` (65,535, which
    /// MQTT cannot exceed: every client id reached the shard through a
    /// decoded CONNECT or a `ShardMsg` carrying one).
    pub fn new(id: &str) -> ClientKey {
        let len = u16::try_from(id.len()).expect("an MQTT string is at most 65535 bytes");
        let layout = Self::layout(len);
        // SAFETY: the layout is never zero-sized (it has the header).
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: the allocation holds HEADER_BYTES + len bytes, aligned for
        // u32 (the count; the length follows at an offset aligned for u16);
        // the id's bytes do not overlap a fresh allocation.
        unsafe {
            ptr.as_ptr().cast::<u32>().write(1);
            ptr.as_ptr().add(COUNT_BYTES).cast::<u16>().write(len);
            std::ptr::copy_nonoverlapping(id.as_ptr(), ptr.as_ptr().add(HEADER_BYTES), id.len());
        }
        ClientKey(ptr)
    }

    fn layout(len: u16) -> Layout {
        Layout::from_size_align(HEADER_BYTES + usize::from(len), std::mem::align_of::<u32>())
            .expect("at most 65541 bytes")
    }

    fn count(&self) -> &std::cell::Cell<u32> {
        // SAFETY: `new` wrote the count at the start of the allocation,
        // which lives as long as `self`; a `Cell<u32>` has `u32`'s layout,
        // and the key is not `Send`, so only this thread touches it.
        unsafe { &*self.0.as_ptr().cast::<std::cell::Cell<u32>>() }
    }

    fn len(&self) -> u16 {
        // SAFETY: `new` wrote the length after the count, and the
        // allocation lives as long as `self`.
        unsafe { self.0.as_ptr().add(COUNT_BYTES).cast::<u16>().read() }
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: `new` copied `len` bytes of a `str` after the header; they
        // are never written again and live as long as `self`.
        unsafe {
            let bytes = std::slice::from_raw_parts(
                self.0.as_ptr().add(HEADER_BYTES),
                usize::from(self.len()),
            );
            std::str::from_utf8_unchecked(bytes)
        }
    }
}

impl Drop for ClientKey {
    fn drop(&mut self) {
        let count = self.count().get() - 1;
        self.count().set(count);
        if count == 0 {
            // SAFETY: allocated by `new` with this layout; the last key
            // that shares it frees it, once.
            unsafe { alloc::dealloc(self.0.as_ptr(), Self::layout(self.len())) }
        }
    }
}

impl From<&str> for ClientKey {
    fn from(id: &str) -> ClientKey {
        ClientKey::new(id)
    }
}

/// The same allocation, its count raised.
impl Clone for ClientKey {
    fn clone(&self) -> ClientKey {
        let count = self
            .count()
            .get()
            .checked_add(1)
            .expect("fewer than 2^32 keys share an id");
        self.count().set(count);
        ClientKey(self.0)
    }
}

impl Borrow<str> for ClientKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// As the `str`: `Borrow<str>` requires equal hashes.
impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &ClientKey) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ClientKey {}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahash::AHashMap;

    #[test]
    fn holds_and_compares_as_its_str() {
        for id in ["", "a", "idle0-9999", "ünïcödé-client", &"x".repeat(65_535)] {
            let k = ClientKey::new(id);
            assert_eq!(k.as_str(), id);
            assert_eq!(k.clone(), k);
            assert_eq!(format!("{k:?}"), format!("{id:?}"));
        }
        assert_ne!(ClientKey::new("a"), ClientKey::new("b"));
        assert_ne!(ClientKey::new("a"), ClientKey::new("a\u{1}"));
    }

    #[test]
    fn maps_look_it_up_by_str() {
        let mut m: AHashMap<ClientKey, u16> = AHashMap::new();
        for i in 0..1000u16 {
            m.insert(format!("client-{i}").as_str().into(), i);
        }
        for i in 0..1000u16 {
            assert_eq!(m.get(format!("client-{i}").as_str()), Some(&i));
        }
        assert_eq!(m.get("client-1000"), None);
        assert_eq!(m.remove("client-7"), Some(7));
        assert_eq!(m.get("client-7"), None);
    }

    #[test]
    fn clones_share_the_allocation() {
        let a = ClientKey::new("idle0-9999");
        let b = a.clone();
        assert_eq!(a.0, b.0);
        assert_eq!(a.count().get(), 2);
        drop(a);
        assert_eq!(b.count().get(), 1);
        assert_eq!(b.as_str(), "idle0-9999");
    }

    /// The registry's keys for the ids `make bench`'s scenario 6 uses
    /// (`b<pid>idle<run>r-conn-<n>`, about 23 bytes) stay in mimalloc's
    /// 32-byte class.
    #[test]
    fn header_keeps_bench_ids_in_the_32_byte_class() {
        assert_eq!(HEADER_BYTES, 6);
        assert!(ClientKey::layout(26).size() <= 32);
    }

    #[test]
    fn is_one_pointer() {
        assert_eq!(std::mem::size_of::<ClientKey>(), 8);
        assert_eq!(std::mem::size_of::<Option<ClientKey>>(), 8);
    }

    #[test]
    #[should_panic(expected = "at most 65535 bytes")]
    fn refuses_what_mqtt_cannot_encode() {
        ClientKey::new(&"x".repeat(65_536));
    }
}
