//! The bytes of a record in Redis are those of every backend
//! (`durable::record`: the rkyv archive of a `SessionMeta`,
//! `DeliveryRecord` or `MessageSnapshot` in a versioned, checksummed
//! header, validated before use), so a session reads the same from disk
//! and from Redis.

pub use crate::durable::record::{
    decode_delivery, decode_meta, decode_retained, encode_delivery, encode_meta, encode_retained,
    fnv1a64, session_records, RecordError,
};
