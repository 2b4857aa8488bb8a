//! The readers of older snapshot versions (`super`'s module doc, "Bytes
//! form"): an rkyv archive has no optional field, so each old layout keeps
//! its types here, and an `upgrade` to the next version. A type whose
//! layout did not change (`SubscriptionSnapshot`, `MessageSnapshot`, ...)
//! is shared with the current version.

use super::{
    AwaitingSnapshot, DeliverySnapshot, DropsSnapshot, InflightSnapshot, MessageSnapshot,
    QueuedSnapshot, SessionSnapshot, SubscriptionSnapshot, WillSnapshot,
};

/// A delivery of versions 1 and 2: no message id.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeliverySnapshotV2 {
    pub message: MessageSnapshot,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

impl DeliverySnapshotV2 {
    /// "No id": the new owner of a moved session merges it by content.
    pub fn upgrade(self) -> DeliverySnapshot {
        DeliverySnapshot {
            message: self.message,
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            id: None,
        }
    }
}

/// An inflight delivery of versions 1 and 2.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct InflightSnapshotV2 {
    pub packet_id: u16,
    pub seq: u64,
    pub awaiting: AwaitingSnapshot,
    pub transmitted: bool,
    pub delivery: DeliverySnapshotV2,
}

/// A queued delivery of version 2.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QueuedSnapshotV2 {
    pub seq: u64,
    pub delivery: DeliverySnapshotV2,
}

/// Version 2 of the bytes form: deliveries without their message's id.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionSnapshotV2 {
    pub client_id: String,
    pub expiry_interval_s: u32,
    pub expires_at_unix_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionSnapshot>,
    pub inflight: Vec<InflightSnapshotV2>,
    pub next_packet_id: u16,
    pub next_seq: u64,
    pub queue: Vec<QueuedSnapshotV2>,
    pub queue_len_max: u32,
    pub incoming_qos2: Vec<u16>,
    pub drops: DropsSnapshot,
    pub will: Option<WillSnapshot>,
}

impl SessionSnapshotV2 {
    pub fn upgrade(self) -> SessionSnapshot {
        SessionSnapshot {
            client_id: self.client_id,
            expiry_interval_s: self.expiry_interval_s,
            expires_at_unix_ms: self.expires_at_unix_ms,
            subscriptions: self.subscriptions,
            inflight: self
                .inflight
                .into_iter()
                .map(|o| InflightSnapshot {
                    packet_id: o.packet_id,
                    seq: o.seq,
                    awaiting: o.awaiting,
                    transmitted: o.transmitted,
                    delivery: o.delivery.upgrade(),
                })
                .collect(),
            next_packet_id: self.next_packet_id,
            next_seq: self.next_seq,
            queue: self
                .queue
                .into_iter()
                .map(|q| QueuedSnapshot {
                    seq: q.seq,
                    delivery: q.delivery.upgrade(),
                })
                .collect(),
            queue_len_max: self.queue_len_max,
            incoming_qos2: self.incoming_qos2,
            drops: self.drops,
            will: self.will,
        }
    }
}

/// Version 1 of the bytes form: the same fields as version 2, but queued
/// deliveries without the `seq` they entered with (given since version 2
/// so a durable store keys a delivery by one number for its whole life).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionSnapshotV1 {
    pub client_id: String,
    pub expiry_interval_s: u32,
    pub expires_at_unix_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionSnapshot>,
    pub inflight: Vec<InflightSnapshotV2>,
    pub next_packet_id: u16,
    pub next_seq: u64,
    pub queue: Vec<DeliverySnapshotV2>,
    pub queue_len_max: u32,
    pub incoming_qos2: Vec<u16>,
    pub drops: DropsSnapshot,
    pub will: Option<WillSnapshot>,
}

impl SessionSnapshotV1 {
    /// Numbers the queued QoS 1/2 deliveries from `next_seq` on (above
    /// every inflight `seq`), in queue order; QoS 0 ones get 0.
    pub fn upgrade(self) -> SessionSnapshotV2 {
        let mut next_seq = self.next_seq;
        let queue = self
            .queue
            .into_iter()
            .map(|delivery| {
                let seq = if delivery.qos == 0 {
                    0
                } else {
                    next_seq += 1;
                    next_seq - 1
                };
                QueuedSnapshotV2 { seq, delivery }
            })
            .collect();
        SessionSnapshotV2 {
            client_id: self.client_id,
            expiry_interval_s: self.expiry_interval_s,
            expires_at_unix_ms: self.expires_at_unix_ms,
            subscriptions: self.subscriptions,
            inflight: self.inflight,
            next_packet_id: self.next_packet_id,
            next_seq,
            queue,
            queue_len_max: self.queue_len_max,
            incoming_qos2: self.incoming_qos2,
            drops: self.drops,
            will: self.will,
        }
    }
}
