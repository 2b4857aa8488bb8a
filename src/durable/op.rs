//! [`Op`]: one change of a durable session or of the retained store, as a
//! shard hands it to its store. Sans-IO plain data: the backends turn ops
//! into fjall writes or Redis scripts; tests compare them.

use std::sync::Arc;

use crate::session::snapshot::{
    AwaitingSnapshot, DeliverySnapshot, DropsSnapshot, MessageSnapshot, SessionSnapshot,
    SubscriptionSnapshot, WillSnapshot,
};

/// A batch's number in its store's order. Tickets rise by one per batch;
/// a store that reports ticket `t` synced has synced every batch up to `t`.
pub type Ticket = u64;

/// Everything of a session but its deliveries: rewritten whole when any of
/// it changes (ADR 0007, "What is written").
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionMeta {
    pub client_id: String,
    /// Raised on each change of owner; the fencing token with Redis.
    pub epoch: u64,
    /// Effective Session Expiry Interval (`u32::MAX`: never).
    pub expiry_interval_s: u32,
    /// When the session ends if its client stays away; `None` while online.
    pub expires_at_unix_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionSnapshot>,
    pub next_packet_id: u16,
    /// The next delivery's sequence number (above every stored `seq`).
    pub next_seq: u64,
    pub queue_len_max: u32,
    /// Inbound QoS 2 packet ids: PUBREC sent, PUBREL not yet received.
    pub incoming_qos2: Vec<u16>,
    pub drops: DropsSnapshot,
    pub will: Option<WillSnapshot>,
}

/// Where a stored delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DeliveryState {
    /// Waiting for the window or for the client.
    Queued,
    /// Holds `packet_id` in the window.
    Inflight {
        packet_id: u16,
        awaiting: AwaitingSnapshot,
        /// Sent at least once: a resend carries DUP=1.
        transmitted: bool,
    },
}

/// One QoS 1/2 message a durable session holds, keyed by `(client, seq)`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeliveryRecord {
    pub delivery: DeliverySnapshot,
    pub state: DeliveryState,
}

/// One change. `client` is the client id (shared by the ops of one batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Replaces everything stored for the client by this session (created,
    /// imported from another shard or node, Clean Start replacing it).
    PutSession {
        client: Arc<str>,
        epoch: u64,
        snapshot: Box<SessionSnapshot>,
    },
    /// The session's own state changed.
    PutMeta {
        client: Arc<str>,
        meta: Box<SessionMeta>,
    },
    /// A delivery entered the session or changed state.
    PutDelivery {
        client: Arc<str>,
        epoch: u64,
        seq: u64,
        record: Box<DeliveryRecord>,
        /// The delivery entered the session in this batch: no earlier
        /// batch holds it, so a writer that applies this batch and a later
        /// one with its removal together may skip both ([`cancelled`]).
        fresh: bool,
    },
    /// Only the state of a delivery a store holds changed (packet id
    /// given, sent, PUBREC'd). Emitted only for a store that says it takes
    /// these ([`crate::durable::StoreHandle::takes_states`]: the log
    /// engine, which writes six bytes instead of the whole message again);
    /// for the others the shard writes the whole delivery.
    PutDeliveryState {
        client: Arc<str>,
        epoch: u64,
        seq: u64,
        state: DeliveryState,
    },
    /// Acknowledged (PUBACK, PUBCOMP), expired or dropped.
    RemoveDelivery {
        client: Arc<str>,
        epoch: u64,
        seq: u64,
    },
    /// The session ended (expired, discarded, moved to another store).
    RemoveSession {
        client: Arc<str>,
        epoch: u64,
    },
    PutRetained {
        topic: Arc<str>,
        message: Box<MessageSnapshot>,
    },
    RemoveRetained {
        topic: Arc<str>,
    },
}

/// A delivery in [`cancelled`]: client, barrier generation, seq.
type DeliveryKey<'a> = (&'a str, u32, u64);
/// An op's place in a group of batches: (batch, op).
type Position = (usize, usize);

