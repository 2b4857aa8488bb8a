//! The shard's side of its durable store (docs/adr/0007-durable-sessions.md):
//! turns what its durable sessions noted (`session::journal`) and what the
//! shard itself writes (a session created, moved, offline, ended; a
//! retained topic it owns) into [`Op`]s, gathers them (one executor turn
//! with `sync = "always"`, `batch_interval` otherwise; a delivery put and
//! removed within one gathering cancels) and sends them as one [`Batch`]
//! through the shard's [`StoreHandle`] (docs/durability.md, "Batches").
//!
//! The interface is narrow: `attach` (at start, with the store's handle),
//! `push` (an op the shard writes itself, ordered after every change
//! noted before it), `is_durable_expiry` (which sessions are durable) and
//! the task `run_store` (one per shard) that seals and sends the batches. A full
//! channel is awaited by that task, never dropped: the ops gathered
//! meanwhile wait in the next batch, and their bytes are bounded by
//! `limits::DURABLE_PENDING_BYTES_MAX` (`is_over_pending`: the shard stops
//! reading publishers above it).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use ahash::AHashMap;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::SyncMode;
use crate::durable::{
    Batch, DeliveryRecord, DeliveryState, Op, SessionMeta, StoreHandle, Synced, Ticket,
};
use crate::limits::{DURABLE_GATHER_SEAL_BYTES, DURABLE_PENDING_BYTES_MAX};
use crate::session::journal::{self, AwaitingKind, MetaState, Noted, NotedChange};
use crate::session::snapshot::{AwaitingSnapshot, DeliverySnapshot, MessageSnapshot, WallClock};
use crate::session::{Message, Session, SessionSnapshot};

use super::cluster::update_acks_gate;
use super::msg::ShardMsg;
use super::state::{ConnHandle, Shard, ShardId};

/// A shard's store, once attached (`None`: durable sessions are off).
#[derive(Default)]
pub struct Durable {
    inner: RefCell<Option<Inner>>,
    /// Tasks waiting for a ticket to be synced, by ticket (`wait_synced`);
    /// woken by the watcher task (`run_synced`), the one task that waits on
    /// the store's `Synced` (it has room for one waker).
    waiters: RefCell<BTreeMap<Ticket, Vec<Waker>>>,
    /// The highest ticket the watcher saw synced.
    synced_seen: Cell<Ticket>,
    /// Readers waiting for the gathered bytes to go below
    /// `DURABLE_PENDING_BYTES_MAX` (`wait_pending_room`).
    room_waiters: RefCell<Vec<Waker>>,
    /// The Redis backend's loads and fenced answers (`durable_resume`).
    redis: RefCell<Option<crate::durable::redis::RedisClient>>,
}

struct Inner {
    handle: StoreHandle,
    /// `sync = "always"`: acknowledgements wait for their tickets.
    always: bool,
    /// How long a batch gathers (`batch` and `none`; `always` seals every
    /// executor turn): `durable_sessions.batch_interval`.
    gather_interval: Duration,
    /// The batch being gathered, in order: notes as the sessions made them
    /// (made into ops only at the seal, and only if they survive: `seal`),
    /// ops the shard pushed, and `None` where a put and its removal
    /// cancelled.
    entries: Vec<Option<Entry>>,
    /// Where the last put of a delivery is in `entries`, by `(journal,
    /// session generation, seq)`: a later change of it replaces it there.
    /// The journal is the address of the client id its notes share (one
    /// `Arc` per `Journal`, kept alive by the entry): hashing it is cheap,
    /// and notes of another journal of the same client (there is one per
    /// `make_durable`) never merge, which can only write more, never
    /// reorder.
    deliveries: AHashMap<(usize, u32, u64), Slot>,
    /// Per client, how many `PutSession` / `RemoveSession` this gathering
    /// holds: a delivery's changes never merge across one (the session op
    /// replaces or removes what came before it in the store).
    generations: AHashMap<Arc<str>, u32>,
    /// The room of the last notes taken (`absorb_journal`).
    spare: Vec<Noted>,
    /// Anything was gathered (even if all of it cancelled): with `always`
    /// an acknowledgement may wait for this gathering's ticket, so it is
    /// sealed even when empty.
    touched: bool,
    /// A push or notes arrived since the store task last looked.
    news: bool,
    /// Estimated bytes of `entries` (payloads and topics).
    bytes: usize,
    /// The store task, waiting for ops.
    waker: Option<Waker>,
    /// The Redis backend: a delivery put and removed in one gathering still
    /// writes its removal (an ownership check: fencing, ADR 0007).
    keep_removals: bool,
    /// `sync = "batch"`: acknowledgements go at once while the store keeps
    /// up, and wait once it is behind (`lagging_ticket`).
    batch: bool,
    /// Batches sealed and not yet seen synced, with when they were sealed
    /// (`batch` only; at most the channel's batches and the one being
    /// sent).
    sealed: VecDeque<(Ticket, Instant)>,
}

