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
