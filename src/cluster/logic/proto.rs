//! The cluster logic's frames: kinds 16-255 of the inter-node protocol.
//!
//! `net` reads a frame header (version, kind, flags, reserved, body length)
//! and hands a logic frame's body upwards untouched (`PeerFrame`); this
//! module turns bodies into [`Message`]s and back. A body is the rkyv 0.8
//! archive of one struct below, chosen by the kind byte and versioned by
//! the header's version byte ([`PROTO_VERSION`]: a reader never guesses at
//! a version it does not know). Decoding checks the length against
//! `limits::CLUSTER_LOGIC_BODY_MAX_BYTES`, copies the body into an aligned
//! buffer if it is not aligned already and validates the archive with
//! bytecheck (`rkyv::access`) before a field is read, so garbage or a
//! truncated body is an `Err`, never a panic.
//!
//! Node ids and locations are carried as plain integers ([`WireLocation`])
//! so `router::location` stays free of serialisation concerns.

use bytes::Bytes;

use crate::limits::CLUSTER_LOGIC_BODY_MAX_BYTES;
use crate::router::location::{Location, NodeId};
use crate::session::snapshot::{DeliverySnapshot, MessageSnapshot};

#[path = "proto_clients.rs"]
mod clients;
pub use clients::{ClientsAnswer, ClientsQuery, ClientsQuestion, ClientsReply, WireClient};

#[path = "proto_rebalance.rs"]
mod rebalance;
pub use rebalance::{RebalanceAnswer, RebalanceRequest};

/// The body format version this build writes and the only one it reads.
/// 2: a held delivery (`HeldMessage`) and a retained copy (`RetainedSync`)
/// carry their message's cluster-wide id.
pub const PROTO_VERSION: u8 = 2;

/// The first kind that belongs to the logic (0-15 are `net`'s).
pub const KIND_FIRST_LOGIC: u8 = 16;

/// `Location` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WireLocation {
    pub node: u32,
    pub shard: u16,
}

impl From<Location> for WireLocation {
    fn from(l: Location) -> WireLocation {
        WireLocation {
            node: l.node.0,
            shard: l.shard,
        }
    }
}

impl From<WireLocation> for Location {
    fn from(l: WireLocation) -> Location {
        Location::new(NodeId(l.node), l.shard)
    }
}

/// One node-level route: a filter some of the node's subscribers hold.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RouteEntry {
    pub filter: String,
    /// The shared group, `None` for an ordinary filter.
    pub group: Option<String>,
    /// Ordinary: 1 (some) or 0 (none left); shared: the node's member count.
    pub members: u32,
}

/// A change of the origin node's routes, numbered in its own sequence.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RouteChange {
    /// The origin's boot epoch: a restarted node numbers from 1 again.
    pub epoch: u64,
    pub seq: u64,
    pub entry: RouteEntry,
}

/// "Every change of yours up to `seq` is applied on all my shards".
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RouteAck {
    pub epoch: u64,
    pub seq: u64,
}

/// "Send me all your routes": a gap in the numbers or an unknown epoch.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RouteSnapshotRequest {
    /// The epoch and number the requester had applied (for the log).
    pub known_epoch: u64,
    pub applied_seq: u64,
}

/// One part of the origin's full route table, as of change `seq`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RouteSnapshot {
    pub epoch: u64,
    pub seq: u64,
    pub entries: Vec<RouteEntry>,
    /// The last part: the receiver replaces the origin's routes with all
    /// parts at once.
    pub last: bool,
}

/// Identifies a message cluster-wide (an `Arc` does not cross nodes):
/// the node and shard where it was published, and that shard's number
/// (`session::message_id`).
pub use crate::session::MessageId;

/// A shared group a forwarded message is for (one member of it).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SharedTarget {
    pub group: String,
    pub filter: String,
}

/// A PUBLISH forwarded to a node with matching subscribers, on the data
/// stream of the publisher's shard.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Forward {
    pub id: MessageId,
    /// Number in this data stream (cumulative acknowledgements).
    pub stream_seq: u64,
    /// Topic, payload, QoS, retain and the MQTT 5 properties.
    pub message: MessageSnapshot,
    /// `Some`: for one member of this group on the receiving node only.
    pub shared: Option<SharedTarget>,
}

/// Consecutive messages of one data stream in one frame: the sender packs
/// what waits in its window (at most `FORWARD_BATCH_MESSAGES_MAX` messages
/// and about `FORWARD_BATCH_BYTES_MAX` bytes), so a frame, a stream write,
/// a QUIC packet and a wake-up carry many messages under load and one at
/// a time when idle. The receiver checks the count and that every
/// `stream_seq` follows the previous one before it delivers any. Senders
/// now write the same batches as forward records (`super::records`, kind
/// 35, no per-message archive); this kind is still read.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ForwardBatch {
    /// The sender's window these numbers belong to.
    pub window: WindowId,
    pub forwards: Vec<Forward>,
}

