//! One shard: the state it owns (router, retained copy, sessions, the part of
//! the client-id registry homed here) and the handlers for messages from
//! other shards. Only this shard's tasks touch it, through `Rc<Shard>`.

use super::client_key::ClientKey;
use super::io::{Oneshot, Signal};
use super::mesh::Mesh;
use super::msg::{Reply, ShardMsg};
use super::pressure::Congestion;
use super::registry::Registry;
use crate::codec::ByteStr;
use crate::metrics::ShardMetrics;
use crate::router::{
    InterestClock, InterestMarks, Location, NodeId, NumberedChange, RecipientRef, RetainedStore,
    Route, Router, SharedKey,
};
use crate::session::{
    Action, Connection, Delivery, Lifecycle, Message, Session, SessionConfig, WallClock,
};
use ahash::AHashMap;
use bytes::BytesMut;
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

pub type ShardId = u16;

use crate::admission::{NodeAdmission, ShardCounters, ShardCountersSnapshot};
use crate::limits::{
    ADMISSION_REPORT_INTERVAL, DROP_REPORT_INTERVAL, FREE_MEMORY_RELEASE_INTERVAL,
};

/// Settings every shard reads; built once from the config.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    /// This node (from `node.name`): the node of every location this
    /// shard names (`router::Location`).
    pub node: NodeId,
    /// Shared by every connection of every shard (`Connection` keeps an
    /// `Arc`, not a copy).
    pub session: Arc<SessionConfig>,

    pub retained_max_messages: usize,
    pub retained_max_payload_bytes: usize,
    /// Gives the memory the allocator holds free back to the system, if
    /// the allocator needs telling (`main` sets it for mimalloc, which
    /// returns freed pages only on a later allocation, after a delay: a
    /// shard whose clients went idle never makes that allocation). Called
    /// by the tick, see `Shard::release_free_memory`.
    pub release_free_memory: Option<fn()>,
}

/// Where a session must go when its connection ends (takeover).
pub enum Handover {
    /// Another connection of this shard waits for the session: it is parked
    /// in `slots`, where deliveries keep reaching it, and then this is
    /// signalled (`Shard::take_local`).
    Local(Rc<Oneshot<()>>),
    /// Another shard asked for it with this token.
    Remote(ShardId, u64),
}

/// A connected client as the shard sees it. The connection's task and the
/// shard's delivery path share it.
pub struct ConnHandle {
    pub conn: RefCell<Connection>,
    /// The task to wake at the next `raise_wake` (see `raised`).
    waker: Cell<Option<Waker>>,
    /// Raised whenever the connection may have something to transmit, or
    /// must close: wakes the connection's task wherever it waits (for the
    /// client or for room in the socket). The flag and the waker of an
    /// `io::Signal`, inline so that the flag shares the padding of the
    /// fields below instead of taking 8 bytes of its own.
    raised: Cell<bool>,
    /// Set once the connection must close after flushing.
    pub closing: Cell<bool>,
    /// While > 0 nothing is transmitted (a SUBACK waits for other shards
    /// to learn the new interest).
    pub tx_hold: Cell<u32>,
    /// While > 0 the connection's task neither decodes nor reads: one per
    /// congested subscriber that paused this publisher (`shard::pressure`).
    /// 16 bits in the padding after `tx_hold`.
    pub pauses: Cell<u16>,
    /// When the client connected (ms since the Unix epoch), for the admin
    /// API. The rest of what it shows of a connection is in `Connection`
    /// (Clean Start, the socket's descriptor for the peer's address): a
    /// 32-byte box of them cost every connection its allocation
    /// (docs/performance.md, "Idle connections after issue 12", round 2).
    pub connected_at_ms: u64,
}

impl ConnHandle {
    pub fn new(conn: Connection, connected_at_ms: u64) -> ConnHandle {
        ConnHandle {
            conn: RefCell::new(conn),
            waker: Cell::new(None),
            raised: Cell::new(false),
            closing: Cell::new(false),
            tx_hold: Cell::new(0),
            pauses: Cell::new(0),
            connected_at_ms,
        }
    }

    /// Close after flushing: wakes the connection's task, which stops
    /// waiting for the client, flushes and closes.
    pub fn request_close(&self) {
        self.closing.set(true);
        self.raise_wake();
    }

