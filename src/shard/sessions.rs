//! The `Sessions` part of a shard: where each client id whose session is
//! here stands (online, parked offline, moving between shards), the
//! takeovers waiting for an online connection to end, the client-id
//! registry of the ids homed here, and the count of admitted connections.
//!
//! The slots and the registry are one part because a claim reads both: an
//! id whose session is held here is owned by this shard without a registry
//! entry (docs/performance.md, idle round 2). Every method is synchronous and
//! ends its borrow before it returns (`view` and `resolver` hand out a
//! borrow only to code that cannot reach the shard): nothing here is held
//! across an await, and nothing here calls a connection or the shard.

use super::client_key::ClientKey;
use super::io::Oneshot;
use super::registry::{Answer, Registry};
use super::state::ConnHandle;
use crate::codec::ByteStr;
use crate::router::Location;
use crate::session::{Delivery, Session};
use ahash::AHashMap;
use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::time::Instant;

/// Where a session must go when its connection ends (takeover).
pub enum Handover {
    /// Another connection of this shard waits for the session: it is parked
    /// in the slots, where deliveries keep reaching it, and then this is
    /// signalled (`Shard::take_local`).
    Local(Rc<Oneshot<()>>),
    /// Another shard asked for it with this token.
    Remote(super::state::ShardId, u64),
    /// A connect on another node took it over (`takeover_remote`): its
    /// snapshot goes here, for that location.
    Peer(
        Location,
        Rc<Oneshot<Option<Box<crate::session::SessionSnapshot>>>>,
    ),
}

/// What the shard holds for a client id whose session lives here: 16
/// bytes, one per session in the slots (the expiry sits in the box with
/// the offline session, not beside every online one).
pub enum Slot {
    Online(Rc<ConnHandle>),
    Offline(Box<Parked>),
    /// The session went to another shard, which is adding its
    /// subscriptions to its router; until it has (`TakeoverEnd`), this
    /// shard's router still matches them and what they deliver waits here,
    /// then follows the session (`TakeoverPendings`).
    Exported(Box<Moving>),
    /// The session came from another shard and its subscriptions are being
    /// added here; what they deliver waits here until the old shard's
    /// deliveries arrived (`Session::deliver_moved`).
    Importing(Box<Moving>),
}

/// Deliveries for a session in the middle of a move between shards. At
/// most `mqtt.max_mqueue_len`: the session's queue would drop the rest.
#[derive(Default)]
pub struct Moving {
    pub deliveries: Vec<Delivery>,
    /// The session's filters, for the old shard to remove from its router
    /// at `TakeoverEnd` (empty when importing).
    pub filters: Vec<ByteStr>,
}

/// A session whose client is offline, and when it expires.
pub struct Parked {
    pub session: Session,
    pub expires_at: Option<Instant>,
}

pub type Slots = AHashMap<ClientKey, Slot>;

struct Held {
    slots: Slots,
    /// The client-id registry for ids whose home is this shard.
    registry: Registry,
    /// Takeovers waiting for an online connection to end, by the address
    /// of its `ConnHandle` (unique while the handle lives, and the
    /// connection takes its entry before it drops the handle). Here rather
    /// than in the handle: set only on takeover, and in the handle it was
    /// 8 bytes of every connection.
    handovers: AHashMap<usize, Handover>,
}

pub struct Sessions {
    held: RefCell<Held>,
    /// Admitted connections (past CONNECT), established or not yet.
    connections: Cell<usize>,
}

impl Sessions {
    /// The sessions of the shard at `home`.
    pub fn new(home: Location) -> Sessions {
        Sessions {
            held: RefCell::new(Held {
                slots: Slots::default(),
                registry: Registry::new(home),
                handovers: AHashMap::new(),
            }),
            connections: Cell::new(0),
        }
    }
}

/// The slots borrowed for the deliveries of one message (`Sessions::resolver`).
pub struct Resolver<'a> {
    held: RefMut<'a, Held>,
    moving_len_max: usize,
    /// Deliveries that found no session here, or a moving session's bound
    /// reached.
    no_recipient: u64,
}

