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

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::SyncMode;
use crate::durable::{Batch, Op, StoreHandle, Synced, Ticket};
use crate::limits::{DURABLE_GATHER_SEAL_BYTES, DURABLE_PENDING_BYTES_MAX};
use crate::session::journal;
use crate::session::snapshot::{MessageSnapshot, WallClock};
use crate::session::{Message, Session, SessionSnapshot};

use super::cluster::update_acks_gate;
use super::durable_gather::Inner;
pub use super::durable_gather::{meta_of, op_of};
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
    /// The synced ticket the last tick read (`recheck_wakeups`).
    synced_at_tick: Cell<Ticket>,
    /// Readers waiting for the gathered bytes to go below
    /// `DURABLE_PENDING_BYTES_MAX` (`wait_pending_room`).
    room_waiters: RefCell<Vec<Waker>>,
    /// The Redis backend's loads and fenced answers (`durable_resume`).
    redis: RefCell<Option<crate::durable::redis::RedisClient>>,
    /// Acknowledgements that wait for a ticket alone, in the order they were
    /// held (tickets never go down): one task releases all of a synced
    /// ticket in one pass (`release_held_acks`), instead of a task and a
    /// waker per acknowledgement.
    held: RefCell<VecDeque<(Ticket, Rc<ConnHandle>, u16)>>,
    /// Whether the task of `release_held_acks` runs.
    releasing: Cell<bool>,
}

impl Durable {
    /// Durable sessions are on: ops go through `handle` from now on.
    /// `gather_interval`: how long a batch gathers with `batch` and `none`
    /// (`durable_sessions.batch_interval`).
    pub fn attach(&self, handle: StoreHandle, mode: SyncMode, gather_interval: Duration) {
        journal::note_states(handle.takes_states);
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

    /// The highest ticket the store synced; `None` once it is gone.
    fn synced_ticket(&self) -> Option<Ticket> {
        self.inner
            .borrow()
            .as_ref()
            .map(|i| i.handle.synced.ticket())
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

    /// Once a tick: wakes what a lost cross-thread wake-up would leave
    /// asleep. The writer's `Synced::publish` and a note's wake reach this
    /// executor as foreign wake-ups, and on the development VM glommio was
    /// seen losing those (`watchdog.rs`); an acknowledgement of `always`
    /// would then wait for a synced ticket forever. Here a lost one costs
    /// one tick. Returns whether it woke anything that should have been
    /// woken already.
    pub fn recheck_wakeups(&self) -> bool {
        let (synced, store_waker) = {
            let mut inner = self.inner.borrow_mut();
            let Some(inner) = inner.as_mut() else {
                return false;
            };
            let gathering = inner.touched || journal::has_notes();
            // Taken only when there is something to seal: the task's one
            // registration must stay for the next `push` otherwise.
            let waker = if gathering { inner.waker.take() } else { None };
            (inner.handle.synced.ticket(), waker)
        };
        let mut late = false;
        if let Some(w) = store_waker {
            // Not necessarily late: with `batch` the task may be inside its
            // gather interval; a spurious wake only polls it once more.
            w.wake();
        }
        // What was synced at the previous tick: if the watcher has not seen
        // even that, its wake-up is over a tick late (a fresh publish the
        // watcher has yet to run for is not).
        let synced_at_last_tick = self.synced_at_tick.replace(synced);
        let seen = self.synced_seen.get();
        if synced > seen {
            self.synced_seen.set(synced);
            let woken = {
                let mut waiters = self.waiters.borrow_mut();
                let later = waiters.split_off(&(synced + 1));
                std::mem::replace(&mut *waiters, later)
            };
            late = !woken.is_empty() && seen < synced_at_last_tick;
            for w in woken.into_values().flatten() {
                w.wake();
            }
        }
        late
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
        if let (Some(ticket), true, None) = (ticket, shards.is_empty(), &forward) {
            // The common case: the store's sync alone.
            let durable = &self.durable;
            durable
                .held
                .borrow_mut()
                .push_back((ticket, handle.clone(), packet_id));
            if !durable.releasing.replace(true) {
                let me = self.clone();
                glommio::spawn_local(async move { me.release_held_acks().await }).detach();
            }
            return;
        }
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

    /// Releases the acknowledgements of `Durable::held` as their tickets
    /// are synced, oldest first, each connection woken once per pass; ends
    /// when none is left (the next hold starts it again). The store gone
    /// (the node stopping before it synced them): no acknowledgement, the
    /// connections close and their clients send those PUBLISHes again.
    async fn release_held_acks(self: Rc<Self>) {
        loop {
            let front = self.durable.held.borrow().front().map(|(t, _, _)| *t);
            let Some(ticket) = front else {
                self.durable.releasing.set(false);
                return;
            };
            self.durable.wait_synced(ticket).await;
            let synced = self.durable.synced_ticket();
            let due: Vec<_> = {
                let mut held = self.durable.held.borrow_mut();
                let n = held
                    .iter()
                    .take_while(|(t, _, _)| synced.is_none_or(|s| *t <= s))
                    .count();
                held.drain(..n).collect()
            };
            let mut woken: ahash::AHashSet<*const ConnHandle> = Default::default();
            let mut wake = Vec::new();
            for (_, handle, packet_id) in due {
                let gate = handle.conn.borrow().acks_gate();
                {
                    let mut conn = handle.conn.borrow_mut();
                    if synced.is_some() {
                        conn.release_held_ack(packet_id);
                    } else if conn.held_acks() > 0 {
                        conn.fail_held_acks();
                    }
                }
                update_acks_gate(&handle, gate);
                if woken.insert(Rc::as_ptr(&handle)) {
                    wake.push(handle);
                }
            }
            for handle in wake {
                self.drain_sync_actions(&handle);
                handle.raise_wake();
            }
        }
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