    /// Wakes the connection's task (see `raised`).
    pub fn raise_wake(&self) {
        self.raised.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether the wake was raised since the last call; clears it.
    pub fn take_raised(&self) -> bool {
        self.raised.replace(false)
    }

    /// The task to wake at the next `raise_wake`, for a poll that waits on
    /// it among other things.
    pub fn set_waker(&self, waker: &Waker) {
        let slot = self.waker.take();
        self.waker.set(match slot {
            Some(w) if w.will_wake(waker) => Some(w),
            _ => Some(waker.clone()),
        });
    }
}

/// Online recipients of one message, resolved while the router is borrowed
/// and handed their deliveries once that borrow ended
/// (`Shard::give_deliveries`).
type Targets = Vec<(Rc<ConnHandle>, Delivery)>;

/// Where a delivery for `client` goes: its connection if online (returned),
/// its parked session if offline (queued there now), beside a session
/// moving between shards (kept for it, up to `moving_len_max`), nowhere if
/// the client has no session on this shard any more (counted).
pub(super) fn resolve(
    slots: &mut AHashMap<ClientKey, Slot>,
    dropped_no_recipient: &mut u64,
    moving_len_max: usize,
    client: &ByteStr,
    d: Delivery,
    now: Instant,
) -> Option<(Rc<ConnHandle>, Delivery)> {
    match slots.get_mut(client.as_str()) {
        Some(Slot::Online(h)) => Some((h.clone(), d)),
        Some(Slot::Offline(parked)) => {
            parked.session.deliver_offline(d, now);
            None
        }
        Some(Slot::Exported(m) | Slot::Importing(m)) => {
            if m.deliveries.len() < moving_len_max {
                m.deliveries.push(d);
            } else {
                *dropped_no_recipient += 1;
            }
            None
        }
        None => {
            *dropped_no_recipient += 1;
            None
        }
    }
}

/// A SUBSCRIBE decoded and not finished yet (`Shard::subscribe_pending`):
/// dropped when its connection has carried it out, or with the connection.
pub struct SubscribePending(Rc<Shard>);

impl Drop for SubscribePending {
    fn drop(&mut self) {
        let shard = &self.0;
        let mut st = shard.state.borrow_mut();
        st.interest_clock.end_subscribe();
        shard.interest_marks.set(shard.id, st.interest_clock.mark());
    }
}

/// What `Shard::publish_here` leaves for other shards.
pub struct RemoteSends {
    message: Arc<Message>,
    /// The retained update to replicate (`Some(None)`: delete), before the
    /// message itself.
    retain: Option<Option<Arc<Message>>>,
    /// `shards`: other shards with matching ordinary subscribers; `shared`:
    /// shared groups whose pick is on another shard, or found no member
    /// here.
    route: Route,
}

/// A connection action `Shard::run_actions_now` could not finish without
/// waiting.
pub enum Deferred {
    Remote(RemoteSends),
    Action(Action),
}

/// What the shard holds for a client id whose session lives here: 16
/// bytes, one per session in `State::slots` (the expiry sits in the box with
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

pub struct State {
    pub router: Router,
    pub retained: RetainedStore<Arc<Message>>,
    pub slots: AHashMap<ClientKey, Slot>,
    /// The client-id registry for ids whose home is this shard.
    pub registry: Registry,
    /// Takeovers waiting for an online connection to end, by the address of
    /// its `ConnHandle` (unique while the handle lives, and the connection
    /// takes its entry before it drops the handle). Here rather than in the
    /// handle: set only on takeover, and in the handle it was 8 bytes of
    /// every connection.
    pub handovers: AHashMap<usize, Handover>,
    /// This shard's interest sequence and how far it applied the others'
    /// (`router::interest`).
    pub interest_clock: InterestClock,
    /// Delayed wills by due time; the client id lets a reconnect cancel it.
    pub wills: BTreeMap<(Instant, u64), (ByteStr, Arc<Message>)>,
    pub will_index: AHashMap<ByteStr, (Instant, u64)>,
    pub connections: usize,
    pub dropped_no_recipient: u64,
    /// Congested subscribers of this shard and the publishers they paused,
    /// by the address of the subscriber's handle (`shard::pressure`).
    pub congested: AHashMap<usize, Congestion>,
}

pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    pub settings: ShardSettings,
    /// Sends, calls and the stop protocol between shards (`mesh.rs`).
    pub mesh: Mesh,
    pub state: RefCell<State>,
    /// The transitions of this shard's sessions and their events
    /// (`session::lifecycle`, `shard/lifecycle.rs`).
    pub lifecycle: RefCell<Lifecycle>,
    next_token: Cell<u64>,
    /// Deterministic hash of client ids to home shards: the same on every shard.
    hasher: ahash::RandomState,
    pub shutdown: Arc<AtomicBool>,
    /// Per shard, its latest added ordinary interest (this shard writes
    /// only its own): a publish also goes to the shards whose additions
    /// this shard has not applied yet (`router::interest`).
    interest_marks: Arc<InterestMarks>,
    /// When the shard next sums its sessions' drop counters for the log.
    next_drop_report: Cell<Instant>,
    /// Drop total at the last report, so only growth is logged.
    reported_drops: Cell<u64>,
    /// A clock read at most `SHARD_TICK` old, for deliveries of messages
    /// without an expiry: their `now` only feeds `Connection::last_now`, and
    /// a clock read per delivered message cost 4 % of a shard's time at
    /// 1.7M msg/s.
    coarse_now: Cell<Instant>,
    /// The one buffer every connection of this shard receives into (see
    /// `conn::fill`): only a partial packet is kept per connection.
    pub read_scratch: RefCell<Box<[u8]>>,
    /// The one buffer every connection of this shard encodes its outgoing
    /// packets into (see `conn::poll_transmit`): a connection keeps only
    /// what the socket did not take, and nothing while idle.
    pub write_scratch: RefCell<BytesMut>,
    /// The online recipients of the message being delivered (see
    /// `Targets`), kept to reuse its allocation.
    scratch_targets: RefCell<Targets>,
    /// Node-wide admission state (live redirection config, connection
    /// count, round-robin cursor), shared lock-free with every shard and the
    /// admin thread.
    pub admission: Arc<NodeAdmission>,
    /// This shard's admission counters; other threads read them by asking
    /// the shard (`service::ShardContext::status`).
    pub counters: ShardCounters,
    /// Traffic counters, plain `Cell`s (read by `Shard::stats`).
    pub metrics: ShardMetrics,
    /// What the admin API shows of each online connection beyond its
    /// session, by `inspect::conn_key` (`shard::inspect`).
    /// When the shard next logs its redirect and refusal counts.
    next_admission_report: Cell<Instant>,
    /// Counts at the last report, so only growth is logged.
    reported_admission: Cell<ShardCountersSnapshot>,
    /// Connections at the last `release_free_memory`, and when it is due
    /// again whatever the connections do.
    released_at_connections: Cell<usize>,
    next_release: Cell<Instant>,
    /// Raised when the last connection ends (`stop.rs`).
    pub(super) no_connections: Signal,
}