/// What the gathering holds at one place.
enum Entry {
    Noted(Noted),
    Op(Op),
}

/// A delivery's place in the gathering.
#[derive(Clone, Copy)]
struct Slot {
    at: usize,
    /// The put that entered the delivery into the session is in this
    /// gathering: no earlier batch holds it, so a removal cancels it.
    fresh: bool,
}

impl Durable {
    /// Durable sessions are on: ops go through `handle` from now on.
    /// `gather_interval`: how long a batch gathers with `batch` and `none`
    /// (`durable_sessions.batch_interval`).
    pub fn attach(&self, handle: StoreHandle, mode: SyncMode, gather_interval: Duration) {
        *self.inner.borrow_mut() = Some(Inner::new(handle, mode, gather_interval));
    }

    /// The Redis backend: connects resume sessions from it, and its
    /// fenced answers end sessions here (`durable_resume`).
    pub fn attach_redis(&self, client: crate::durable::redis::RedisClient) {
        if let Some(inner) = self.inner.borrow_mut().as_mut() {
            inner.keep_removals = true;
        }
        *self.redis.borrow_mut() = Some(client);
    }

    /// The Redis backend's client, while attached.
    pub fn redis(&self) -> Option<crate::durable::redis::RedisClient> {
        self.redis.borrow().clone()
    }

    pub fn is_on(&self) -> bool {
        self.inner.borrow().is_some()
    }

    /// Whether a session with this effective expiry interval is durable
    /// here (ADR 0007: expiry > 0, which is also 3.1.1's Clean Session 0).
    pub fn is_durable_expiry(&self, expiry_interval_s: u32) -> bool {
        expiry_interval_s > 0 && self.is_on()
    }

