//! [`Journal`]: what a durable session notes about its own changes, for
//! the shard's store (docs/adr/0007-durable-sessions.md), sans-IO.
//!
//! A session is durable when the shard gave it a journal
//! ([`Session::make_durable`]): its store key (the client id) and epoch.
//! From then on every change the store follows is noted where the session
//! makes it (a QoS 1/2 delivery entering, getting a packet id, sent,
//! PUBREC'd, completed or dropped; a subscription or inbound QoS 2 id
//! added or removed) as a [`Noted`] in this thread's note buffer. The
//! thread is the shard's (a session is only ever touched by the shard that
//! holds it), and the shard's store task drains the buffer every executor
//! turn ([`take_notes`]) into the batch it gathers (`shard::durable`),
//! where a removal cancels the `fresh` put that entered its delivery.
//!
//! Why a buffer of the thread rather than one per session or a store
//! threaded through every call: deliveries reach a session from many
//! places of the shard (publishes, shared picks, moves, offline queues),
//! and the session's methods stay the same for a session that is not
//! durable (one branch on `journal`, nothing built). A session that is
//! not durable costs nothing: `journal` is `None`, in padding-free space
//! the size tests watch.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::task::Waker;

use super::state::{Awaiting, Outbound, Session};
use super::Delivery;

/// One change of a durable session, as the session noted it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A QoS 1/2 delivery entered the session or changed state.
    Put {
        seq: u64,
        delivery: Delivery,
        /// `None`: queued.
        inflight: Option<InflightState>,
        /// The delivery enters the session with this put (the first note
        /// of its `seq`): a removal gathered in the same batch cancels
        /// both, since no earlier batch can hold it (`shard::durable`).
        fresh: bool,
    },
    /// A delivery left the session (acknowledged, expired, dropped, handed
    /// to another member of its shared group).
    Remove { seq: u64 },
    /// Subscriptions or inbound QoS 2 ids changed: the meta record is
    /// rewritten (built when the note is taken, from the session).
    Meta,
}

/// Where an inflight delivery is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightState {
    pub packet_id: u16,
    /// Waiting for PUBACK (QoS 1), PUBREC or PUBCOMP (QoS 2).
    pub awaiting: AwaitingKind,
    pub transmitted: bool,
}

/// Public mirror of the session's `Awaiting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwaitingKind {
    PubAck,
    PubRec,
    PubComp,
}

/// A change with the session it belongs to.
#[derive(Debug, Clone)]
pub struct Noted {
    pub client: Arc<str>,
    pub epoch: u64,
    pub change: NotedChange,
}

/// [`Change`] with `Meta` resolved to the session's state at the note.
#[derive(Debug, Clone)]
pub enum NotedChange {
    Put {
        seq: u64,
        delivery: Delivery,
        inflight: Option<InflightState>,
        /// See [`Change::Put`].
        fresh: bool,
    },
    Remove {
        seq: u64,
    },
    /// Only the window state of delivery `seq` changed (it got its packet
    /// id, was sent, PUBREC'd): noted instead of a whole `Put` when this
    /// thread's store takes states ([`note_states`]).
    State {
        seq: u64,
        inflight: InflightState,
    },
    Meta(Box<MetaState>),
}

/// The meta record's fields the session owns (the shard adds the expiry
/// deadline and the will, which it keeps beside an offline session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaState {
    pub expiry_interval_s: u32,
    pub subscriptions: Vec<super::snapshot::SubscriptionSnapshot>,
    pub next_packet_id: u16,
    pub next_seq: u64,
    pub queue_len_max: u32,
    pub incoming_qos2: Vec<u16>,
    pub drops: super::snapshot::DropsSnapshot,
}

/// A durable session's store key and epoch (module doc), and the bytes
/// its deliveries take in the store (`session::store_quota`).
#[derive(Debug)]
pub struct Journal {
    client: Arc<str>,
    epoch: u64,
    stored_bytes: u64,
}