impl Shard {
    pub fn new(
        id: ShardId,
        count: u16,
        settings: ShardSettings,
        senders: Senders<ShardMsg>,
        shutdown: Arc<AtomicBool>,
        interest_marks: Arc<InterestMarks>,
        admission: Arc<NodeAdmission>,
    ) -> Shard {
        let retained = RetainedStore::new(settings.retained_max_messages);
        Shard {
            id,
            count,
            state: RefCell::new(State {
                router: Router::new(Location::new(settings.node, id), count),
                retained,
                slots: AHashMap::new(),
                registry: Registry::new(Location::new(settings.node, id)),
                handovers: AHashMap::new(),
                interest_clock: InterestClock::new(id, count),
                wills: BTreeMap::new(),
                will_index: AHashMap::new(),
                connections: 0,
                dropped_no_recipient: 0,
                congested: AHashMap::new(),
            }),
            lifecycle: RefCell::new(Lifecycle::new()),
            settings,
            mesh: Mesh::new(id, count, senders),
            next_token: Cell::new(1),
            hasher: ahash::RandomState::with_seeds(0x5151, 0x7272, 0x9393, 0xb4b4),
            shutdown,
            interest_marks,
            next_drop_report: Cell::new(Instant::now() + DROP_REPORT_INTERVAL),
            reported_drops: Cell::new(0),
            coarse_now: Cell::new(Instant::now()),
            read_scratch: RefCell::new(vec![0; crate::limits::READ_CHUNK_BYTES].into_boxed_slice()),
            write_scratch: RefCell::new(BytesMut::new()),
            scratch_targets: RefCell::new(Vec::new()),
            admission,
            counters: ShardCounters::default(),
            metrics: ShardMetrics::default(),
            next_admission_report: Cell::new(Instant::now() + ADMISSION_REPORT_INTERVAL),
            reported_admission: Cell::new(ShardCountersSnapshot::default()),
            released_at_connections: Cell::new(0),
            next_release: Cell::new(Instant::now() + FREE_MEMORY_RELEASE_INTERVAL),
            no_connections: Signal::default(),
        }
    }

    /// This shard as a location: its node and its id.
    pub fn location(&self) -> Location {
        Location::new(self.settings.node, self.id)
    }

    /// Shard `shard` of this node as a location.
    pub fn at(&self, shard: ShardId) -> Location {
        Location::new(self.settings.node, shard)
    }

    /// Numbers an interest change this shard's router just made, and marks
    /// an addition of ordinary interest for the other shards' publish paths
    /// (`router::interest`). Called in the same step as the router's
    /// change, with no await between: the mark must be up while the router
    /// holds the subscription and before any shard can have applied it.
    fn number(&self, st: &mut State, change: crate::router::InterestChange) -> NumberedChange {
        let adds = change.group.is_none() && change.members > 0;
        let update = NumberedChange {
            seq: st.interest_clock.issue_change(adds),
            change,
        };
        debug_assert_eq!(adds, update.adds_ordinary_interest());
        if self.count > 1 && adds {
            self.interest_marks.set(self.id, st.interest_clock.mark());
        }
        update
    }

    /// A SUBSCRIBE was decoded on this shard: other shards send publishes
    /// here until the guard drops (`InterestClock::begin_subscribe`).
    pub fn subscribe_pending(self: &Rc<Self>) -> Option<SubscribePending> {
        if self.count < 2 {
            return None;
        }
        let mut st = self.state.borrow_mut();
        st.interest_clock.begin_subscribe();
        self.interest_marks.set(self.id, st.interest_clock.mark());
        Some(SubscribePending(self.clone()))
    }

