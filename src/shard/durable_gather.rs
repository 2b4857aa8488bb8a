//! A shard's gathering of durable ops (`durable.rs` seals and sends it):
//! the notes of its sessions (`session::journal`) and the ops the shard
//! pushes, in order, where a delivery put and removed within one gathering
//! cancels (both vanish) and a later put of a delivery replaces its earlier
//! one in place. Also how a note becomes an [`Op`] (`op_of`, `meta_of`) and
//! what an op costs the pending bound.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use std::collections::hash_map::Entry as Entry_;

use crate::config::SyncMode;
use crate::durable::{DeliveryRecord, DeliveryState, Op, SessionMeta, StoreHandle, Ticket};
use crate::session::journal::{self, AwaitingKind, InflightState, MetaState, Noted, NotedChange};
use crate::session::snapshot::{AwaitingSnapshot, DeliverySnapshot, WallClock};

pub(super) struct Inner {
    pub(super) handle: StoreHandle,
    /// `sync = "always"`: acknowledgements wait for their tickets.
    pub(super) always: bool,
    /// How long a batch gathers (`batch` and `none`; `always` seals every
    /// executor turn): `durable_sessions.batch_interval`.
    pub(super) gather_interval: Duration,
    /// The batch being gathered, in order: notes as the sessions made them
    /// (made into ops only at the seal, and only if they survive: `seal`),
    /// ops the shard pushed, and `None` where a put and its removal
    /// cancelled.
    pub(super) entries: Vec<Option<Entry>>,
    /// Where the last put of a delivery is in `entries`, by `(journal,
    /// session generation, seq)`: a later change of it replaces it there.
    /// The journal is the address of the client id its notes share (one
    /// `Arc` per `Journal`, kept alive by the entry): hashing it is cheap,
    /// and notes of another journal of the same client (there is one per
    /// `make_durable`) never merge, which can only write more, never
    /// reorder.
    pub(super) deliveries: AHashMap<(usize, u32, u64), Slot>,
    /// Per client, how many `PutSession` / `RemoveSession` this gathering
    /// holds: a delivery's changes never merge across one (the session op
    /// replaces or removes what came before it in the store).
    pub(super) generations: AHashMap<Arc<str>, u32>,
    /// The room of the last notes taken (`absorb_journal`).
    pub(super) spare: Vec<Noted>,
    /// Anything was gathered (even if all of it cancelled): with `always`
    /// an acknowledgement may wait for this gathering's ticket, so it is
    /// sealed even when empty.
    pub(super) touched: bool,
    /// A push or notes arrived since the store task last looked.
    pub(super) news: bool,
    /// Estimated bytes of `entries` (payloads and topics).
    pub(super) bytes: usize,
    /// The store task, waiting for ops.
    pub(super) waker: Option<Waker>,
    /// The Redis backend: a delivery put and removed in one gathering still
    /// writes its removal (an ownership check: fencing, ADR 0007).
    pub(super) keep_removals: bool,
    /// `sync = "batch"`: acknowledgements go at once while the store keeps
    /// up, and wait once it is behind (`lagging_ticket`).
    pub(super) batch: bool,
    /// Batches sealed and not yet seen synced, with when they were sealed
    /// (`batch` only; at most the channel's batches and the one being
    /// sent).
    pub(super) sealed: VecDeque<(Ticket, Instant)>,
}

/// What the gathering holds at one place.
pub(super) enum Entry {
    Noted(Noted),
    Op(Op),
}

/// A delivery's place in the gathering.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    at: usize,
    /// The put that entered the delivery into the session is in this
    /// gathering: no earlier batch holds it, so a removal cancels it.
    fresh: bool,
}

impl Inner {
    /// `sync = "batch"`: the newest sealed batch that is still not synced
    /// `gather_interval` after its seal (`None`: the store keeps up).
    pub(super) fn lagging_ticket(&mut self, now: Instant) -> Option<Ticket> {
        let synced = self.handle.synced.ticket();
        while self.sealed.front().is_some_and(|&(t, _)| t <= synced) {
            self.sealed.pop_front();
        }
        let late = |&&(_, at): &&(Ticket, Instant)| now.duration_since(at) > self.gather_interval;
        self.sealed.iter().take_while(late).last().map(|&(t, _)| t)
    }

    pub(super) fn new(handle: StoreHandle, mode: SyncMode, gather_interval: Duration) -> Inner {
        Inner {
            handle,
            always: mode == SyncMode::Always,
            keep_removals: false,
            batch: mode == SyncMode::Batch,
            sealed: VecDeque::new(),
            gather_interval,
            entries: Vec::new(),
            deliveries: AHashMap::new(),
            generations: AHashMap::new(),
            spare: Vec::new(),
            touched: false,
            news: false,
            bytes: 0,
            waker: None,
        }
    }

