//! The Redis key layout (docs/durability.md, "The Redis backend", ADR 0007).
//!
//! Every key of one client carries the hash tag `{c:<client id>}`, so they
//! share a slot and one script changes them atomically:
//!
//! * `{c:<id>}:own`   hash `epoch`, `node`, `deadline` (Unix ms, 0: none),
//!   `dmax` (most deliveries kept): the owner record, the fencing token;
//! * `{c:<id>}:meta`  string: the `SessionMeta` record;
//! * `{c:<id>}:d`     hash `<seq>` -> `DeliveryRecord` record.
//!
//! A client id holding `}` still gives one slot for all three (the tag
//! ends at the first `}` in the same prefix) and distinct keys (no suffix
//! contains `}:`).
//!
//! Outside clients' slots:
//! * `ringmq:node:{<node>}:sessions`  set of the client ids a node owns
//!   (its index for `load_node`, best effort);
//! * `ringmq:retained:{b<N>}`  hash topic -> `MessageSnapshot` record,
//!   N = FNV-1a 64 of the topic % `RETAINED_BUCKETS`.

use crate::limits::RETAINED_BUCKETS;

use super::record::fnv1a64;

/// The three keys of a client, in the order the scripts take them.
pub fn client_keys(client: &str) -> [Vec<u8>; 3] {
    let key = |suffix: &str| {
        let mut k = Vec::with_capacity(client.len() + 4 + suffix.len());
        k.extend_from_slice(b"{c:");
        k.extend_from_slice(client.as_bytes());
        k.extend_from_slice(b"}:");
        k.extend_from_slice(suffix.as_bytes());
        k
    };
    [key("own"), key("meta"), key("d")]
}

pub fn node_index(node: &str) -> String {
    format!("ringmq:node:{{{node}}}:sessions")
}

pub fn retained_bucket(topic: &str) -> u32 {
    (fnv1a64(topic.as_bytes()) % u64::from(RETAINED_BUCKETS)) as u32
}

pub fn retained_key(bucket: u32) -> String {
    format!("ringmq:retained:{{b{bucket}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Redis Cluster hashes: the part between the first `{` and the
    /// first `}` after it, if not empty; else the whole key.
    fn get_slot(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{') {
            if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn a_clients_keys_share_one_slot_even_with_braces_in_its_id() {
        for id in ["c1", "a}b", "{x}", "}", "sensor/7:{9}"] {
            let keys = client_keys(id);
            let slot = get_slot(&keys[0]);
            assert!(keys.iter().all(|k| get_slot(k) == slot), "{id}");
        }
        assert_ne!(client_keys("a}:d")[1], client_keys("a")[2]);
    }

    #[test]
    fn retained_buckets_are_stable_and_in_range() {
        assert_eq!(retained_bucket("a/b"), retained_bucket("a/b"));
        assert!((0..1000).all(|i| retained_bucket(&format!("t/{i}")) < RETAINED_BUCKETS));
        assert_eq!(retained_key(7), "ringmq:retained:{b7}");
    }
}