    /// Adds to `shards` every shard whose added interest this shard has not
    /// applied yet: their new subscribers may match (see `router::interest`
    /// for the race this closes).
    fn add_shards_behind(&self, shards: &mut smallvec::SmallVec<[ShardId; 4]>) {
        self.state
            .borrow()
            .interest_clock
            .behind(&self.interest_marks, |s| {
                if !shards.contains(&s) {
                    shards.push(s);
                }
            });
    }

    pub fn token(&self) -> u64 {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    pub fn home_of(&self, client_id: &str) -> ShardId {
        (self.hasher.hash_one(client_id) % self.count as u64) as ShardId
    }

    async fn broadcast_interest(&self, update: NumberedChange) {
        for s in 0..self.count {
            if s != self.id {
                self.send(
                    s,
                    ShardMsg::Interest {
                        update: update.clone(),
                        ack: None,
                    },
                )
                .await;
            }
        }
    }

    /// Broadcast an interest change and wait until every other shard has
    /// applied it. A SUBACK is held until then, so a client that saw its
    /// SUBACK gets every message published afterwards on any shard.
    async fn broadcast_interest_acked(&self, update: NumberedChange) {
        self.mesh
            .call_all(|token| ShardMsg::Interest {
                update: update.clone(),
                ack: Some(token),
            })
            .await;
    }

    /// Returns once every other shard has handled everything it sent to
    /// this shard before it saw the barrier (channels are FIFO, so its
    /// reply comes after its earlier `Retain`s).
    pub(super) async fn barrier(&self) {
        self.mesh
            .call_all(|token| ShardMsg::Barrier { token })
            .await;
    }

    // ---- publish path -------------------------------------------------

    /// Route a message published by a client of this shard (or a will).
    pub async fn publish(self: &Rc<Self>, message: Arc<Message>) {
        if let Some(remote) = self.publish_here(message) {
            self.publish_remote(remote).await;
        }
    }

    /// The part of `publish` that needs no other shard, done without
    /// awaiting: the retained store, routing, delivery to this shard's
    /// subscribers. Returns what other shards still have to be sent, if
    /// anything. A one-shard node, or a message whose subscribers are all
    /// here, never builds a future for it.
    pub fn publish_here(self: &Rc<Self>, message: Arc<Message>) -> Option<RemoteSends> {
        let mut retain = None;
        if message.retain && self.settings.session.retain_available {
            let stored = if message.payload.is_empty() {
                None
            } else {
                Some(message.clone())
            };
            if stored
                .as_ref()
                .is_none_or(|m| m.payload.len() <= self.settings.retained_max_payload_bytes)
            {
                self.set_retained(&message.topic, stored.clone());
                if self.count > 1 {
                    retain = Some(stored);
                }
            }
        }
        // One trie walk gives the other shards to send to and this shard's
        // own recipients, delivered to at once.
        let mut route = Route::default();
        self.deliver_matching(&message, Some(&mut route), self.id);
        route.shards.retain(|s| *s != self.id);
        if self.count > 1 {
            self.add_shards_behind(&mut route.shards);
        }
        // Only this node's interest is applied until the cluster exists
        // (docs/adr/0001-cluster.md).
        debug_assert!(route.nodes.is_empty());
        if !route.shared.is_empty() {
            route.shared.retain(|(at, key)| {
                debug_assert!(at.is_on(self.settings.node));
                at.shard != self.id || !self.deliver_shared_here(&message, key, self.id)
            });
        }
        if retain.is_none() && route.shards.is_empty() && route.shared.is_empty() {
            return None;
        }
        Some(RemoteSends {
            message,
            retain,
            route,
        })
    }

    /// Sends what `publish_here` left for other shards, in the order the
    /// shards must see it: the retained update before the message.
    pub async fn publish_remote(self: &Rc<Self>, remote: RemoteSends) {
        let RemoteSends {
            message,
            retain,
            route: Route { shards, shared, .. },
        } = remote;
        if let Some(stored) = retain {
            for s in 0..self.count {
                if s != self.id {
                    self.send(
                        s,
                        ShardMsg::Retain {
                            topic: message.topic.clone(),
                            message: stored.clone(),
                        },
                    )
                    .await;
                }
            }
        }
        for s in shards {
            self.send(s, ShardMsg::Publish(message.clone())).await;
        }
        for (at, key) in shared {
            let s = at.shard;
            if s == self.id {
                // The local pick found no member: `deliver_shared` moves on.
                self.deliver_shared(message.clone(), key, 0, self.id).await;
            } else {
                self.send(
                    s,
                    ShardMsg::Shared {
                        message: message.clone(),
                        key,
                        hops: 0,
                    },
                )
                .await;
            }
        }
    }

    pub fn set_retained(&self, topic: &ByteStr, message: Option<Arc<Message>>) {
        let mut st = self.state.borrow_mut();
        if st.retained.set(topic, message).is_err() {
            tracing::warn!(topic = %topic, "retained store full; message not retained");
        }
    }

    /// Deliver to this shard's ordinary subscribers a message shard `from`
    /// sent.
    pub fn deliver_local(self: &Rc<Self>, message: &Arc<Message>, from: ShardId) {
        self.deliver_matching(message, None, from);
    }

    /// Delivers `message` to this shard's ordinary subscribers, resolved to
    /// their connections during the router's walk; with `route`, the same
    /// walk also says where else the message must go
    /// (`Router::route_each`). `from`: the shard the message came from,
    /// where its publisher is paused if a subscriber is congested.
    fn deliver_matching(
        self: &Rc<Self>,
        message: &Arc<Message>,
        route: Option<&mut Route>,
        from: ShardId,
    ) {
        let now = self.delivery_now(message);
        let mut targets = std::mem::take(&mut *self.scratch_targets.borrow_mut());
        {
            let st = &mut *self.state.borrow_mut();
            let State {
                router,
                slots,
                dropped_no_recipient,
                ..
            } = st;
            let moving_len_max = self.settings.session.max_mqueue_len;
            let deliver = |r: RecipientRef<'_>| {
                let client = r.client;
                let d = Delivery::of(message, r);
                targets.extend(resolve(
                    slots,
                    dropped_no_recipient,
                    moving_len_max,
                    client,
                    d,
                    now,
                ));
            };
            let origin = message.origin.as_deref();
            match route {
                Some(route) => router.route_each(&message.topic, origin, route, deliver),
                None => router.local_recipients_each(&message.topic, origin, deliver),
            }
        }
        self.give_deliveries(targets.drain(..), message, from, now);
        if targets.capacity() > crate::limits::DELIVERY_SCRATCH_KEPT_MAX {
            // A message with that many local subscribers: do not keep
            // its list's memory for every later one.
            targets = Targets::new();
        }
        *self.scratch_targets.borrow_mut() = targets;
    }