/// One life of a sender's forwarding window towards one peer: the
/// sender's boot epoch and how many windows it opened towards peers
/// before. A window keeps its numbering across a replaced link (what was
/// unacknowledged is sent again, and repeats are dropped by number); a new
/// window (the peer was declared down, or the sender restarted) numbers
/// from 1, and the receiver starts afresh when it sees a newer one.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct WindowId {
    pub epoch: u64,
    pub opened: u32,
}

/// "Every message of data stream `shard` up to `up_to` is queued here".
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ForwardAck {
    /// The window acknowledged: an acknowledgement of an older one (late,
    /// from a replaced link) must not acknowledge the new numbering.
    pub window: WindowId,
    pub shard: u16,
    pub up_to: u64,
}

/// Orders claims of one client id across partitions: the newer wins.
/// `claimed_at_ms` is the home's wall clock (kept monotonic per home), so
/// claims from different homes compare by time; ties by home and counter.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ClaimEpoch {
    pub claimed_at_ms: u64,
    pub home: u32,
    pub counter: u64,
}

/// A connect asks the client id's home for the right to own the session.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Claim {
    pub client_id: String,
    pub claimant: WireLocation,
    /// The claimant's number for this request (matches the answer).
    pub request: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimAnswer {
    pub client_id: String,
    pub request: u64,
    /// `None` when refused (too many concurrent claims of this id).
    pub epoch: Option<ClaimEpoch>,
    /// Who owned the session before, if anyone known and running.
    pub previous: Option<WireLocation>,
}

/// The claimant finished (imported or started fresh): the home records it
/// as the owner and serves the next claim of the id.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimDone {
    pub client_id: String,
    pub epoch: ClaimEpoch,
    pub owner: WireLocation,
}

/// New owner -> previous owner: kick the connection (DISCONNECT 0x8E),
/// export the session, keep matching and hold deliveries.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TakeoverKick {
    pub client_id: String,
    pub epoch: ClaimEpoch,
    pub new_owner: WireLocation,
}

/// Previous owner -> new owner: the session (`SessionSnapshot::encode`
/// bytes), or `None` if it had none.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TakeoverExport {
    pub client_id: String,
    pub epoch: ClaimEpoch,
    pub snapshot: Option<Bytes>,
}

/// New owner -> previous owner: my routes are acknowledged; hand over what
/// you held.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeldRequest {
    pub client_id: String,
    pub epoch: ClaimEpoch,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeldMessage {
    /// The held order on the previous owner (the new owner sorts by it),
    /// not the message's id, which is `delivery.id`.
    pub id: MessageId,
    pub delivery: DeliverySnapshot,
}

/// Previous owner -> new owner: held deliveries, in matching order; the
/// frame with `last` ends the takeover on both sides.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeldDeliveries {
    pub client_id: String,
    pub epoch: ClaimEpoch,
    pub messages: Vec<HeldMessage>,
    pub last: bool,
}

/// Owner -> home after membership changed: "I own this id since `epoch`"
/// (homes moved, or a partition healed).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OwnerReport {
    pub client_id: String,
    pub owner: WireLocation,
    pub epoch: ClaimEpoch,
}

/// Owner -> home: the session it owned since `epoch` ended (expired, or a
/// clean start ended): the home forgets the id, so its table holds only
/// live sessions.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OwnerEnded {
    pub client_id: String,
    pub owner: WireLocation,
    pub epoch: ClaimEpoch,
}

/// Home -> an owner that lost to a newer epoch: kick (0x8E) and drop.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Evict {
    pub client_id: String,
    pub epoch: ClaimEpoch,
}

/// A node moving its disconnected sessions away (evacuation, rebalance)
/// -> the target: adopt `client_id`'s session. The target claims the id at
/// its home like a connect would, which kicks the sender to export it
/// (`cluster::driver::session_push`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionPush {
    pub client_id: String,
    /// The sender's number for this push, echoed in the answer.
    pub request: u64,
}

/// Target -> sender of a [`SessionPush`]: the move ended; `moved` when the
/// target holds the session now (offline, subscribed, owner at the home).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionPushDone {
    pub client_id: String,
    pub request: u64,
    pub moved: bool,
}

/// A retained message set (`Some`) or cleared (`None`) on the origin.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RetainedSync {
    pub topic: String,
    pub message: Option<MessageSnapshot>,
    /// The retained message's cluster-wide id (its publisher's), which
    /// `MessageSnapshot` does not carry.
    pub id: Option<MessageId>,
}