impl Drop for Journal {
    /// The session is no longer durable here (ended, forgotten, replaced
    /// by a journal of a new epoch): its bytes leave the shard's total.
    fn drop(&mut self) {
        super::store_quota::release(self.stored_bytes);
    }
}

thread_local! {
    static NOTES: RefCell<Vec<Noted>> = const { RefCell::new(Vec::new()) };
    static WAKER: Cell<Option<Waker>> = const { Cell::new(None) };
    static STATES: Cell<bool> = const { Cell::new(false) };
}

/// This thread's store takes state-only changes (the log engine): a
/// delivery that is already stored and only changes state is noted as
/// [`NotedChange::State`], without a copy of its message.
pub fn note_states(on: bool) {
    STATES.with(|s| s.set(on));
}

impl Journal {
    pub(crate) fn note_change(&mut self, change: NotedChange) {
        let noted = Noted {
            client: self.client.clone(),
            epoch: self.epoch,
            change,
        };
        let first = NOTES.with(|n| {
            let mut n = n.borrow_mut();
            n.push(noted);
            n.len() == 1
        });
        if first {
            if let Some(w) = WAKER.with(Cell::take) {
                w.wake();
            }
        }
    }

    /// `fresh`: the delivery enters the session with this note (it went
    /// straight to the window, never queued).
    pub(crate) fn note_outbound(&mut self, packet_id: u16, o: &Outbound, fresh: bool) {
        let inflight = InflightState {
            packet_id,
            awaiting: match o.state {
                Awaiting::PubAck => AwaitingKind::PubAck,
                Awaiting::PubRec => AwaitingKind::PubRec,
                Awaiting::PubComp => AwaitingKind::PubComp,
            },
            transmitted: o.transmitted,
        };
        // Not fresh: the delivery entered with an earlier note, whose put
        // carries the message.
        if !fresh && STATES.with(Cell::get) {
            self.note_change(NotedChange::State {
                seq: o.seq,
                inflight,
            });
            return;
        }
        self.note_change(NotedChange::Put {
            seq: o.seq,
            delivery: o.delivery.clone(),
            fresh,
            inflight: Some(inflight),
        });
    }
}