    /// Gives each connection its delivery of `message` (from shard
    /// `from`), in order, and pauses the publisher for each subscriber the
    /// delivery left congested. Runs after the state borrow that resolved
    /// them ended: a delivery can run shard code that borrows it again.
    fn give_deliveries(
        self: &Rc<Self>,
        targets: impl IntoIterator<Item = (Rc<ConnHandle>, Delivery)>,
        message: &Message,
        from: ShardId,
        now: Instant,
    ) {
        for (handle, d) in targets {
            let congested = {
                let mut conn = handle.conn.borrow_mut();
                conn.handle_delivery(d, now);
                conn.is_congested()
            };
            self.drain_sync_actions(&handle);
            handle.raise_wake();
            if congested {
                self.hold_publisher(&handle, from, message, now);
            }
        }
    }

    /// Delivers to the next local member of a shared group (passing over
    /// members whose session is gone, `redispatch::pick_shared_target`);
    /// false when the group has no member here (any more).
    fn deliver_shared_here(
        self: &Rc<Self>,
        message: &Arc<Message>,
        key: &SharedKey,
        from: ShardId,
    ) -> bool {
        let now = self.delivery_now(message);
        let target = {
            let st = &mut *self.state.borrow_mut();
            let moving_len_max = self.settings.session.max_mqueue_len;
            match super::redispatch::pick_shared_target(st, message, key, moving_len_max, now) {
                Some(target) => target,
                None => return false,
            }
        };
        self.give_deliveries(target, message, from, now);
        true
    }

    /// `now` for delivering `message`: a fresh clock read when it can
    /// expire (expiry is checked against it), else the coarse clock.
    fn delivery_now(&self, message: &Message) -> Instant {
        if message.expires_at.is_some() {
            let now = Instant::now();
            self.coarse_now.set(now);
            now
        } else {
            self.coarse_now.get()
        }
    }

    pub async fn deliver_shared(
        self: &Rc<Self>,
        message: Arc<Message>,
        key: SharedKey,
        hops: u8,
        from: ShardId,
    ) {
        if self.deliver_shared_here(&message, &key, from) {
            return;
        }
        // The member left after the sender's pick: try the next shard.
        let next = (self.id + 1) % self.count;
        if (hops as u16) < self.count && next != self.id {
            self.send(
                next,
                ShardMsg::Shared {
                    message,
                    key,
                    hops: hops + 1,
                },
            )
            .await;
        } else {
            self.state.borrow_mut().dropped_no_recipient += 1;
        }
    }

    /// Actions that can follow a delivery or a kick are handled without
    /// awaiting; a publish (none is expected here) is routed in a task.
    pub fn drain_sync_actions(self: &Rc<Self>, handle: &Rc<ConnHandle>) {
        loop {
            let action = handle.conn.borrow_mut().poll_action();
            match action {
                None => break,
                Some(Action::Close { .. }) => handle.request_close(),
                Some(Action::Publish(m)) => {
                    ShardMetrics::add(&self.metrics.messages_received, 1);
                    let me = self.clone();
                    glommio::spawn_local(async move { me.publish(m).await }).detach();
                }
                Some(other) => {
                    let me = self.clone();
                    let h = handle.clone();
                    glommio::spawn_local(async move { me.apply_action(&h, other).await }).detach();
                }
            }
        }
    }

