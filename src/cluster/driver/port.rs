//! What crosses between the shards and the cluster driver: the requests a
//! shard sends ([`ToDriver`], one bounded channel per shard) and the
//! shard's end of it ([`ShardPort`]). The driver reaches a shard the other
//! way, through its inbox (`NodeHandle`).
//!
//! Plain `Send` data and tokio `sync` channels, which need no runtime: a
//! glommio shard sends and awaits on them as the driver's tokio thread does.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::ByteStr;
use crate::router::location::{Location, NodeId, ShardId};
use crate::router::{InterestChange, SharedKey};
use crate::session::snapshot::DeliverySnapshot;
use crate::session::Message;

/// A shard's request to the driver.
#[derive(Debug)]
pub enum ToDriver {
    /// Shard `shard`'s count for a filter (its `InterestChange`, in the
    /// order the shard numbered them). `done`: a SUBSCRIBE's SUBACK waits
    /// until the peers acknowledged this node's routes (the relay's
    /// release); `()` is sent then, or the sender dropped (no cluster).
    Interest {
        shard: ShardId,
        change: InterestChange,
        done: Option<oneshot::Sender<()>>,
    },
    /// A message published on shard `shard` for subscribers on `nodes`
    /// (`Route::nodes`). `done` (QoS 1/2): `true` once every node has it
    /// queued, `false` if one never will (down, link lost, timeout).
    /// `shared`: groups whose member was picked on another node, one
    /// forward each for one member there (`Forward::shared`).
    Forward {
        shard: ShardId,
        nodes: Vec<NodeId>,
        shared: Vec<(NodeId, SharedKey)>,
        message: Arc<Message>,
        done: Option<oneshot::Sender<bool>>,
    },
    /// A client of this node set (`Some`) or cleared (`None`) a retained
    /// message: every peer stores it too.
    Retain {
        topic: ByteStr,
        message: Option<Arc<Message>>,
    },
    /// The shard routed `from`'s data stream `stream` up to `seq` (its
    /// messages are queued on this node): the driver acknowledges it.
    Queued {
        from: NodeId,
        stream: ShardId,
        seq: u64,
    },
    /// A connect at `at` claims `client_id` cluster-wide, after its
    /// node-local claim (`driver::takeover`).
    Claim {
        client_id: String,
        at: Location,
        answer: oneshot::Sender<super::takeover::ClaimOutcome>,
    },
    /// A session imported from a peer has its subscriptions acknowledged
    /// cluster-wide; `held` gets what the previous owner held for it.
    Imported {
        client_id: String,
        held: oneshot::Sender<Vec<DeliverySnapshot>>,
    },
    /// The session of `client_id` at `at` ended here.
    SessionEnded { client_id: String, at: Location },
    /// Move the disconnected session of `client_id` to node `to`
    /// (`driver::session_push`); `moved` gets whether `to` has it now.
    PushSession {
        client_id: String,
        to: NodeId,
        moved: oneshot::Sender<bool>,
    },
}

/// A shard's end of the driver: its channel and the gate of the MQTT
/// listeners.
#[derive(Clone, Debug)]
pub struct ShardPort {
    pub tx: mpsc::Sender<ToDriver>,
    /// True once the node may accept MQTT clients (it has its peers'
    /// routes, or waited `CLUSTER_READY_WAIT_MAX_MS`).
    pub ready: watch::Receiver<bool>,
    /// True while a forwarding window of this shard's data stream is over
    /// its size: the shard's publishers wait before handing over another
    /// forward (back-pressure as for a congested local subscriber, ADR
    /// 0002), instead of the message being dropped.
    pub paused: watch::Receiver<bool>,
}

/// Every shard's port, in shard order; handed to `shard::run`.
#[derive(Clone, Debug)]
pub struct ClusterPorts {
    pub shards: Vec<ShardPort>,
}

impl ClusterPorts {
    pub fn port(&self, shard: ShardId) -> ShardPort {
        self.shards[usize::from(shard)].clone()
    }
}
