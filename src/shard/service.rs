//! What a request from another thread may see of a shard
//! ([`ShardContext`]) and the answers it gets back, all plain `Send` data.
//!
//! A request (`NodeHandle::call`) runs on the shard's own thread with a
//! `&ShardContext`: it reads the shard's state where it lives, with no lock
//! and no atomic. The context's methods are the whole interface: the
//! shard's fields stay private to `src/shard`. Add a method here (and its
//! answer type) for each new question the admin API, the cluster or the
//! store asks.

use super::sessions::Slot;
use super::state::{Shard, ShardId};
use crate::admission::ShardCountersSnapshot;
use std::future::Future;
use std::rc::Rc;

/// A shard, as a request running on it sees it. `!Send`: it exists only on
/// its shard's thread, inside a request.
#[derive(Clone)]
pub struct ShardContext {
    shard: Rc<Shard>,
}

/// One shard's counts for `/api/v5/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStatus {
    pub id: ShardId,
    /// MQTT connections past CONNECT on this shard.
    pub connections: usize,
    /// Sessions held here: online, offline, or moving between shards.
    pub sessions: usize,
    /// Retained messages in this shard's copy of the store.
    pub retained_messages: usize,
    /// Admission outcomes of the CONNECTs this shard decided.
    pub admission: ShardCountersSnapshot,
}

impl ShardContext {
    pub(super) fn new(shard: Rc<Shard>) -> ShardContext {
        ShardContext { shard }
    }

    /// The shard itself, for the requests written in other `shard` files.
    pub(super) fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    pub fn id(&self) -> ShardId {
        self.shard.id
    }

    /// Runs `work` as a task of this shard (for `NodeHandle::call_async`).
    pub(super) fn spawn(&self, work: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(work).detach();
    }

    pub fn status(&self) -> ShardStatus {
        let shard = &self.shard;
        let connections = shard.sessions.connections();
        let mut admission = shard.counters.snapshot();
        admission.connections = connections;
        ShardStatus {
            id: shard.id,
            connections,
            sessions: shard.sessions.len(),
            retained_messages: shard.routes.retained_len(),
            admission,
        }
    }

    /// Connections and sessions held here (`src/rebalance`).
    pub fn held_counts(&self) -> super::evict::HeldCounts {
        self.shard.held_counts()
    }

    /// Disconnects up to `count` clients with `reason` and, for MQTT 5, a
    /// Server Reference naming `references` (rotated per client from
    /// `rotation`); their sessions stay (`src/rebalance`).
    pub fn evict_connections(
        &self,
        count: u64,
        reason: crate::codec::ReasonCode,
        references: &[String],
        rotation: usize,
    ) -> u64 {
        self.shard
            .evict_connections(count, reason, references, rotation)
    }

    /// Answers a question of the admin API's client management and
    /// metrics routes (`shard::inspect`).
    pub fn answer_admin(&self, query: super::AdminQuery) -> super::AdminAnswer {
        self.shard.answer_admin(query)
    }

    /// A peer node's route change (the cluster driver, for every shard).
    pub fn apply_remote_interest(
        &self,
        node: crate::router::NodeId,
        change: &crate::router::InterestChange,
    ) {
        self.shard.routes.apply_remote_interest(node, change);
    }

    /// Forgets a peer node's routes (it is down, or they are replaced).
    pub fn forget_node(&self, node: crate::router::NodeId) {
        self.shard.routes.forget_node(node);
    }

    /// A peer's forwarded message, to route on this node only, after the
    /// earlier ones (the driver posts them in their data stream's order);
    /// `shared`: for one member of that group on this node only.
    pub fn deliver_forwarded(
        &self,
        from: crate::router::NodeId,
        stream: ShardId,
        seq: u64,
        message: std::sync::Arc<crate::session::Message>,
        shared: Option<crate::router::SharedKey>,
    ) {
        self.shard
            .receive_forwarded(from, stream, seq, message, shared);
    }

    /// A retained message another node set (`Some`) or cleared (`None`).
    pub fn set_retained(
        &self,
        topic: &crate::codec::ByteStr,
        message: Option<std::sync::Arc<crate::session::Message>>,
    ) {
        self.shard.durable_retained(topic, message.as_deref());
        self.shard.routes.set_retained(topic, message);
    }

    /// This shard's copy of the retained store (every shard holds all of
    /// it), for a node that joins.
    pub fn retained_all(
        &self,
    ) -> Vec<(
        crate::codec::ByteStr,
        std::sync::Arc<crate::session::Message>,
    )> {
        self.shard.routes.retained_all()
    }

    /// Client ids of the sessions held here whose client is online.
    pub fn online_client_ids(&self) -> Vec<String> {
        self.shard.sessions.view(|slots| {
            slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Online(_)))
                .map(|(id, _)| id.as_str().to_string())
                .collect()
        })
    }
}
