//! [`Session`]: the durable part of a client's state, which survives
//! disconnects and moves between shards on takeover.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use super::lazy::Lazy;

use crate::codec::{ByteStr, QoS, SubscriptionOptions};

use super::journal::{Change, Journal};
use super::{Delivery, DropCounts};

/// Where an outbound QoS 1/2 message is in its handshake: the packet it
/// waits for (variants named after the MQTT packets).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// QoS 1 PUBLISH sent (or about to be), waiting for PUBACK.
    PubAck,
    /// QoS 2 PUBLISH sent (or about to be), waiting for PUBREC.
    PubRec,
    /// PUBREL sent, waiting for PUBCOMP; the PUBLISH is never resent again.
    PubComp,
}

/// One outbound QoS 1/2 message holding a packet id.
/// Hashes packet ids with one multiplication (Fibonacci hashing): the
/// outbound ids are assigned by the broker, dense and sequential, so a
/// keyed string hash buys nothing on a map touched four times per QoS 1
/// message. The odd multiplier keeps sequential ids in distinct buckets
/// (hashbrown indexes by the low bits) and mixes the high bits its
/// control bytes use.
#[derive(Default, Clone, Copy)]
pub(crate) struct PacketIdHasher(u64);

impl Hasher for PacketIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u16` keys; kept correct for any other key.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Packet id -> `V`.
pub(crate) type PacketIdMap<V> = HashMap<u16, V, BuildHasherDefault<PacketIdHasher>>;

#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The delivery's number in this session, given when it entered (queue
    /// or window) and kept here: resends on resume go out in this order
    /// (MQTT-4.6.0-1), and a durable store keys the delivery by it.
    pub seq: u64,
    pub delivery: Delivery,
    pub state: Awaiting,
    /// The PUBLISH was handed to a socket at least once, so any resend must
    /// carry DUP=1 (MQTT-3.3.1-1), and only then.
    pub transmitted: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// Queued deliveries, each with the `seq` it entered with.
pub(crate) type Queue = VecDeque<(u64, Delivery)>;

/// Durable per-client state: survives disconnects (while not expired) and
/// moves between shards on takeover, so it is plain `Send` data.
#[derive(Debug)]
pub struct Session {
    pub(crate) client_id: ByteStr,
    /// Effective (capped) Session Expiry Interval; 0 = ends with the connection.
    pub(crate) expiry_interval_s: u32,
    /// Keyed by the raw filter (including any `$share/group/`): a
    /// resubscription to the same filter replaces the entry (MQTT-3.8.4-3).
    /// `Lazy`: one pointer while empty (see `session::lazy`).
    pub(crate) subscriptions: Lazy<BTreeMap<ByteStr, Subscription>>,
    /// Outbound QoS 1/2 messages holding packet ids, keyed by id. A hash
    /// map: every PUBLISH and ack looks an id up (a B-tree of a 1000-message
    /// window cost several hundred instructions per message); resends sort
    /// by `seq`, so nothing needs the ids in order.
    ///
    /// Hashed without keys (`PacketIdHasher`): packet ids are ours to
    /// choose, so there is nothing for a client to collide, and a per-map
    /// random state was 32 bytes of every session.
    ///
    /// `Lazy`: one pointer while the client has nothing unacknowledged (an
    /// idle client), where the map's header took 32 bytes.
    pub(crate) inflight: Lazy<PacketIdMap<Outbound>>,
    /// Where the next packet id search starts: ids rotate so a just-freed id
    /// is not reused at once (helps clients that match late acks by id).
    pub(crate) next_packet_id: u16,
    /// The number the next QoS 1/2 delivery gets when it enters (queue or
    /// window): above every `seq` the session holds.
    pub(crate) next_seq: u64,
    /// Messages waiting for the inflight window or for the client to return,
    /// each with its `seq` (QoS 0 ones: 0, they are never stored).
    /// `Lazy`: one pointer while empty (see `session::lazy`).
    pub(crate) queue: Lazy<Queue>,
    /// QoS 0 messages in `queue`: skips the scan for one to drop when zero.
    /// 32 bits, like the bound (`mqtt.max_mqueue_len` is a `u32`).
    pub(crate) queue_qos0_len: u32,
    /// Bound on `queue`, from the config of the last connection: the session
    /// has to apply it while offline, where no config is passed in.
    pub(crate) queue_len_max: u32,
    /// Inbound QoS 2 packet ids whose PUBREC was sent and PUBREL not yet
    /// received: a PUBLISH reusing one is a duplicate, not routed again.
    /// `Lazy`: one pointer while empty.
    pub(crate) incoming_qos2: Lazy<BTreeSet<u16>>,
    /// The drop counters and, for a durable session, its journal.
    /// `Lazy`: nearly every session drops nothing and is not durable, and
    /// inline the four counters were 32 bytes of every connection.
    pub(crate) extras: Lazy<Extras>,
}

/// The parts of a session most sessions never set, in one `Lazy` box.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub drops: DropCounts,
    /// Set for a durable session only (`session::journal`): its epoch and
    /// store key; every change is then noted for the shard's store.
    pub journal: Option<Journal>,
}

/// A queue bound as stored in a session: the config's value is a `u32`,
/// so this only saturates bounds set in code.
pub(crate) fn queue_len_max_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Session {
    pub(crate) fn new(client_id: ByteStr, expiry_interval_s: u32, queue_len_max: usize) -> Session {
        Session {
            client_id,
            expiry_interval_s,
            subscriptions: Lazy::new(),
            inflight: Lazy::new(),
            next_packet_id: 1,
            next_seq: 0,
            queue: Lazy::new(),
            queue_qos0_len: 0,
            queue_len_max: queue_len_max_u32(queue_len_max),
            incoming_qos2: Lazy::new(),
            extras: Lazy::new(),
        }
    }

    pub fn client_id(&self) -> &ByteStr {
        &self.client_id
    }

    /// Seconds the session outlives its connection (already capped by config).
    pub fn expiry_interval_s(&self) -> u32 {
        self.expiry_interval_s
    }

    /// `(raw filter including any $share prefix, options, subscription id)`.
    pub fn subscriptions(
        &self,
    ) -> impl Iterator<Item = (&ByteStr, &SubscriptionOptions, Option<u32>)> + '_ {
        self.subscriptions
            .iter()
            .map(|(filter, s)| (filter, &s.options, s.identifier))
    }

    /// Queue a delivery while the client is offline (bounded; same drop
    /// policy as online, see the module doc). Expired messages are dropped.
    pub fn deliver_offline(&mut self, d: Delivery, now: Instant) {
        if is_expired(&d, now) {
            self.extras.drops.expired += 1;
            return;
        }
        self.enqueue(d);
    }

    /// Queues what was delivered for this session while it moved between
    /// shards: `old_shard`, what the shard it came from received after
    /// exporting it, then `here`, what this shard received once it had the
    /// subscriptions. Both shards match the subscriptions for a moment, so
    /// a message may be in both: it is queued once (the same routed message
    /// is one `Arc` on every shard). The old shard's come first: a
    /// publisher's messages reach the new shard only from the one its shard
    /// learned of the new subscriptions, so none of them precedes the old
    /// shard's of the same publisher.
    pub fn deliver_moved(&mut self, old_shard: Vec<Delivery>, here: Vec<Delivery>, now: Instant) {
        let seen: ahash::AHashSet<*const super::Message> =
            here.iter().map(|d| Arc::as_ptr(&d.message)).collect();
        for d in old_shard {
            if !seen.contains(&Arc::as_ptr(&d.message)) {
                self.deliver_offline(d, now);
            }
        }
        for d in here {
            self.deliver_offline(d, now);
        }
    }

    /// Every message dropped by this session, all causes (see [`DropCounts`]).
    pub fn dropped_messages(&self) -> u64 {
        self.extras.drops.total()
    }

    /// Dropped messages by cause.
    pub fn drop_counts(&self) -> DropCounts {
        self.extras.drops
    }

    /// Subscriptions held (each filter once, shared ones included).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// The bound of the queue (`mqtt.max_mqueue_len` of the last connection).
    pub fn queue_len_max(&self) -> usize {
        self.queue_len_max as usize
    }

    /// Messages waiting for the inflight window or for the client.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Outbound QoS 1/2 messages holding a packet id.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Takes out, for a session that is ending, the QoS 1/2 messages it got
    /// through a shared subscription and did not deliver: inflight ones
    /// whose PUBLISH has no PUBACK / PUBREC yet (in the order they were
    /// admitted), then queued ones (in queue order). A QoS 2 message past
    /// PUBREC stays: the client has it. The shard hands them to another
    /// member of their group (MQTT 5.0 section 4.8.2). Shared QoS 0
    /// messages stay and end with the session, as before.
    ///
    /// Cost: `O(inflight + queue)`, plus sorting what is taken from the
    /// inflight window.
    pub fn take_shared_undelivered(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        if !self.inflight.is_empty() {
            let mut taken: Vec<(u64, Delivery)> = Vec::new();
            self.inflight.retain(|_, o| {
                let undelivered = o.delivery.shared.is_some() && o.state != Awaiting::PubComp;
                if undelivered {
                    taken.push((o.seq, o.delivery.clone()));
                }
                !undelivered
            });
            taken.sort_unstable_by_key(|(seq, _)| *seq);
            for (seq, d) in taken {
                self.note(|| Change::Remove { seq });
                self.store_release(&d);
                out.push(d);
            }
        }
        if self.queue.iter().any(|(_, d)| is_shared_undelivered(d)) {
            let queue = std::mem::take(&mut *self.queue);
            let (shared, kept): (Queue, Queue) = queue
                .into_iter()
                .partition(|(_, d)| is_shared_undelivered(d));
            *self.queue = kept;
            for (seq, d) in shared {
                self.note(|| Change::Remove { seq });
                self.store_release(&d);
                out.push(d);
            }
        }
        out
    }

    /// Applies the queue policy (module doc): drop the oldest QoS 0 if the
    /// queue is full, else tail-drop the newcomer.
    pub(crate) fn enqueue(&mut self, d: Delivery) {
        self.enqueue_within(d, self.queue_len_max as usize);
    }

    /// `enqueue` with another bound: an online subscriber that keeps
    /// reading may go past `queue_len_max` (see `session::pressure`).
    pub(crate) fn enqueue_within(&mut self, d: Delivery, queue_len_max: usize) {
        // The store's bounds first (`store_quota`): a QoS 0 message, which
        // is never stored, cannot make room for this one there.
        if let Err(refusal) = self.store_admits(&d, 1) {
            return self.store_refused(refusal);
        }
        if self.queue.len() >= queue_len_max {
            if self.queue_qos0_len == 0 {
                self.extras.drops.queue_full += 1;
                return;
            }
            let oldest_qos0 = self
                .queue
                .iter()
                .position(|(_, q)| q.qos == QoS::AtMostOnce)
                .expect("queue_qos0_len > 0 implies a QoS 0 entry");
            self.queue.remove(oldest_qos0);
            self.queue_qos0_len -= 1;
            self.extras.drops.queue_full += 1;
            if self.queue.len() >= queue_len_max {
                // The cap shrank since the queue filled (a new config).
                self.extras.drops.queue_full += 1;
                return;
            }
        }
        let seq = if d.qos == QoS::AtMostOnce {
            self.queue_qos0_len += 1;
            0
        } else {
            let seq = self.take_seq();
            self.store_acquire(&d);
            self.note(|| Change::Put {
                seq,
                delivery: d.clone(),
                inflight: None,
                fresh: true,
            });
            seq
        };
        self.queue.push_back((seq, d));
    }

    /// The `seq` of a QoS 1/2 delivery entering the session.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Counts the QoS 1/2 deliveries that left the queue or went straight
    /// to the window: grows when the window takes one, never when the
    /// queue does (what `pressure::StallClock` watches).
    pub(crate) fn admitted(&self) -> u64 {
        let queued = self.queue.len() as u64 - u64::from(self.queue_qos0_len);
        self.next_seq - queued
    }

    pub(crate) fn queue_pop_front(&mut self) -> Option<(u64, Delivery)> {
        let (seq, d) = self.queue.pop_front()?;
        if d.qos == QoS::AtMostOnce {
            self.queue_qos0_len -= 1;
        }
        Some((seq, d))
    }

    /// Gives `d` (QoS 1/2, numbered `seq` when it entered) a packet id not
    /// used by any inflight message. `fresh`: `d` enters the session here
    /// (`seq` just taken), rather than coming from the queue.
    pub(crate) fn insert_inflight(&mut self, seq: u64, d: Delivery, fresh: bool) -> u16 {
        assert!(d.qos != QoS::AtMostOnce);
        // The `Lazy` resolved once, not per probe.
        let inflight = &mut *self.inflight;
        assert!(
            inflight.len() < u16::MAX as usize,
            "packet id space exhausted"
        );
        let mut id = self.next_packet_id;
        // One probe per candidate id: usually the first is free.
        let slot = loop {
            if id != 0 {
                if let Entry::Vacant(slot) = inflight.entry(id) {
                    break slot;
                }
            }
            id = id.wrapping_add(1);
        };
        self.next_packet_id = id.wrapping_add(1);
        let state = match d.qos {
            QoS::AtLeastOnce => Awaiting::PubAck,
            _ => Awaiting::PubRec,
        };
        let o = slot.insert(Outbound {
            seq,
            delivery: d,
            state,
            transmitted: false,
        });
        if self.extras.journal.is_some() {
            if let Some(journal) = &mut self.extras.journal {
                journal.note_outbound(id, o, fresh);
            }
        }
        id
    }
}

/// A queued QoS 1/2 message that came through a shared subscription.
fn is_shared_undelivered(d: &Delivery) -> bool {
    d.shared.is_some() && d.qos != QoS::AtMostOnce
}

pub(crate) fn is_expired(d: &Delivery, now: Instant) -> bool {
    d.message.expires_at.is_some_and(|at| now >= at)
}