    /// Appends an op of the shard's own (after every note absorbed).
    pub(super) fn push(&mut self, op: Op) {
        if let Op::PutSession { client, .. } | Op::RemoveSession { client, .. } = &op {
            *self.generations.entry(client.clone()).or_default() += 1;
        }
        self.bytes += op_bytes(&op);
        self.entries.push(Some(Entry::Op(op)));
        self.touched = true;
        self.news = true;
    }

    /// Takes the notes of this thread's sessions into the gathering
    /// (`absorb`), keeping the room of both buffers.
    pub(super) fn absorb_journal(&mut self) {
        let mut notes = std::mem::take(&mut self.spare);
        journal::swap_notes(&mut notes);
        self.absorb(notes.drain(..));
        self.spare = notes;
    }

    /// Takes `notes` into the gathering: a later put of a delivery replaces
    /// its earlier one in place; a removal replaces it too, or cancels it
    /// (both vanish) if the put that entered the delivery is in this
    /// gathering.
    pub(super) fn absorb(&mut self, notes: impl IntoIterator<Item = Noted>) {
        for noted in notes {
            self.touched = true;
            let seq = match noted.change {
                NotedChange::Put { seq, .. }
                | NotedChange::Remove { seq }
                | NotedChange::State { seq, .. } => seq,
                NotedChange::Meta(_) => {
                    self.entries.push(Some(Entry::Noted(noted)));
                    continue;
                }
            };
            let generation = match self.generations.is_empty() {
                true => 0,
                false => self.generations.get(&noted.client).copied().unwrap_or(0),
            };
            let key = (
                Arc::as_ptr(&noted.client) as *const u8 as usize,
                generation,
                seq,
            );
            if let NotedChange::State { inflight, .. } = noted.change {
                self.absorb_state(key, inflight, noted);
                continue;
            }
            let fresh = match noted.change {
                NotedChange::Put { fresh, .. } => Some(fresh),
                _ => None,
            };
            if let Some(fresh) = fresh {
                self.bytes += note_bytes(&noted.change);
                let at = self.entries.len();
                match self.deliveries.entry(key) {
                    Entry_::Occupied(slot) => {
                        // Its op says whether the delivery entered in
                        // this batch (the writer cancels across batches).
                        let slot = *slot.get();
                        let mut noted = noted;
                        if let NotedChange::Put { fresh, .. } = &mut noted.change {
                            *fresh |= slot.fresh;
                        }
                        self.replace(slot.at, Some(noted));
                    }
                    Entry_::Vacant(v) => {
                        v.insert(Slot { at, fresh });
                        self.entries.push(Some(Entry::Noted(noted)));
                    }
                }
                continue;
            }
            match self.deliveries.remove(&key) {
                // Put and removed in one gathering: nothing is written if
                // the put entered it here, else only the removal where the
                // put was (an earlier batch holds the put).
                Some(slot) if slot.fresh && !self.keep_removals => self.replace(slot.at, None),
                // Redis: the removal stays, so every delivery still writes
                // and its script checks the owner (a stale owner whose
                // writes all cancelled would never learn it is fenced).
                Some(slot) if slot.fresh => {
                    self.bytes += note_bytes(&noted.change);
                    self.replace(slot.at, Some(noted));
                }
                Some(slot) => {
                    self.bytes += note_bytes(&noted.change);
                    self.replace(slot.at, Some(noted));
                }
                None => {
                    self.bytes += note_bytes(&noted.change);
                    self.entries.push(Some(Entry::Noted(noted)));
                }
            }
        }
    }

    /// A state-only note: merged into the change gathered for its delivery
    /// (a put takes the new state and keeps its message; an earlier state
    /// is replaced), else gathered as it is (the delivery's put is in an
    /// earlier batch).
    fn absorb_state(&mut self, key: (usize, u32, u64), state: InflightState, noted: Noted) {
        let at = match self.deliveries.entry(key) {
            Entry_::Occupied(slot) => slot.get().at,
            Entry_::Vacant(v) => {
                let at = self.entries.len();
                v.insert(Slot { at, fresh: false });
                self.bytes += note_bytes(&noted.change);
                self.entries.push(Some(Entry::Noted(noted)));
                return;
            }
        };
        match &mut self.entries[at] {
            Some(Entry::Noted(Noted {
                change: NotedChange::Put { inflight, .. },
                ..
            })) => *inflight = Some(state),
            Some(Entry::Noted(Noted {
                change: NotedChange::State { inflight, .. },
                ..
            })) => *inflight = state,
            // A slot is only ever a put or a state (a removal frees it).
            _ => self.replace(at, Some(noted)),
        }
    }