    /// Appends `op` after everything noted so far (nothing when off).
    pub fn push(&self, op: Op) {
        let mut inner = self.inner.borrow_mut();
        let Some(inner) = inner.as_mut() else {
            return;
        };
        inner.absorb_journal();
        inner.push(op);
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    /// `sync = "always"` with a store attached.
    pub fn is_always(&self) -> bool {
        self.inner.borrow().as_ref().is_some_and(|i| i.always)
    }

    /// With `sync = "always"`, the ticket an acknowledgement of what was
    /// just done must wait for: the batch being gathered if it holds
    /// anything (this change's ops are in it), else the last one sent;
    /// `None` when that is synced already, or in the other modes.
    ///
    /// With `sync = "batch"`: `None` while the store keeps up; once a batch
    /// sealed more than `batch_interval` ago is still not synced (a slow
    /// disk, Redis failing over or slow), the newest such batch's ticket:
    /// acknowledgements then wait as in `always` (back-pressure), so what
    /// was acknowledged and is not synced stays about two intervals' worth
    /// of changes, however far the store falls behind.
    pub fn ack_ticket(&self) -> Option<Ticket> {
        let mut inner = self.inner.borrow_mut();
        let inner = inner.as_mut()?;
        if inner.batch {
            return inner.lagging_ticket(Instant::now());
        }
        let inner = Some(&*inner).filter(|i| i.always)?;
        let next = inner.handle.next_ticket();
        let ticket = if inner.touched || journal::has_notes() {
            next
        } else {
            next - 1
        };
        (ticket > inner.handle.synced.ticket()).then_some(ticket)
    }

    /// Ready once `ticket` is synced (or the store is gone: nothing will
    /// sync it, and the node is stopping).
    pub async fn wait_synced(&self, ticket: Ticket) {
        poll_fn(|cx| {
            let synced = match self.inner.borrow().as_ref() {
                Some(i) => i.handle.synced.ticket(),
                None => return Poll::Ready(()),
            };
            if synced >= ticket {
                return Poll::Ready(());
            }
            self.waiters
                .borrow_mut()
                .entry(ticket)
                .or_default()
                .push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The watcher: wakes the waiters of every ticket the store reports
    /// synced.
    async fn run_synced(&self, synced: Arc<Synced>) {
        loop {
            let seen = self.synced_seen.get();
            let now = poll_fn(|cx| synced.poll_above(seen, cx)).await;
            self.synced_seen.set(now);
            let woken = {
                let mut waiters = self.waiters.borrow_mut();
                let later = waiters.split_off(&(now + 1));
                std::mem::replace(&mut *waiters, later)
            };
            for w in woken.into_values().flatten() {
                w.wake();
            }
        }
    }

    /// Bytes gathered and not yet handed to the store's channel above the
    /// bound: the shard stops reading publishers until they are sent.
    pub fn is_over_pending(&self) -> bool {
        self.inner
            .borrow()
            .as_ref()
            .is_some_and(|i| i.bytes > DURABLE_PENDING_BYTES_MAX)
    }

    /// The gathering should be sealed before its interval passed: its
    /// bytes near the pending bound (the shard would stop reading).
    fn is_near_pending(&self) -> bool {
        self.inner
            .borrow()
            .as_ref()
            .is_some_and(|i| i.bytes >= DURABLE_GATHER_SEAL_BYTES)
    }

    /// Ready once the gathered bytes are within the bound again (a reader
    /// of publishers waits here: the pressure path of ADR 0002).
    pub async fn wait_pending_room(&self) {
        poll_fn(|cx| {
            if !self.is_over_pending() {
                return Poll::Ready(());
            }
            self.room_waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The ops gathered since the last call, sealed as the next batch
    /// (`None` if there are none; with `always`, an empty batch if
    /// everything gathered cancelled: an acknowledgement may wait for its
    /// ticket).
    pub fn take_batch(&self) -> Option<(Batch, tokio::sync::mpsc::Sender<Batch>)> {
        let mut inner = self.inner.borrow_mut();
        let inner = inner.as_mut()?;
        inner.absorb_journal();
        let ops = inner.seal(&WallClock::now())?;
        for w in self.room_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        let batch = inner.handle.seal(ops);
        if inner.batch {
            inner.sealed.push_back((batch.ticket, Instant::now()));
        }
        Some((batch, inner.handle.batches.clone()))
    }

    /// The store's channel (`None`: no store, or closed).
    fn sender(&self) -> Option<tokio::sync::mpsc::Sender<Batch>> {
        Some(self.inner.borrow().as_ref()?.handle.batches.clone())
    }

    /// Takes this turn's notes into the gathering (where puts and removals
    /// cancel); returns when it is due to be sealed: `None` for at once.
    fn absorb_notes(&self) -> Option<Duration> {
        let mut inner = self.inner.borrow_mut();
        let inner = inner.as_mut()?;
        inner.absorb_journal();
        (!inner.always).then_some(inner.gather_interval)
    }

    /// At a clean stop: sends what is gathered and lets the store go (its
    /// writer syncs and ends once every shard did).
    pub async fn close(&self) {
        if let Some((batch, sender)) = self.take_batch() {
            let _ = sender.send(batch).await;
        }
        self.inner.borrow_mut().take();
        // The Redis thread ends once no shard can send it a request.
        self.redis.borrow_mut().take();
        for w in std::mem::take(&mut *self.waiters.borrow_mut())
            .into_values()
            .flatten()
        {
            w.wake();
        }
        for w in self.room_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Ready when something was pushed or noted since the last call;
    /// registers the task's waker otherwise.
    fn poll_news(&self, waker: &Waker) -> bool {
        let mut inner = self.inner.borrow_mut();
        let Some(inner) = inner.as_mut() else {
            return false;
        };
        if std::mem::take(&mut inner.news) || journal::has_notes() {
            return true;
        }
        inner.waker = Some(waker.clone());
        journal::wake_on_note(waker);
        false
    }

    /// Whether the gathering holds anything (or notes wait for it).
    fn is_gathering(&self) -> bool {
        self.inner
            .borrow()
            .as_ref()
            .is_some_and(|i| i.touched || journal::has_notes())
    }

    /// The store task (`Shard::run_durable`): seals the gathering and sends
    /// it as a batch, in ticket order, awaiting a full channel. With
    /// `always` once per executor turn that gathered anything (the turn's
    /// acknowledgements wait for it; group commit happens in the writer);
    /// with `batch` and `none` once the gather interval passed since the
    /// gathering began, or earlier once its bytes near the pending bound,
    /// so that more puts meet their removals and cancel. Returns when the
    /// writer is gone.
    async fn run_store(&self, shard: ShardId) {
        loop {
            poll_fn(
                |cx| match self.poll_news(cx.waker()) || self.is_gathering() {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                },
            )
            .await;
            // Let the rest of this turn note its changes first.
            futures_lite::future::yield_now().await;
            if let Some(interval) = self.absorb_notes() {
                // One timer per gathering, raced with the news of each turn.
                let mut due = std::pin::pin!(glommio::timer::sleep(interval));
                while !self.is_near_pending() {
                    let passed = poll_fn(|cx| {
                        if due.as_mut().poll(cx).is_ready() {
                            Poll::Ready(true)
                        } else if self.poll_news(cx.waker()) {
                            Poll::Ready(false)
                        } else {
                            Poll::Pending
                        }
                    })
                    .await;
                    if passed {
                        break;
                    }
                    futures_lite::future::yield_now().await;
                    self.absorb_notes();
                }
            }
            // Room in the channel first, then the batch: the stop drops
            // this task, and a batch sealed before a wait for room would
            // go with it (acknowledged ops lost at a clean stop); ops
            // still gathered go out with `close`.
            let Some(sender) = self.sender() else {
                continue;
            };
            let Ok(permit) = sender.reserve().await else {
                tracing::error!(shard, "durable store writer is gone");
                return;
            };
            if let Some((batch, _)) = self.take_batch() {
                permit.send(batch);
            }
        }
    }
}

impl Inner {
    /// `sync = "batch"`: the newest sealed batch that is still not synced
    /// `gather_interval` after its seal (`None`: the store keeps up).
    fn lagging_ticket(&mut self, now: Instant) -> Option<Ticket> {
        let synced = self.handle.synced.ticket();
        while self.sealed.front().is_some_and(|&(t, _)| t <= synced) {
            self.sealed.pop_front();
        }
        let late = |&&(_, at): &&(Ticket, Instant)| now.duration_since(at) > self.gather_interval;
        self.sealed.iter().take_while(late).last().map(|&(t, _)| t)
    }

    fn new(handle: StoreHandle, mode: SyncMode, gather_interval: Duration) -> Inner {
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
    fn push(&mut self, op: Op) {
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
    fn absorb_journal(&mut self) {
        let mut notes = std::mem::take(&mut self.spare);
        journal::swap_notes(&mut notes);
        self.absorb(notes.drain(..));
        self.spare = notes;
    }

    /// Takes `notes` into the gathering: a later put of a delivery replaces
    /// its earlier one in place; a removal replaces it too, or cancels it
    /// (both vanish) if the put that entered the delivery is in this
    /// gathering.
    fn absorb(&mut self, notes: impl IntoIterator<Item = Noted>) {
        for noted in notes {
            self.touched = true;
            let seq = match noted.change {
                NotedChange::Put { seq, .. } | NotedChange::Remove { seq } => seq,
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
            let fresh = match noted.change {
                NotedChange::Put { fresh, .. } => Some(fresh),
                _ => None,
            };
            if let Some(fresh) = fresh {
                self.bytes += note_bytes(&noted.change);
                match self.deliveries.get(&key) {
                    Some(slot) => {
                        // Its op says whether the delivery entered in
                        // this batch (the writer cancels across batches).
                        let mut noted = noted;
                        if let NotedChange::Put { fresh, .. } = &mut noted.change {
                            *fresh |= slot.fresh;
                        }
                        self.replace(slot.at, Some(noted));
                    }
                    None => {
                        let at = self.entries.len();
                        self.deliveries.insert(key, Slot { at, fresh });
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

    /// Puts `noted` (or nothing) where a delivery's earlier change was.
    fn replace(&mut self, at: usize, noted: Option<Noted>) {
        if let Some(Entry::Noted(old)) = &self.entries[at] {
            self.bytes = self.bytes.saturating_sub(note_bytes(&old.change));
        }
        self.entries[at] = noted.map(Entry::Noted);
    }

    /// Ends the gathering: its surviving entries as ops, in order (`None`
    /// if it gathered nothing, or with `batch` / `none` if all of it
    /// cancelled).
    fn seal(&mut self, clock: &WallClock) -> Option<Vec<Op>> {
        if !std::mem::take(&mut self.touched) {
            return None;
        }
        let entries = std::mem::take(&mut self.entries);
        self.deliveries.clear();
        self.generations.clear();
        self.bytes = 0;
        self.news = false;
        let ops: Vec<Op> = entries
            .into_iter()
            .flatten()
            .map(|e| match e {
                Entry::Noted(noted) => op_of(noted, clock),
                Entry::Op(op) => op,
            })
            .collect();
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
                state: match inflight {
                    None => DeliveryState::Queued,
                    Some(i) => DeliveryState::Inflight {
                        packet_id: i.packet_id,
                        awaiting: match i.awaiting {
                            AwaitingKind::PubAck => AwaitingSnapshot::PubAck,
                            AwaitingKind::PubRec => AwaitingSnapshot::PubRec,
                            AwaitingKind::PubComp => AwaitingSnapshot::PubComp,
                        },
                        transmitted: i.transmitted,
                    },
                },
            }),
        },
        NotedChange::Remove { seq } => Op::RemoveDelivery { client, epoch, seq },
        NotedChange::Meta(state) => Op::PutMeta {
            meta: Box::new(meta_of(&client, epoch, *state, None, None)),
            client,
        },
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

/// The epoch a session gets when it appears in this shard's store (created,
/// imported from another shard or node, restored with a new owner): the
/// wall clock in ms, so a later owner's epoch is above an earlier one's
/// without the old epoch travelling with the session (ADR 0007, "Epochs").
pub fn new_epoch(clock: &WallClock) -> u64 {
    clock.unix_ms.max(1)
}

impl Shard {
    /// A session appears in this shard's store (created, imported, a Clean
    /// Start replacing one): made durable if its expiry says so, then
    /// written whole. A session that is no longer durable (its expiry
    /// became 0) is removed from the store.
    pub fn durable_put_session(&self, session: &mut Session, clock: &WallClock) {
        if !self.durable.is_on() {
            return;
        }
        if !self.durable.is_durable_expiry(session.expiry_interval_s()) {
            self.durable_forget(session);
            return;
        }
        // Never below the epoch a session resumed from Redis was loaded
        // with (a wall clock stepped back must not fence this node itself).
        let epoch = new_epoch(clock).max(session.durable_epoch().unwrap_or(0));
        session.make_durable(epoch);
        let snapshot = SessionSnapshot::of(session, None, None, clock);
        self.durable.push(Op::PutSession {
            client: Arc::from(session.client_id().as_str()),
            epoch,
            snapshot: Box::new(snapshot),
        });
    }

    /// A resumed session: its meta is rewritten (online: no deadline, no
    /// will), or it is written whole if it became durable with this
    /// connection, or removed if it no longer is.
    pub fn durable_resumed(&self, session: &mut Session, clock: &WallClock) {
        if !self.durable.is_on() {
            return;
        }
        match session.durable_epoch() {
            Some(_) if !self.durable.is_durable_expiry(session.expiry_interval_s()) => {
                self.durable_forget(session)
            }
            Some(epoch) => self.durable.push(Op::PutMeta {
                client: Arc::from(session.client_id().as_str()),
                meta: Box::new(meta_of(
                    session.client_id().as_str(),
                    epoch,
                    session.meta_state(),
                    None,
                    None,
                )),
            }),
            None => self.durable_put_session(session, clock),
        }
    }

    /// The session went offline: its meta with the expiry deadline and the
    /// pending will.
    pub fn durable_offline(
        &self,
        session: &Session,
        expires_at_unix_ms: Option<u64>,
        will: Option<(&Message, u64)>,
        clock: &WallClock,
    ) {
        let Some(epoch) = session.durable_epoch() else {
            return;
        };
        let will = will.map(|(m, due)| crate::session::snapshot::WillSnapshot {
            message: MessageSnapshot::of(m, clock),
            due_unix_ms: due,
        });
        self.durable.push(Op::PutMeta {
            client: Arc::from(session.client_id().as_str()),
            meta: Box::new(meta_of(
                session.client_id().as_str(),
                epoch,
                session.meta_state(),
                expires_at_unix_ms,
                will,
            )),
        });
    }

    /// The session leaves this shard's store (expired, ended, discarded,
    /// moved to another shard or node).
    pub fn durable_forget(&self, session: &mut Session) {
        if let Some(epoch) = session.durable_epoch() {
            self.durable_remove(session.client_id().as_str(), epoch);
            session.forget_durable();
        }
    }

    /// `durable_forget` by client id and epoch (the session is gone).
    pub fn durable_remove(&self, client_id: &str, epoch: u64) {
        self.durable.push(Op::RemoveSession {
            client: Arc::from(client_id),
            epoch,
        });
    }

    /// A retained message changed: written by the shard that owns the
    /// topic (`hash(topic) % shards`), so each topic is in one store.
    pub fn durable_retained(&self, topic: &str, message: Option<&Message>) {
        if !self.durable.is_on() || self.home_of(topic) != self.id {
            return;
        }
        let topic: Arc<str> = Arc::from(topic);
        self.durable.push(match message {
            Some(m) => Op::PutRetained {
                topic,
                message: Box::new(MessageSnapshot::of(m, &WallClock::now())),
            },
            None => Op::RemoveRetained { topic },
        });
    }

    /// Holds the ack of the PUBLISH just handled until `ticket` is synced
    /// here, every shard of `shards` answered `DurableSynced`, and the
    /// other nodes answered `forward` (if forwarded): the held-ack window
    /// of `session::connection::held`, so the publisher reads on.
    pub(super) fn hold_durable_ack(
        self: &Rc<Self>,
        handle: &Rc<ConnHandle>,
        ticket: Option<Ticket>,
        shards: Vec<ShardId>,
        forward: Option<tokio::sync::oneshot::Receiver<bool>>,
    ) {
        if ticket.is_none() && shards.is_empty() {
            if let Some(answer) = forward {
                self.hold_forward_ack(handle, answer);
            }
            return;
        }
        let gate = handle.conn.borrow().acks_gate();
        let Some(packet_id) = handle.conn.borrow_mut().hold_last_ack() else {
            return; // closed meanwhile: nothing to acknowledge
        };
        update_acks_gate(handle, gate);
        let (me, handle) = (self.clone(), handle.clone());
        glommio::spawn_local(async move {
            if let Some(ticket) = ticket {
                me.durable.wait_synced(ticket).await;
            }
            let mut answered = true;
            for shard in shards {
                let reply = me
                    .mesh
                    .call(shard, |token| ShardMsg::DurableSynced { token })
                    .await;
                answered &= reply.is_some();
            }
            // Forwarded: as `hold_forward_ack` (a node that will never
            // queue it releases all the same; no answer: stopping).
            if let Some(answer) = forward {
                answered &= answer.await.is_ok();
            }
            let gate = handle.conn.borrow().acks_gate();
            {
                let mut conn = handle.conn.borrow_mut();
                if answered && me.durable.is_on() {
                    conn.release_held_ack(packet_id);
                } else if conn.held_acks() > 0 {
                    // The node is stopping before the store synced it: no
                    // acknowledgement; the client sends it again.
                    conn.fail_held_acks();
                }
            }
            update_acks_gate(&handle, gate);
            me.drain_sync_actions(&handle);
            handle.raise_wake();
        })
        .detach();
    }

    /// The store task of this shard (`Durable::run_store`), with the
    /// watcher of its synced tickets.
    pub async fn run_durable(self: Rc<Self>) {
        let synced = self
            .durable
            .inner
            .borrow()
            .as_ref()
            .map(|i| i.handle.synced.clone());
        let _watcher = synced.map(|synced| {
            let me = self.clone();
            glommio::spawn_local(async move { me.durable.run_synced(synced).await })
        });
        self.durable.run_store(self.id).await;
    }
}

#[cfg(test)]
#[path = "durable_tests.rs"]
mod tests;