/// Takes every change noted on this thread since the last call, in order.
pub fn take_notes() -> Vec<Noted> {
    NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

/// [`take_notes`] into `buf` (empty): the buffers are swapped, so the
/// thread's keeps `buf`'s room and noting does not grow a new one every
/// turn.
pub fn swap_notes(buf: &mut Vec<Noted>) {
    debug_assert!(buf.is_empty());
    NOTES.with(|n| std::mem::swap(&mut *n.borrow_mut(), buf))
}

/// Whether changes wait to be taken.
pub fn has_notes() -> bool {
    NOTES.with(|n| !n.borrow().is_empty())
}

/// `waker` is woken by the next change noted on this thread into an empty
/// buffer (the shard's store task waits with it).
pub fn wake_on_note(waker: &Waker) {
    WAKER.with(|w| w.set(Some(waker.clone())));
}

impl Session {
    /// Makes this session durable under `epoch`: from now on its changes
    /// are noted (module doc). Idempotent for the same epoch.
    pub fn make_durable(&mut self, epoch: u64) {
        // The old journal (if any) gives its bytes back first.
        self.extras.journal = None;
        let stored_bytes = self.stored_bytes_now();
        super::store_quota::acquire(stored_bytes);
        self.extras.journal = Some(Journal {
            client: Arc::from(self.client_id.as_str()),
            epoch,
            stored_bytes,
        });
    }

    /// The store bytes of the QoS 1/2 deliveries this session holds.
    fn stored_bytes_now(&self) -> u64 {
        let queued: u64 = self
            .queue
            .iter()
            .map(|(_, d)| super::store_quota::delivery_bytes(d))
            .sum();
        let inflight: u64 = self
            .inflight
            .values()
            .map(|o| super::store_quota::delivery_bytes(&o.delivery))
            .sum();
        queued + inflight
    }

    /// The store bytes of this durable session's deliveries (0 when not
    /// durable).
    pub fn stored_bytes(&self) -> u64 {
        self.extras.journal.as_ref().map_or(0, |j| j.stored_bytes)
    }

    /// Whether the store takes `d` for this session (always, when it is
    /// not durable or `d` is QoS 0); `divisor` as `store_quota::admits`.
    pub(crate) fn store_admits(
        &self,
        d: &Delivery,
        divisor: u64,
    ) -> Result<(), super::store_quota::Refusal> {
        match &self.extras.journal {
            Some(j) if d.qos != crate::codec::QoS::AtMostOnce => super::store_quota::admits(
                j.stored_bytes,
                super::store_quota::delivery_bytes(d),
                divisor,
            ),
            _ => Ok(()),
        }
    }

    /// `d` entered this durable session: its bytes count.
    pub(crate) fn store_acquire(&mut self, d: &Delivery) {
        if let Some(j) = &mut self.extras.journal {
            let bytes = super::store_quota::delivery_bytes(d);
            j.stored_bytes += bytes;
            super::store_quota::acquire(bytes);
        }
    }

    /// `d` left this durable session: its bytes no longer count.
    pub(crate) fn store_release(&mut self, d: &Delivery) {
        if let Some(j) = &mut self.extras.journal {
            let bytes = super::store_quota::delivery_bytes(d).min(j.stored_bytes);
            j.stored_bytes -= bytes;
            super::store_quota::release(bytes);
        }
    }

    /// Counts a delivery the store refused for this session (module doc of
    /// `store_quota`): a queue-full drop of the session, and by bound.
    pub(crate) fn store_refused(&mut self, refusal: super::store_quota::Refusal) {
        self.extras.drops.queue_full += 1;
        super::store_quota::count_refusal(refusal, self.client_id.as_str());
    }

    /// The epoch of a durable session; `None` when not durable.
    pub fn durable_epoch(&self) -> Option<u64> {
        self.extras.journal.as_ref().map(|j| j.epoch)
    }

    /// The meta record's fields of this session (see [`MetaState`]).
    pub fn meta_state(&self) -> MetaState {
        let snapshot_subscriptions = super::snapshot::subscriptions_of(self);
        let d = &self.extras.drops;
        MetaState {
            expiry_interval_s: self.expiry_interval_s,
            subscriptions: snapshot_subscriptions,
            next_packet_id: self.next_packet_id,
            next_seq: self.next_seq,
            queue_len_max: self.queue_len_max,
            incoming_qos2: self.incoming_qos2.iter().copied().collect(),
            drops: super::snapshot::DropsSnapshot {
                queue_full: d.queue_full,
                expired: d.expired,
                too_large: d.too_large,
                closed: d.closed,
            },
        }
    }

    /// Notes a change for the store if the session is durable (nothing
    /// is built otherwise).
    #[inline]
    pub(crate) fn note(&mut self, change: impl FnOnce() -> Change) {
        if self.extras.journal.is_none() {
            return;
        }
        let change = match change() {
            Change::Put {
                seq,
                delivery,
                inflight,
                fresh,
            } => NotedChange::Put {
                seq,
                delivery,
                inflight,
                fresh,
            },
            Change::Remove { seq } => NotedChange::Remove { seq },
            Change::Meta => NotedChange::Meta(Box::new(self.meta_state())),
        };
        if let Some(journal) = &mut self.extras.journal {
            journal.note_change(change);
        }
    }

    /// Notes the new state of the inflight message `id`.
    pub(crate) fn note_outbound(&mut self, id: u16) {
        if self.extras.journal.is_none() {
            return; // read only: the box is not made for nothing
        }
        if let (Some(journal), Some(o)) = (&mut self.extras.journal, self.inflight.get(&id)) {
            journal.note_outbound(id, o, false);
        }
    }

    /// The session is no longer durable (removed from the store).
    pub fn forget_durable(&mut self) {
        if self.extras.journal.is_some() {
            self.extras.journal = None;
        }
    }

    /// Notes that the session's meta record changed (subscriptions,
    /// inbound QoS 2 ids).
    pub(crate) fn note_meta(&mut self) {
        self.note(|| Change::Meta);
    }
}
