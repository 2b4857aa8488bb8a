//! Back-pressure from congested subscribers to their publishers
//! (docs/adr/0002-subscriber-backpressure.md; the queue side is
//! `session::pressure`).
//!
//! A delivery that leaves its subscriber congested pauses the message's
//! publisher: the subscriber's shard records the publisher (its shard and
//! client id) with the subscriber and pauses it, here or with
//! `ShardMsg::Pause` to the publisher's shard. A paused connection's task
//! stops decoding and reading its socket (`ConnHandle::pauses` > 0), so
//! TCP's flow control stops the client. The subscriber's shard resumes
//! every publisher it paused (`ShardMsg::Resume` for other shards) when
//! the subscriber's queue is back at half its bound, when it closes, or
//! when its shard's tick finds it made no progress for
//! `mqtt.max_publisher_hold_ms` (then it is stalled and drops instead).
//! Nothing here waits: a `Pause` that does not fit in a full channel is
//! not sent (the next message tries again), a `Resume` that does not fit
//! goes in a task.

use super::mesh::TrySendError;
use super::msg::ShardMsg;
use super::state::{ConnHandle, Shard, ShardId};
use crate::session::pressure::StallClock;
use crate::session::Message;
use crate::session::Origin;
use ahash::{AHashMap, AHashSet};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// A congested subscriber of this shard and the publishers it paused.
struct Congestion {
    /// Weak: the connection's task must stay the last holder of its handle
    /// (`conn/close.rs`).
    subscriber: Weak<ConnHandle>,
    clock: StallClock,
    /// Each paused publisher once: its shard and client id (a publisher on
    /// another shard is known by what its messages carry).
    publishers: AHashSet<(ShardId, Origin)>,
}

/// The key of a subscriber's entry in `Pressure::congested`: the address of
/// its handle, unique while the handle lives (its connection's end removes
/// the entry, `Shard::relieve`).
fn key(handle: &ConnHandle) -> usize {
    handle as *const ConnHandle as usize
}

/// The `Pressure` part of a shard: its congested subscribers and the
/// publishers each paused, by the address of the subscriber's handle. Its
/// methods end their borrow before they return; none calls the shard.
#[derive(Default)]
pub struct Pressure {
    congested: RefCell<AHashMap<usize, Congestion>>,
}

type Publisher = (ShardId, Origin);

impl Pressure {
    /// Records that `subscriber`, congested at `now`, paused `publisher`;
    /// false when it had already.
    fn add(
        &self,
        shard: ShardId,
        subscriber: &Rc<ConnHandle>,
        publisher: Publisher,
        now: Instant,
    ) -> bool {
        let mut congested = self.congested.borrow_mut();
        let entry = congested.entry(key(subscriber)).or_insert_with(|| {
            let conn = subscriber.conn.borrow();
            tracing::debug!(
                shard,
                client_id = %conn.client_id(),
                queued = conn.session().queued_len(),
                "subscriber congested: its queue is past mqtt.max_mqueue_len; \
                 pausing its publishers"
            );
            let progress = conn.progress();
            Congestion {
                subscriber: Rc::downgrade(subscriber),
                clock: StallClock::new(progress, now),
                publishers: AHashSet::new(),
            }
        });
        entry.publishers.insert(publisher)
    }

    /// `publisher` was not paused after all.
    fn forget(&self, subscriber: &ConnHandle, publisher: &Publisher) {
        if let Some(c) = self.congested.borrow_mut().get_mut(&key(subscriber)) {
            c.publishers.remove(publisher);
        }
    }

    /// Ends `subscriber`'s congestion: the publishers it paused.
    fn remove(&self, subscriber: &ConnHandle) -> Option<AHashSet<Publisher>> {
        self.congested
            .borrow_mut()
            .remove(&key(subscriber))
            .map(|c| c.publishers)
    }

    /// The entries that end at `now`: subscribers gone or no longer
    /// congested (`None`), and those that made no progress for `hold`
    /// (the subscriber, to stall), each with the publishers it paused.
    fn take_ended(
        &self,
        now: Instant,
        hold: Duration,
    ) -> Vec<(Option<Rc<ConnHandle>>, AHashSet<Publisher>)> {
        let mut congested = self.congested.borrow_mut();
        if congested.is_empty() {
            return Vec::new();
        }
        let mut ended = Vec::new();
        for (&k, c) in congested.iter_mut() {
            let Some(subscriber) = c.subscriber.upgrade() else {
                ended.push((k, None));
                continue;
            };
            let conn = subscriber.conn.borrow();
            if !conn.is_congested() {
                ended.push((k, None));
            } else if c.clock.is_stalled(conn.progress(), now, hold) {
                drop(conn);
                ended.push((k, Some(subscriber)));
            }
        }
        ended
            .into_iter()
            .filter_map(|(k, stalled)| congested.remove(&k).map(|c| (stalled, c.publishers)))
            .collect()
    }
}