    /// Puts `noted` (or nothing) where a delivery's earlier change was.
    pub(super) fn replace(&mut self, at: usize, noted: Option<Noted>) {
        if let Some(Entry::Noted(old)) = &self.entries[at] {
            self.bytes = self.bytes.saturating_sub(note_bytes(&old.change));
        }
        self.entries[at] = noted.map(Entry::Noted);
    }

    /// Ends the gathering: its surviving entries as ops, in order (`None`
    /// if it gathered nothing, or with `batch` / `none` if all of it
    /// cancelled).
    pub(super) fn seal(&mut self, clock: &WallClock) -> Option<Vec<Op>> {
        if !std::mem::take(&mut self.touched) {
            return None;
        }
        self.deliveries.clear();
        self.generations.clear();
        self.bytes = 0;
        self.news = false;
        // `entries` keeps its room: a gathering under load holds tens of
        // thousands, and growing them anew each time was measured as most
        // of the gathering's cost (fresh pages, copies on every doubling).
        let mut ops = Vec::with_capacity(self.entries.len());
        ops.extend(self.entries.drain(..).flatten().map(|e| match e {
            Entry::Noted(noted) => op_of(noted, clock),
            Entry::Op(op) => op,
        }));
        (self.always || !ops.is_empty()).then_some(ops)
    }
}

/// What a note costs the pending bound, as `op_bytes` of its op.
fn note_bytes(change: &NotedChange) -> usize {
    const RECORD_BYTES: usize = 64;
    RECORD_BYTES
        + match change {
            NotedChange::Put { delivery, .. } => {
                delivery.message.payload.len() + delivery.message.topic.len()
            }
            _ => 0,
        }
}

/// One noted change as an op.
pub fn op_of(noted: Noted, clock: &WallClock) -> Op {
    let Noted {
        client,
        epoch,
        change,
    } = noted;
    match change {
        NotedChange::Put {
            seq,
            delivery,
            inflight,
            fresh,
        } => Op::PutDelivery {
            client,
            epoch,
            seq,
            fresh,
            record: Box::new(DeliveryRecord {
                delivery: DeliverySnapshot::of(&delivery, clock),
                state: inflight.map_or(DeliveryState::Queued, inflight_state),
            }),
        },
        NotedChange::Remove { seq } => Op::RemoveDelivery { client, epoch, seq },
        NotedChange::State { seq, inflight } => Op::PutDeliveryState {
            client,
            epoch,
            seq,
            state: inflight_state(inflight),
        },
        NotedChange::Meta(state) => Op::PutMeta {
            meta: Box::new(meta_of(&client, epoch, *state, None, None)),
            client,
        },
    }
}

/// A noted window state as the stored one.
fn inflight_state(i: InflightState) -> DeliveryState {
    DeliveryState::Inflight {
        packet_id: i.packet_id,
        awaiting: match i.awaiting {
            AwaitingKind::PubAck => AwaitingSnapshot::PubAck,
            AwaitingKind::PubRec => AwaitingSnapshot::PubRec,
            AwaitingKind::PubComp => AwaitingSnapshot::PubComp,
        },
        transmitted: i.transmitted,
    }
}

/// The meta record of a session: its own fields, and what the shard keeps
/// beside it offline (expiry deadline, pending will).
pub fn meta_of(
    client: &str,
    epoch: u64,
    state: MetaState,
    expires_at_unix_ms: Option<u64>,
    will: Option<crate::session::snapshot::WillSnapshot>,
) -> SessionMeta {
    SessionMeta {
        client_id: client.to_owned(),
        epoch,
        expiry_interval_s: state.expiry_interval_s,
        expires_at_unix_ms,
        subscriptions: state.subscriptions,
        next_packet_id: state.next_packet_id,
        next_seq: state.next_seq,
        queue_len_max: state.queue_len_max,
        incoming_qos2: state.incoming_qos2,
        drops: state.drops,
        will,
    }
}

/// What an op costs the pending bound: its payload and names, roughly.
fn op_bytes(op: &Op) -> usize {
    const RECORD_BYTES: usize = 64;
    RECORD_BYTES
        + match op {
            Op::PutDelivery { record, .. } => {
                let m = &record.delivery.message;
                m.payload.len() + m.topic.len()
            }
            Op::PutSession { snapshot, .. } => {
                snapshot.inflight.len() * RECORD_BYTES + snapshot.queue.len() * RECORD_BYTES
            }
            Op::PutRetained { message, .. } => message.payload.len() + message.topic.len(),
            _ => 0,
        }
}