/// Where `batches` (applied together, in order: one write of a store's
/// writer) hold a delivery's entering put (`fresh`) and its removal in a
/// later batch, with the state puts between: `(batch, op)` positions the
/// writer may skip, as writing them all leaves the store as skipping them
/// does. Never across a `PutSession` / `RemoveSession` of the client (the
/// session op writes or removes what came before it). Sans-IO; empty for
/// one batch (the shard cancelled within it already).
pub fn cancelled(batches: &[Batch]) -> ahash::AHashSet<Position> {
    let mut skip = ahash::AHashSet::new();
    if batches.len() < 2 {
        return skip;
    }
    // (client, barrier generation, seq) -> the positions of its puts since
    // its fresh one.
    let mut puts: ahash::AHashMap<DeliveryKey<'_>, Vec<Position>> = Default::default();
    let mut generations: ahash::AHashMap<&str, u32> = Default::default();
    for (b, batch) in batches.iter().enumerate() {
        for (o, op) in batch.ops.iter().enumerate() {
            match op {
                Op::PutDelivery {
                    client, seq, fresh, ..
                } => {
                    let g = generations.get(&**client).copied().unwrap_or(0);
                    let key = (&**client, g, *seq);
                    if *fresh {
                        puts.insert(key, vec![(b, o)]);
                    } else if let Some(at) = puts.get_mut(&key) {
                        at.push((b, o));
                    }
                }
                Op::PutDeliveryState { client, seq, .. } => {
                    let g = generations.get(&**client).copied().unwrap_or(0);
                    if let Some(at) = puts.get_mut(&(&**client, g, *seq)) {
                        at.push((b, o));
                    }
                }
                Op::RemoveDelivery { client, seq, .. } => {
                    let g = generations.get(&**client).copied().unwrap_or(0);
                    if let Some(at) = puts.remove(&(&**client, g, *seq)) {
                        skip.extend(at);
                        skip.insert((b, o));
                    }
                }
                Op::PutSession { client, .. } | Op::RemoveSession { client, .. } => {
                    *generations.entry(&**client).or_default() += 1;
                }
                _ => {}
            }
        }
    }
    skip
}

/// The ops of one executor turn of a shard, under one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ticket: Ticket,
    pub ops: Vec<Op>,
}

/// A session as a store gives it back at start (or Redis on a resume):
/// its meta record and its deliveries by `seq`, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub meta: SessionMeta,
    pub deliveries: Vec<(u64, DeliveryRecord)>,
}

/// What a store holds at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<(String, MessageSnapshot)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::snapshot::{DeliverySnapshot, MessageSnapshot};

    fn put(client: &str, seq: u64, fresh: bool) -> Op {
        Op::PutDelivery {
            client: client.into(),
            epoch: 1,
            seq,
            record: Box::new(DeliveryRecord {
                delivery: DeliverySnapshot {
                    message: MessageSnapshot {
                        topic: "t".into(),
                        payload: bytes::Bytes::new(),
                        qos: 1,
                        retain: false,
                        payload_format_indicator: None,
                        message_expiry_interval_s: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: vec![],
                        content_type: None,
                        origin: None,
                        expires_at_unix_ms: None,
                    },
                    qos: 1,
                    retain: false,
                    subscription_ids: vec![],
                    id: None,
                },
                state: DeliveryState::Queued,
            }),
            fresh,
        }
    }

    fn remove(client: &str, seq: u64) -> Op {
        Op::RemoveDelivery {
            client: client.into(),
            epoch: 1,
            seq,
        }
    }

    fn batch(ticket: Ticket, ops: Vec<Op>) -> Batch {
        Batch { ticket, ops }
    }

    fn sorted(skip: ahash::AHashSet<(usize, usize)>) -> Vec<(usize, usize)> {
        let mut v: Vec<_> = skip.into_iter().collect();
        v.sort_unstable();
        v
    }

    /// A fresh put, a state put and the removal across the batches of one
    /// write are skipped; a removal whose put is not fresh (an earlier
    /// write holds it), a put with no removal, and anything across a
    /// session op of the client are written. Fails if `cancelled` ignored
    /// `fresh` or the session barrier (or found nothing: the writer then
    /// wrote every pair).
    #[test]
    fn a_write_skips_the_deliveries_put_and_removed_within_it() {
        let batches = [
            batch(
                1,
                vec![put("a", 1, true), put("a", 2, false), put("a", 3, true)],
            ),
            batch(
                2,
                vec![
                    put("a", 1, false),
                    remove("a", 2),
                    put("b", 3, true),
                    Op::RemoveSession {
                        client: "b".into(),
                        epoch: 1,
                    },
                ],
            ),
            batch(3, vec![remove("a", 1), remove("b", 3), put("a", 4, true)]),
        ];
        assert_eq!(sorted(cancelled(&batches)), [(0, 0), (1, 0), (2, 0)]);
        // One batch: the shard cancelled within it already.
        assert!(cancelled(&batches[..1]).is_empty());
    }
}