impl Resolver<'_> {
    /// Where a delivery for `client` goes: its connection if online
    /// (returned: the caller gives it the delivery once no part is borrowed
    /// any more), its parked session if offline (queued there now), beside
    /// a session moving between shards (kept for it, up to
    /// `moving_len_max`), nowhere if the client has no session here
    /// (counted, `no_recipient`).
    #[inline]
    pub fn resolve(
        &mut self,
        client: &ByteStr,
        d: Delivery,
        now: Instant,
    ) -> Option<(Rc<ConnHandle>, Delivery)> {
        match self.held.slots.get_mut(client.as_str()) {
            Some(Slot::Online(h)) => Some((h.clone(), d)),
            Some(Slot::Offline(parked)) => {
                parked.session.deliver_offline(d, now);
                None
            }
            Some(Slot::Exported(m) | Slot::Importing(m)) => {
                if m.deliveries.len() < self.moving_len_max {
                    m.deliveries.push(d);
                } else {
                    self.no_recipient += 1;
                }
                None
            }
            None => {
                self.no_recipient += 1;
                None
            }
        }
    }

    /// How many deliveries found no recipient.
    #[inline]
    pub fn no_recipient(&self) -> u64 {
        self.no_recipient
    }
}

impl Sessions {
    /// Borrows the slots to resolve the recipients of one message; the
    /// borrow ends with the `Resolver` (before any delivery is given).
    #[inline]
    pub fn resolver(&self, moving_len_max: usize) -> Resolver<'_> {
        Resolver {
            held: self.held.borrow_mut(),
            moving_len_max,
            no_recipient: 0,
        }
    }

    /// Reads the slots (admin API, statistics, reports). `read` must not
    /// reach the shard: the slots stay borrowed while it runs.
    pub fn view<R>(&self, read: impl FnOnce(&Slots) -> R) -> R {
        read(&self.held.borrow().slots)
    }

    /// How many client ids have a slot here (online, offline or moving).
    pub fn len(&self) -> usize {
        self.held.borrow().slots.len()
    }

    /// The online connection of `client_id`, if it has one here.
    pub fn online(&self, client_id: &str) -> Option<Rc<ConnHandle>> {
        match self.held.borrow().slots.get(client_id) {
            Some(Slot::Online(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// Every online connection of this shard.
    pub fn online_handles(&self) -> Vec<Rc<ConnHandle>> {
        self.held
            .borrow()
            .slots
            .values()
            .filter_map(|s| match s {
                Slot::Online(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether `handle` is the connection in `client_id`'s slot.
    pub fn holds_online(&self, client_id: &str, handle: &Rc<ConnHandle>) -> bool {
        matches!(self.held.borrow().slots.get(client_id),
            Some(Slot::Online(h)) if Rc::ptr_eq(h, handle))
    }

    /// Puts `slot` in `client_id`'s place, keyed with the registry's copy
    /// of the id when it is homed here (one allocation for both maps).
    pub fn insert(&self, client_id: &str, slot: Slot) {
        self.held
            .borrow_mut()
            .slots
            .insert(ClientKey::new(client_id), slot);
    }

    /// Puts back a slot taken with `take`, under its own key.
    pub fn put_back(&self, key: ClientKey, slot: Slot) {
        self.held.borrow_mut().slots.insert(key, slot);
    }

    /// Takes `client_id`'s slot out, with its key (for `put_back`).
    pub fn take(&self, client_id: &str) -> Option<(ClientKey, Slot)> {
        self.held.borrow_mut().slots.remove_entry(client_id)
    }

    pub fn remove(&self, client_id: &str) -> Option<Slot> {
        self.held.borrow_mut().slots.remove(client_id)
    }

    pub fn contains(&self, client_id: &str) -> bool {
        self.held.borrow().slots.contains_key(client_id)
    }

    /// The deliveries kept while `client_id`'s session moved in, ending
    /// its importing slot.
    ///
    /// # Panics
    /// If the slot is not importing: only the connect that imports the
    /// session changes it.
    pub fn end_import(&self, client_id: &str) -> Vec<Delivery> {
        match self.remove(client_id) {
            Some(Slot::Importing(m)) => m.deliveries,
            _ => unreachable!("only this connect changes an importing slot"),
        }
    }

    /// One pass over the slots for the tick's two deadlines: the offline
    /// sessions whose expiry passed (taken out), and the online clients
    /// silent for 1.5 times their Keep Alive (returned, left in place).
    /// A paused publisher's packets are not read: its silence is ours
    /// (`shard::pressure`).
    pub fn take_expired(&self, now: Instant) -> (Vec<Session>, Vec<Rc<ConnHandle>>) {
        let held = &mut *self.held.borrow_mut();
        let mut silent = Vec::new();
        let ids: Vec<ClientKey> = held
            .slots
            .iter()
            .filter_map(|(id, s)| match s {
                Slot::Offline(parked) if parked.expires_at.is_some_and(|t| t <= now) => {
                    Some(id.clone())
                }
                Slot::Online(h) if h.pauses.get() == 0 => {
                    if h.conn.borrow().poll_timeout().is_some_and(|t| t <= now) {
                        silent.push(h.clone());
                    }
                    None
                }
                _ => None,
            })
            .collect();
        let expired = ids
            .into_iter()
            .filter_map(|id| match held.slots.remove(&id) {
                Some(Slot::Offline(parked)) => Some(parked.session),
                _ => None,
            })
            .collect();
        (expired, silent)
    }

    // ---- takeovers waiting for a connection's end ----------------------

    /// Where the session of `handle`'s connection must go when it ends.
    pub fn set_handover(&self, handle: &Rc<ConnHandle>, to: Handover) {
        let key = Rc::as_ptr(handle) as usize;
        self.held.borrow_mut().handovers.insert(key, to);
    }

    /// The handover set for `handle`'s connection, if any: called once,
    /// when the connection ends, after its slot was removed (so no takeover
    /// can set one later).
    pub fn take_handover(&self, handle: &Rc<ConnHandle>) -> Option<Handover> {
        let key = Rc::as_ptr(handle) as usize;
        self.held.borrow_mut().handovers.remove(&key)
    }

    // ---- the registry of ids homed here (`registry.rs`) ----------------

    pub fn claim(&self, from: Location, client_id: &ByteStr, token: u64) -> Option<Answer> {
        let held = &mut *self.held.borrow_mut();
        let held_here = held.slots.contains_key(client_id.as_str());
        held.registry.claim(from, client_id, token, held_here)
    }

    pub fn claim_done(&self, client_id: &ByteStr) -> Option<Answer> {
        self.held.borrow_mut().registry.claim_done(client_id)
    }

    pub fn release(&self, from: Location, client_id: &ByteStr) {
        self.held.borrow_mut().registry.release(from, client_id);
    }

    // ---- admitted connections ------------------------------------------

    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    pub fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
    }

    /// Returns how many are left.
    pub fn connection_closed(&self) -> usize {
        let left = self.connections.get() - 1;
        self.connections.set(left);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::session::Message;
    use std::sync::Arc;

    fn delivery() -> Delivery {
        let message = Arc::new(Message {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            origin: None,
            expires_at: None,
            id: None,
        });
        Delivery {
            message,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
        }
    }

    /// Offline: queued in the session; moving: kept up to the bound, then
    /// counted; no slot: counted. Nothing is returned for any of them.
    #[test]
    fn the_resolver_queues_keeps_or_counts() {
        let sessions = Sessions::new(Location::new(crate::router::NodeId(1), 0));
        let parked = Parked {
            session: Session::new("off".into(), 60, 10),
            expires_at: None,
        };
        sessions.insert("off", Slot::Offline(Box::new(parked)));
        sessions.insert("moving", Slot::Importing(Box::default()));
        let now = Instant::now();
        {
            let mut slots = sessions.resolver(2);
            for client in ["off", "moving", "moving", "moving", "gone"] {
                assert!(slots.resolve(&client.into(), delivery(), now).is_none());
            }
            assert_eq!(slots.no_recipient(), 2);
        }
        assert_eq!(sessions.end_import("moving").len(), 2);
        sessions.view(|slots| match slots.get("off") {
            Some(Slot::Offline(p)) => assert_eq!(p.session.queued_len(), 1),
            _ => panic!("the offline slot left"),
        });
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn connections_are_counted() {
        let sessions = Sessions::new(Location::new(crate::router::NodeId(1), 0));
        sessions.connection_opened();
        sessions.connection_opened();
        assert_eq!(sessions.connection_closed(), 1);
        assert_eq!(sessions.connections(), 1);
    }
}