/// A node's load, for the `least_connections` redirect strategy.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LoadFigures {
    pub connections: u64,
    pub connections_max: u64,
    /// The sender's ringmq release (`/api/v5/nodes`' `version`).
    pub version: String,
}

/// Why a body was refused. A peer's fault: the link is closed with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame version {found} is not supported: this ringmq reads version {supported}")]
    UnknownVersion { found: u8, supported: u8 },
    #[error("frame kind {0} is not a cluster logic kind known to this version")]
    UnknownKind(u8),
    #[error(
        "frame body of {len} bytes is over the limit of {max} bytes \
         (limits::CLUSTER_LOGIC_BODY_MAX_BYTES)"
    )]
    TooLarge { len: usize, max: usize },
    #[error("frame body of kind {kind} is not a valid archive: {reason}")]
    Malformed { kind: u8, reason: String },
}

macro_rules! messages {
    ($($variant:ident = $kind:literal,)*) => {
        /// Every logic frame, one variant per kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $($variant($variant),)*
        }

        /// Kind numbers (the frame header's kind byte).
        pub mod kind {
            $(#[allow(non_upper_case_globals)] pub const $variant: u8 = $kind;)*
        }

        impl Message {
            pub fn kind(&self) -> u8 {
                match self {
                    $(Message::$variant(_) => $kind,)*
                }
            }

            /// The body bytes (the header is `net`'s).
            pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
                let archived = match self {
                    $(Message::$variant(m) => rkyv::to_bytes::<rkyv::rancor::Error>(m),)*
                }
                .map_err(|e| ProtoError::Malformed { kind: self.kind(), reason: e.to_string() })?;
                if archived.len() > CLUSTER_LOGIC_BODY_MAX_BYTES {
                    return Err(ProtoError::TooLarge {
                        len: archived.len(),
                        max: CLUSTER_LOGIC_BODY_MAX_BYTES,
                    });
                }
                Ok(archived.into_vec())
            }

            /// Reads a body of `kind` under header version `version`.
            pub fn decode(version: u8, kind: u8, body: &[u8]) -> Result<Message, ProtoError> {
                if version != PROTO_VERSION {
                    return Err(ProtoError::UnknownVersion { found: version, supported: PROTO_VERSION });
                }
                if body.len() > CLUSTER_LOGIC_BODY_MAX_BYTES {
                    return Err(ProtoError::TooLarge { len: body.len(), max: CLUSTER_LOGIC_BODY_MAX_BYTES });
                }
                // A body read from a stream is most often aligned already
                // (the allocator's 16 bytes): copied only when it is not.
                let copy;
                let aligned: &[u8] = if body.as_ptr().align_offset(16) == 0 {
                    body
                } else {
                    let mut v = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
                    v.extend_from_slice(body);
                    copy = v;
                    &copy
                };
                let bad = |e: rkyv::rancor::Error| ProtoError::Malformed { kind, reason: e.to_string() };
                match kind {
                    $($kind => {
                        let archived = rkyv::access::<rkyv::Archived<$variant>, rkyv::rancor::Error>(aligned)
                            .map_err(bad)?;
                        let value = rkyv::deserialize::<$variant, rkyv::rancor::Error>(archived).map_err(bad)?;
                        Ok(Message::$variant(value))
                    })*
                    other => Err(ProtoError::UnknownKind(other)),
                }
            }
        }
    };
}

messages! {
    RouteChange = 16,
    RouteAck = 17,
    RouteSnapshotRequest = 18,
    RouteSnapshot = 19,
    Forward = 20,
    ForwardAck = 21,
    Claim = 22,
    ClaimAnswer = 23,
    ClaimDone = 24,
    TakeoverKick = 25,
    TakeoverExport = 26,
    HeldRequest = 27,
    HeldDeliveries = 28,
    OwnerReport = 29,
    Evict = 30,
    RetainedSync = 31,
    LoadFigures = 32,
    ForwardBatch = 33,
    OwnerEnded = 34,
    // 35: forward records, the batch frame senders write now: not an rkyv
    // archive (logic/records.rs, `KIND_FORWARD_RECORDS`).
    // The cluster-wide clients API (proto_clients.rs); numbered apart from
    // the kinds above so others can be added next to them.
    ClientsQuery = 40,
    ClientsAnswer = 41,
    // Cross-node evacuation and rebalance commands (proto_rebalance.rs).
    RebalanceRequest = 44,
    RebalanceAnswer = 45,
    // Disconnected sessions pushed to another node (44..=47: rebalance).
    SessionPush = 48,
    SessionPushDone = 49,
}

#[cfg(test)]
#[path = "proto_tests.rs"]
mod tests;