impl Shard {
    /// `subscriber` is congested after a delivery of `message`, which came
    /// from shard `from`: pause the message's publisher, once per
    /// subscriber.
    pub(super) fn hold_publisher(
        self: &Rc<Self>,
        subscriber: &Rc<ConnHandle>,
        from: ShardId,
        message: &Message,
        now: Instant,
    ) {
        let Some(origin) = &message.origin else {
            return;
        };
        let publisher = origin.as_str();
        // A client publishing to itself must keep reading its own acks.
        if from == self.id && subscriber.conn.borrow().client_id() == publisher {
            return;
        }
        if !self
            .pressure
            .add(self.id, subscriber, (from, origin.clone()), now)
        {
            return;
        }
        if from == self.id {
            self.pause_here(publisher);
            return;
        }
        let pause = ShardMsg::Pause {
            client_id: origin.to_byte_str(),
        };
        if let Err(unsent) = self.mesh.try_send(from, pause) {
            // Not paused, so nothing to resume: the publisher's next
            // message to this subscriber tries again.
            drop(unsent.into_message());
            self.pressure.forget(subscriber, &(from, origin.clone()));
        }
    }

    /// The subscriber's queue is back at half its bound, or its connection
    /// ends: resume the publishers it paused.
    pub(super) fn relieve(self: &Rc<Self>, subscriber: &ConnHandle) {
        if let Some(publishers) = self.pressure.remove(subscriber) {
            self.resume_publishers(publishers);
        }
    }

    fn resume_publishers(self: &Rc<Self>, publishers: AHashSet<Publisher>) {
        let now = Instant::now();
        for (shard, client_id) in publishers {
            if shard == self.id {
                self.resume_here(&client_id, now);
                continue;
            }
            let resume = ShardMsg::Resume {
                client_id: client_id.to_byte_str(),
            };
            if let Err(TrySendError::Full(msg)) = self.mesh.try_send(shard, resume) {
                // The channel is full: wait for room in a task (the Pause
                // this answers is already in the channel, ahead of it).
                let me = self.clone();
                glommio::spawn_local(async move { me.send(shard, msg).await }).detach();
            }
        }
    }

    /// Pause a publisher of this shard: its task stops reading.
    pub(super) fn pause_here(&self, client_id: &str) {
        if let Some(h) = self.sessions.online(client_id) {
            h.pauses.set(h.pauses.get().saturating_add(1));
        }
    }

    /// Undo one `pause_here`; the last one wakes the connection's task.
    pub(super) fn resume_here(&self, client_id: &str, now: Instant) {
        let handle = match self.sessions.online(client_id) {
            Some(h) if h.pauses.get() > 0 => h,
            _ => return,
        };
        handle.pauses.set(handle.pauses.get() - 1);
        if handle.pauses.get() == 0 {
            handle.conn.borrow_mut().handle_resumed(now);
            handle.raise_wake();
        }
    }

    /// On each tick: a congested subscriber that made no progress for the
    /// hold time is stalled (its publishers resume, its new messages are
    /// dropped); entries of subscribers no longer congested go.
    pub(super) fn check_stalls(self: &Rc<Self>, now: Instant) {
        let hold = Duration::from_millis(u64::from(self.settings.session.max_publisher_hold_ms));
        for (stalled, publishers) in self.pressure.take_ended(now, hold) {
            if let Some(subscriber) = stalled {
                let mut conn = subscriber.conn.borrow_mut();
                conn.stall();
                tracing::info!(
                    shard = self.id,
                    client_id = %conn.client_id(),
                    queued = conn.session().queued_len(),
                    hold_ms = hold.as_millis() as u64,
                    "subscriber stalled: no progress for mqtt.max_publisher_hold_ms; \
                     its publishers resume and its new messages are dropped"
                );
            }
            self.resume_publishers(publishers);
        }
    }
}