    /// Carry out one action of a connection.
    pub async fn apply_action(self: &Rc<Self>, handle: &Rc<ConnHandle>, action: Action) {
        match action {
            Action::Publish(m) => {
                ShardMetrics::add(&self.metrics.messages_received, 1);
                self.publish(m).await
            }
            Action::Subscribe {
                filter,
                options,
                identifier,
                existed,
            } => {
                let client = handle.conn.borrow().client_id().clone();
                let update = {
                    let st = &mut *self.state.borrow_mut();
                    let outcome = st.router.subscribe(&client, &filter, options, identifier);
                    outcome.interest.map(|c| self.number(st, c))
                };
                let send_retained = match options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
                let shared = crate::router::topic::parse_shared(&filter)
                    .ok()
                    .flatten()
                    .is_some();
                if let Some(update) = update {
                    handle.tx_hold.set(handle.tx_hold.get() + 1);
                    self.broadcast_interest_acked(update).await;
                    handle.tx_hold.set(handle.tx_hold.get() - 1);
                } else if send_retained && !shared {
                    // No interest change to wait for, but a retained
                    // message another shard acknowledged may still be on
                    // its way here: wait until every shard's earlier
                    // messages (its `Retain`s) have arrived.
                    handle.tx_hold.set(handle.tx_hold.get() + 1);
                    self.barrier().await;
                    handle.tx_hold.set(handle.tx_hold.get() - 1);
                }
                if send_retained && !shared {
                    let now = Instant::now();
                    let mut found = Vec::new();
                    self.state
                        .borrow()
                        .retained
                        .for_each_match(&filter, |_, m| found.push(m.clone()));
                    let mut conn = handle.conn.borrow_mut();
                    for m in found {
                        if m.expires_at.is_some_and(|t| t <= now) {
                            continue;
                        }
                        let qos = options.qos.min(m.qos);
                        conn.handle_delivery(
                            Delivery {
                                message: m,
                                qos,
                                retain: true,
                                subscription_ids: identifier.into_iter().collect(),
                                shared: None,
                            },
                            now,
                        );
                    }
                }
                handle.raise_wake();
            }
            Action::Unsubscribe { filter } => {
                let client = handle.conn.borrow().client_id().clone();
                let update = {
                    let st = &mut *self.state.borrow_mut();
                    let outcome = st.router.unsubscribe(&client, &filter);
                    outcome.interest.map(|c| self.number(st, c))
                };
                if let Some(update) = update {
                    self.broadcast_interest(update).await;
                }
            }
            Action::Close { .. } => {
                handle.request_close();
            }
        }
    }

    /// Drain and carry out every pending action of a connection.
    pub async fn run_actions(self: &Rc<Self>, handle: &Rc<ConnHandle>) {
        if let Some(deferred) = self.run_actions_now(handle) {
            self.run_actions_from(handle, deferred).await;
        }
    }

    /// Carries out a connection's pending actions as long as none needs to
    /// wait (a publish whose subscribers are all on this shard, a close),
    /// and returns the first one that does, for `run_actions_from`. The
    /// reader calls this on every packet: the common case then never
    /// builds (and copies) the large future of `apply_action`.
    pub fn run_actions_now(self: &Rc<Self>, handle: &Rc<ConnHandle>) -> Option<Deferred> {
        loop {
            let action = handle.conn.borrow_mut().poll_action();
            match action {
                None => {
                    handle.raise_wake();
                    return None;
                }
                Some(Action::Publish(m)) => {
                    ShardMetrics::add(&self.metrics.messages_received, 1);
                    if let Some(remote) = self.publish_here(m) {
                        return Some(Deferred::Remote(remote));
                    }
                }
                Some(Action::Close { .. }) => handle.request_close(),
                Some(other) => return Some(Deferred::Action(other)),
            }
        }
    }

    /// Finishes what `run_actions_now` returned, then the rest of the
    /// connection's actions.
    pub async fn run_actions_from(self: &Rc<Self>, handle: &Rc<ConnHandle>, first: Deferred) {
        let mut next = Some(first);
        while let Some(deferred) = next {
            match deferred {
                Deferred::Remote(remote) => self.publish_remote(remote).await,
                Deferred::Action(action) => self.apply_action(handle, action).await,
            }
            next = self.run_actions_now(handle);
        }
    }

    // ---- subscriptions of a whole session -----------------------------

    /// Add a moved-in session's subscriptions to this shard's router; returns
    /// once every shard knows the interest (the client's CONNACK follows).
    /// Meanwhile publishes on other shards also come here (the additions
    /// are marked, `router::interest`).
    pub async fn subscribe_session(&self, session: &Session) {
        let client = session.client_id().clone();
        let mut updates = Vec::new();
        {
            let st = &mut *self.state.borrow_mut();
            for (filter, options, id) in session.subscriptions() {
                if let Some(c) = st.router.subscribe(&client, filter, *options, id).interest {
                    updates.push(self.number(st, c));
                }
            }
        }
        for u in updates {
            self.broadcast_interest_acked(u).await;
        }
    }

