//! One shard: the parts it is composed of and the handlers for messages
//! from other shards. Only this shard's tasks touch it, through `Rc<Shard>`.
//!
//! Each part keeps its fields private to its module and is reached by
//! methods named for what they do (docs/adr/0005-shard-parts.md):
//!
//! - `sessions: Sessions` (`sessions.rs`): the slots (online, parked,
//!   moving sessions), takeovers waiting for a connection's end, the
//!   client-id registry of the ids homed here, the connection count.
//! - `routes: Routes` (`routes.rs`): the router, the retained store, the
//!   no-recipient count, the deliveries' clock. The path of a PUBLISH
//!   through them is `publish.rs`; a connection's actions, `actions.rs`.
//! - `interest: Interest` (`interest.rs`): numbering of interest changes.
//! - `timers: Timers` (`timers.rs`): delayed wills, the tick's cadences.
//! - `pressure: Pressure` (`pressure.rs`): congested subscribers.
//! - `scratch: Scratch` (`scratch.rs`): the shared read and write buffers.
//! - `mesh: Mesh` (`mesh.rs`): sends, calls and the stop between shards.
//! - `lifecycle` (`lifecycle.rs`): session transitions and their events.
//!
//! No part calls another, and no part's borrow outlives its method (or,
//! for `Sessions::view`/`resolver`, the closure or guard the caller holds
//! without awaiting): the shard's methods compose them, so a delivery that
//! runs connection code never finds a part still borrowed.

use super::cluster::Cluster;
use super::interest::Interest;
use super::io::Signal;
use super::mesh::Mesh;
use super::msg::{Reply, ShardMsg};
use super::pressure::Pressure;
use super::routes::Routes;
use super::scratch::Scratch;
use super::sessions::Sessions;
use super::timers::Timers;
use crate::admission::{NodeAdmission, ShardCounters};
use crate::metrics::ShardMetrics;
use crate::router::{InterestMarks, Location, NodeId};
use crate::session::{Connection, Lifecycle, MessageIds, SessionConfig, WallClock};
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

pub type ShardId = u16;

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
    /// `mqtt.shared_subscription_strategy`: how shared groups pick.
    pub shared_strategy: crate::router::SharedStrategy,
    /// Gives the memory the allocator holds free back to the system, if
    /// the allocator needs telling (`main` sets it for mimalloc, which
    /// returns freed pages only on a later allocation, after a delay: a
    /// shard whose clients went idle never makes that allocation). Called
    /// by the tick, see `Shard::release_free_memory`.
    pub release_free_memory: Option<fn()>,
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

pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    pub settings: ShardSettings,
    /// Sends, calls and the stop protocol between shards (`mesh.rs`).
    pub mesh: Mesh,
    /// Where each session of this shard is, and the registry (`sessions.rs`).
    pub(super) sessions: Sessions,
    /// Router, retained store and delivery counters (`routes.rs`).
    pub(super) routes: Routes,
    /// Numbering of this shard's interest changes (`interest.rs`).
    pub(super) interest: Interest,
    /// Delayed wills and the tick's cadences (`timers.rs`).
    pub(super) timers: Timers,
    /// Congested subscribers and the publishers they paused (`pressure.rs`).
    pub(super) pressure: Pressure,
    /// The read and write buffers every connection shares (`scratch.rs`).
    pub scratch: Scratch,
    /// The transitions of this shard's sessions and their events
    /// (`session::lifecycle`, `shard/lifecycle.rs`).
    pub lifecycle: RefCell<Lifecycle>,
    /// Deterministic hash of client ids to home shards: the same on every shard.
    hasher: ahash::RandomState,
    pub shutdown: Arc<AtomicBool>,
    /// Node-wide admission state (live redirection config, connection
    /// count, round-robin cursor), shared lock-free with every shard and the
    /// admin thread.
    pub admission: Arc<NodeAdmission>,
    /// This shard's admission counters; other threads read them by asking
    /// the shard (`service::ShardContext::status`).
    pub counters: ShardCounters,
    /// Traffic counters, plain `Cell`s (read by `Shard::stats`).
    pub metrics: ShardMetrics,
    /// Raised when the last connection ends (`stop.rs`).
    pub(super) no_connections: Signal,
    /// This shard's end of the cluster driver (`cluster.rs`); `None` on a
    /// single node.
    pub(super) cluster: Option<Cluster>,
    /// The durable store of this shard's persistent sessions and owned
    /// retained topics (`durable.rs`); off until a store is attached.
    pub durable: super::durable::Durable,
    /// Gives each message this shard routes first its cluster-wide id
    /// (`publish.rs`, `session::message_id`).
    pub(super) message_ids: MessageIds,
}

impl Shard {
    // One argument per thing a shard is given at its start (shard_main).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ShardId,
        count: u16,
        settings: ShardSettings,
        senders: Senders<ShardMsg>,
        shutdown: Arc<AtomicBool>,
        interest_marks: Arc<InterestMarks>,
        admission: Arc<NodeAdmission>,
        cluster: Option<crate::cluster::driver::ShardPort>,
    ) -> Shard {
        let now = Instant::now();
        let settings_node = settings.node;
        Shard {
            id,
            count,
            sessions: Sessions::new(Location::new(settings.node, id)),
            routes: Routes::new(
                Location::new(settings.node, id),
                count,
                settings.retained_max_messages,
                settings.shared_strategy,
            ),
            interest: Interest::new(id, count, interest_marks),
            timers: Timers::new(now),
            pressure: Pressure::default(),
            scratch: Scratch::default(),
            lifecycle: RefCell::new(Lifecycle::new()),
            settings,
            mesh: Mesh::new(id, count, senders),
            hasher: ahash::RandomState::with_seeds(0x5151, 0x7272, 0x9393, 0xb4b4),
            shutdown,
            admission,
            counters: ShardCounters::default(),
            metrics: ShardMetrics::default(),
            no_connections: Signal::default(),
            cluster: cluster.map(Cluster::new),
            durable: super::durable::Durable::default(),
            message_ids: MessageIds::new(settings_node.0, id, WallClock::now().unix_ms),
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

    pub fn home_of(&self, client_id: &str) -> ShardId {
        (self.hasher.hash_one(client_id) % self.count as u64) as ShardId
    }

    // ---- messages from other shards ----------------------------------

    /// Messages handled without awaiting (see `dispatch`).
    pub fn on_message_sync(self: &Rc<Self>, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Interest { update, ack } => {
                self.routes.apply_interest(from, &update.change);
                let in_order = self.interest.applied_from(from, update.seq);
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
            ShardMsg::Retain { topic, message } => {
                self.durable_retained(&topic, message.as_deref());
                self.routes.set_retained(&topic, message)
            }
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
            ShardMsg::DurableSynced { token } => {
                if let Some(ticket) = self.durable.ack_ticket() {
                    self.durable.wait_synced(ticket).await;
                }
                self.reply(from, token, Reply::Ack);
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
    use crate::shard::client_key::ClientKey;
    use crate::shard::sessions::Slot;

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
#[cfg(test)]
mod size_probe {
    #[test]
    fn print_sizes() {
        eprintln!(
            "SIZES ConnHandle={} Session={} Connection={}",
            std::mem::size_of::<super::ConnHandle>(),
            std::mem::size_of::<crate::session::Session>(),
            std::mem::size_of::<crate::session::Connection>()
        );
    }
}
