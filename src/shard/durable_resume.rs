//! The Redis backend's part of a shard (ADR 0007, "The Redis backend"):
//! sessions shared by every node that uses the same Redis.
//!
//! Resume: a connect that finds no live owner of its id (no session on
//! this node's shards, and in a cluster no peer that exported one) asks
//! Redis for the stored session with a new epoch (`load_session`: the
//! wall clock in ms, as every epoch): Redis makes this node the owner, so
//! the writes of the previous one (a crashed or paused node) are refused
//! from then on. The shard awaits the answer (a oneshot from the
//! `ringmq-redis` thread), never blocks. A connect with Clean Start 1
//! loads nothing but still fences: it removes the stored session with its
//! new epoch.
//!
//! Fencing: a write Redis refused because a newer owner holds the session
//! comes back in the shard's fenced queue; each tick the shard ends that
//! session here (its connection gets DISCONNECT 0x8E, no will) if it is
//! still the one that wrote: the newer owner has it now.

use std::rc::Rc;

use super::durable::new_epoch;
use super::io::Oneshot;
use super::sessions::{Handover, Slot};
use super::state::Shard;
use super::takeover_remote::Unavailable;
use crate::codec::ByteStr;
use crate::durable::redis::{Error as RedisError, Fenced, RedisCounters, EPOCH_MAX};
use crate::durable::StoredSession;
use crate::session::{Session, WallClock};

impl Shard {
    /// The session of `client_id` from Redis when no live owner had it
    /// (`None`: no Redis backend, none stored, or Clean Start). A session
    /// found is not yet routed: the caller brings it in. Redis failing
    /// refuses the connect (`Unavailable`): starting fresh would drop a
    /// session that may be stored.
    pub(super) async fn load_from_store(
        &self,
        client_id: &ByteStr,
        clean_start: bool,
    ) -> Result<Option<Session>, Unavailable> {
        let Some(redis) = self.durable.redis() else {
            return Ok(None);
        };
        let clock = WallClock::now();
        let mut epoch = new_epoch(&clock);
        if clean_start {
            // Fences the previous owner and removes what it stored.
            self.durable_remove(client_id.as_str(), epoch);
            return Ok(None);
        }
        let mut loaded = redis.load_session(client_id.as_str(), epoch).await;
        if let Err(RedisError::Fenced { stored_epoch }) = loaded {
            // A newer epoch is stored (another node's clock ahead of this
            // one): take the session above it, as the newest connect.
            if stored_epoch < EPOCH_MAX {
                epoch = stored_epoch + 1;
                loaded = redis.load_session(client_id.as_str(), epoch).await;
            }
        }
        let stored = match loaded {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(None),
            Err(e) => {
                RedisCounters::add(&redis.counters().load_failures, 1);
                tracing::warn!(shard = self.id, client_id = %client_id, error = %e, "redis: cannot load the session: connect refused");
                return Err(Unavailable);
            }
        };
        RedisCounters::add(&redis.counters().sessions_resumed, 1);
        Ok(self.session_of_stored(client_id, stored, epoch, &clock))
    }

    /// A stored session as this shard's, under `epoch`. Its will and
    /// expiry do not apply: its client is connecting. One that is not a
    /// valid session is logged and dropped (the client starts fresh).
    fn session_of_stored(
        &self,
        client_id: &ByteStr,
        stored: StoredSession,
        epoch: u64,
        clock: &WallClock,
    ) -> Option<Session> {
        match super::durable_restore::snapshot_of(stored).into_session(clock) {
            Ok((mut session, _, _)) => {
                session.make_durable(epoch);
                tracing::debug!(shard = self.id, client_id = %client_id, epoch, "session resumed from redis");
                Some(session)
            }
            Err(e) => {
                tracing::warn!(shard = self.id, client_id = %client_id, "stored session refused, starting fresh: {e}");
                None
            }
        }
    }

    /// Ends every session Redis fenced on this shard (from the tick).
    pub(super) async fn end_fenced(self: &Rc<Self>) {
        let Some(redis) = self.durable.redis() else {
            return;
        };
        while let Some(fenced) = redis.pop_fenced() {
            if self.end_fenced_session(&fenced).await {
                RedisCounters::add(&redis.counters().sessions_fenced_ended, 1);
                tracing::warn!(
                    shard = self.id,
                    client_id = %fenced.client,
                    stored_epoch = fenced.stored_epoch,
                    "redis: session fenced by a newer owner: ended here"
                );
            }
        }
    }

    /// Ends `fenced.client`'s session here if its epoch is below the
    /// stored one (a session taken again since is kept). True if ended.
    async fn end_fenced_session(self: &Rc<Self>, fenced: &Fenced) -> bool {
        let id = ByteStr::from(&*fenced.client);
        let stale = |s: &Session| s.durable_epoch().is_some_and(|e| e < fenced.stored_epoch);
        match self.sessions.take(id.as_str()) {
            Some((key, Slot::Online(handle))) => {
                let is_stale = stale(handle.conn.borrow().session());
                self.sessions.put_back(key, Slot::Online(handle.clone()));
                if !is_stale {
                    return false;
                }
                // Nothing more of it is written: the newer owner's state
                // stays as it is.
                handle.conn.borrow_mut().session_mut().forget_durable();
                let parked = Oneshot::new();
                self.sessions
                    .set_handover(&handle, Handover::Local(parked.clone()));
                // DISCONNECT 0x8E and no will: the session lives on at
                // its newer owner.
                handle.conn.borrow_mut().taken_over_by_peer();
                self.drain_sync_actions(&handle);
                handle.request_close();
                drop(handle);
                parked.take().await;
                match self.sessions.take(id.as_str()) {
                    Some((_, Slot::Offline(parked))) => {
                        self.discard_fenced(parked.session).await;
                        true
                    }
                    Some((key, slot)) => {
                        self.sessions.put_back(key, slot);
                        false
                    }
                    None => false,
                }
            }
            Some((key, Slot::Offline(parked))) => {
                if !stale(&parked.session) {
                    self.sessions.put_back(key, Slot::Offline(parked));
                    return false;
                }
                self.discard_fenced(parked.session).await;
                true
            }
            Some((key, slot)) => {
                self.sessions.put_back(key, slot);
                false
            }
            None => false,
        }
    }

    /// Ends a fenced session without its will and without writing.
    async fn discard_fenced(self: &Rc<Self>, mut session: Session) {
        session.forget_durable();
        let _ = self.timers.take_will(session.client_id());
        self.end_session(session).await;
    }
}