    pub async fn unsubscribe_session(&self, session: &Session) {
        let filters: Vec<ByteStr> = session.subscriptions().map(|(f, _, _)| f.clone()).collect();
        self.remove_subscriptions(session.client_id(), filters)
            .await;
    }

    pub async fn remove_subscriptions(&self, client: &ByteStr, filters: Vec<ByteStr>) {
        let changes = self.unroute(client, filters);
        self.announce_interest(changes).await;
    }

    /// Removes `client`'s subscriptions from this shard's router at once;
    /// the interest changes to announce (`announce_interest`) are returned,
    /// numbered.
    pub fn unroute(&self, client: &ByteStr, filters: Vec<ByteStr>) -> Vec<NumberedChange> {
        let mut changes = Vec::new();
        let st = &mut *self.state.borrow_mut();
        st.router.remove_client(client, filters, &mut changes);
        changes.into_iter().map(|c| self.number(st, c)).collect()
    }

    pub async fn announce_interest(&self, updates: Vec<NumberedChange>) {
        for u in updates {
            self.broadcast_interest(u).await;
        }
    }

    // ---- wills and expiry -------------------------------------------

    pub fn schedule_will(&self, client_id: &ByteStr, will: Arc<Message>, due: Instant) {
        let token = self.token();
        let mut st = self.state.borrow_mut();
        st.wills.insert((due, token), (client_id.clone(), will));
        st.will_index.insert(client_id.clone(), (due, token));
    }

    pub fn cancel_will(&self, client_id: &ByteStr) {
        let mut st = self.state.borrow_mut();
        if let Some(key) = st.will_index.remove(client_id) {
            st.wills.remove(&key);
        }
    }

    /// Sum the drop counters of every session held here and log the growth
    /// since the last report. O(sessions), so it runs rarely.
    pub fn report_drops(&self) -> u64 {
        let st = self.state.borrow();
        let total: u64 = st
            .slots
            .values()
            .map(|s| match s {
                Slot::Online(h) => h.conn.borrow().drop_counts().total(),
                Slot::Offline(parked) => parked.session.drop_counts().total(),
                Slot::Exported(_) | Slot::Importing(_) => 0,
            })
            .sum::<u64>();
        let before = self.reported_drops.replace(total);
        if total > before {
            tracing::info!(
                shard = self.id,
                dropped = total - before,
                "messages dropped since the last report (see docs: queue drop policy)"
            );
        }
        total
    }

    /// Log how many clients were redirected or refused since the last
    /// report: one line per interval at most, however high the rate (each
    /// redirect also has a debug line).
    pub fn report_admission(&self) {
        let mut now = self.counters.snapshot();
        now.connections = self.state.borrow().connections;
        let before = self.reported_admission.replace(now);
        let redirected = now.redirected() - before.redirected();
        let refused = (now.refused_quota_exceeded + now.refused_server_unavailable)
            - (before.refused_quota_exceeded + before.refused_server_unavailable);
        if redirected + refused > 0 {
            tracing::info!(
                shard = self.id,
                redirected,
                refused,
                connections = now.connections,
                "clients redirected or refused since the last report (see /api/v5/status)"
            );
        }
    }

    /// Periodic work: due wills, expired offline sessions.
    /// Hands the allocator's free memory back to the system (see
    /// `ShardSettings::release_free_memory`) on the first tick after the
    /// number of connections changed, and at least every
    /// `FREE_MEMORY_RELEASE_INTERVAL`. Connecting and disconnecting clients
    /// is what frees memory in bulk (a connection's CONNECT phase allocates
    /// several times what it keeps); without this, 10,000 idle clients
    /// left about 550 bytes each of freed memory in the shard's RSS. The
    /// cost is a walk over the allocator's pages, not over connections.
    fn release_free_memory(&self, now: Instant) {
        let Some(release) = self.settings.release_free_memory else {
            return;
        };
        let connections = self.state.borrow().connections;
        if connections != self.released_at_connections.get() || now >= self.next_release.get() {
            release();
            self.released_at_connections.set(connections);
            self.next_release.set(now + FREE_MEMORY_RELEASE_INTERVAL);
        }
    }

    pub async fn tick(self: &Rc<Self>, now: Instant) {
        self.coarse_now.set(now);
        self.release_free_memory(now);
        if now >= self.next_drop_report.get() {
            self.next_drop_report.set(now + DROP_REPORT_INTERVAL);
            self.report_drops();
        }
        self.check_stalls(now);
        if now >= self.next_admission_report.get() {
            self.next_admission_report
                .set(now + ADMISSION_REPORT_INTERVAL);
            self.report_admission();
        }
        let due: Vec<(ByteStr, Arc<Message>)> = {
            let mut st = self.state.borrow_mut();
            let later = st.wills.split_off(&(now, u64::MAX));
            let due = std::mem::replace(&mut st.wills, later);
            due.into_values()
                .inspect(|(c, _)| {
                    st.will_index.remove(c);
                })
                .collect()
        };
        for (_, will) in due {
            self.publish(will).await;
        }
        let (expired, silent): (Vec<Session>, Vec<Rc<ConnHandle>>) = {
            let mut st = self.state.borrow_mut();
            // One pass over the sessions for both deadlines: offline
            // sessions whose expiry passed, and online clients silent for
            // 1.5 times their Keep Alive. Checking keepalive here, at most
            // `SHARD_TICK` late, instead of with a reactor timer per
            // connection saves every idle connection the timer's memory
            // (docs/performance.md, idle connections round 3).
            let mut silent = Vec::new();
            let ids: Vec<ClientKey> = st
                .slots
                .iter()
                .filter_map(|(id, s)| match s {
                    Slot::Offline(parked) if parked.expires_at.is_some_and(|t| t <= now) => {
                        Some(id.clone())
                    }
                    // A paused publisher's packets are not read: its
                    // silence is ours (`shard::pressure`).
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
                .filter_map(|id| match st.slots.remove(&id) {
                    Some(Slot::Offline(parked)) => Some(parked.session),
                    _ => None,
                })
                .collect();
            (expired, silent)
        };
        for h in silent {
            // DISCONNECT 0x8D (v5) and a close with the will, as if a timer
            // had fired in the connection's task; that task flushes and
            // closes.
            h.conn.borrow_mut().handle_timeout(now);
            self.drain_sync_actions(&h);
        }
        let clock = WallClock::now();
        for session in expired {
            self.with_lifecycle(|l| l.handle_expired(&session, &clock));
            tracing::debug!(shard = self.id, client_id = %session.client_id(), "session expired");
            self.end_session(session).await;
        }
        let mut st = self.state.borrow_mut();
        if !st.retained.is_empty() {
            st.retained
                .retain_matching(|m| m.expires_at.is_none_or(|t| t > now));
        }
    }

    // ---- messages from other shards ----------------------------------

    /// Messages handled without awaiting (see `dispatch`).
    pub fn on_message_sync(self: &Rc<Self>, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Interest { update, ack } => {
                let in_order = {
                    let st = &mut *self.state.borrow_mut();
                    st.router.apply_interest(from, &update.change);
                    st.interest_clock.applied_from(from, update.seq)
                };
                if !in_order {
                    // Two tasks of the sender raced for a full channel.
                    tracing::warn!(
                        shard = self.id,
                        from,
                        seq = update.seq,
                        "interest change out of order"
                    );
                }
                if let Some(token) = ack {
                    self.reply(from, token, Reply::Ack);
                }
            }
            ShardMsg::Barrier { token } => self.reply(from, token, Reply::Ack),
            ShardMsg::Reply { token, reply } => self.mesh.handle_reply(from, token, reply),
            ShardMsg::Mark(mark) => self.mesh.handle_mark(from, mark),
            ShardMsg::Publish(m) => self.deliver_local(&m, from),
            ShardMsg::Pause { client_id } => self.pause_here(&client_id),
            ShardMsg::Resume { client_id } => self.resume_here(&client_id, Instant::now()),
            ShardMsg::Retain { topic, message } => self.set_retained(&topic, message),
            ShardMsg::Claim { client_id, token } => self.on_claim(from, client_id, token),
            ShardMsg::ClaimDone { client_id } => self.on_claim_done(&client_id),
            ShardMsg::Release { client_id } => self.on_release(from, &client_id),
            other => {
                let me = self.clone();
                glommio::spawn_local(async move { me.on_message(from, other).await }).detach();
            }
        }
    }

    /// Messages whose handling may send to other shards.
    pub async fn on_message(self: &Rc<Self>, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Shared { message, key, hops } => {
                self.deliver_shared(message, key, hops, from).await
            }
            ShardMsg::Takeover {
                client_id,
                token,
                clean_start,
            } => self.on_takeover(from, client_id, token, clean_start).await,
            ShardMsg::TakeoverEnd { client_id, token } => {
                self.on_takeover_end(from, client_id, token).await
            }
            other => self.on_message_sync(from, other),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection pays these, rounded up to the allocator's size
    /// class (mimalloc: ..., 192, 224, 256, 320, ... bytes); a field that takes
    /// one past its class costs every connection the whole step
    /// (docs/performance.md, idle connections round 4).
    #[test]
    fn per_connection_state_fits_its_size_class() {
        // `Rc<ConnHandle>`: two counts, then the handle.
        let handle_allocation = 16 + std::mem::size_of::<ConnHandle>();
        assert!(
            handle_allocation <= 256,
            "ConnHandle allocation {handle_allocation} B"
        );
        // One `slots` bucket per entry and up to as many empty ones.
        assert_eq!(std::mem::size_of::<(ClientKey, Slot)>(), 24);
        assert_eq!(std::mem::size_of::<(ClientKey, Location)>(), 16);
    }
}
