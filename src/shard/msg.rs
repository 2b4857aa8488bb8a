//! Messages between shards. Everything here is `Send`: it is the only state
//! that crosses a shard boundary. Payloads travel as `Arc<Message>` holding
//! `Bytes`, so a fan-out to many shards copies no payload.

use crate::codec::ByteStr;
use crate::router::{Location, NumberedChange, SharedKey};
use crate::session::{Delivery, Message, SessionSnapshot};
use std::sync::Arc;

pub enum ShardMsg {
    /// The sender's subscriber count for a filter changed, with the
    /// change's number in the sender's sequence (`router::interest`); with
    /// `ack`, the sender's call (that token) waits for `Reply::Ack`.
    Interest {
        update: NumberedChange,
        ack: Option<u64>,
    },
    /// Answered with `Reply::Ack` once everything the receiver sent
    /// before is on its way: a SUBSCRIBE that changes no interest waits for
    /// it before reading the retained store.
    Barrier { token: u64 },
    /// Answered with `Reply::Ack` once this shard's durable store has
    /// synced everything the receiver noted so far, including the
    /// deliveries of the `Publish`es the sender sent before: a publisher's
    /// PUBACK/PUBREC waits for it with `durable_sessions.sync = "always"`
    /// (`shard::durable`).
    DurableSynced { token: u64 },
    /// Deliver to this shard's ordinary subscribers matching the topic.
    Publish(Arc<Message>),
    /// Deliver to one local member of a shared group.
    Shared {
        message: Arc<Message>,
        key: SharedKey,
        hops: u8,
    },
    /// Replicated retained store: set (Some) or clear (None).
    Retain {
        topic: ByteStr,
        message: Option<Arc<Message>>,
    },
    /// To the client id's home shard: the sender wants to own this client
    /// id; answered with `Reply::Claimed`. Claims of one id are answered
    /// one at a time: the next only after the previous claimant's
    /// `ClaimDone`.
    Claim { client_id: ByteStr, token: u64 },
    /// To the home shard: the claimant's connection is in place (its session
    /// acquired and reachable); the next claim of the id may be answered.
    ClaimDone { client_id: ByteStr },
    /// To the previous owner: hand the session over to the sender
    /// (`Reply::Session`). With a session, the sender keeps its
    /// subscriptions and collects what they deliver until `TakeoverEnd`.
    Takeover {
        client_id: ByteStr,
        token: u64,
        clean_start: bool,
    },
    /// To the shard a session moved from: its subscriptions are in the
    /// sender's router and every shard knows; stop matching them and send
    /// what they delivered meanwhile (`Reply::Pendings`).
    TakeoverEnd { client_id: ByteStr, token: u64 },
    /// To the home shard: the sender no longer holds a session for the id.
    Release { client_id: ByteStr },
    /// To a publisher's shard: a subscriber of the sender is congested by
    /// this client's messages; stop reading it until the matching `Resume`
    /// (`shard::pressure`).
    Pause { client_id: ByteStr },
    /// Undoes one `Pause` of the same client.
    Resume { client_id: ByteStr },
    /// The answer to the sender's call with this token (`mesh.rs`).
    Reply { token: u64, reply: Reply },
    /// The sender finished a step of its stop (`Mark::WillsPublished`) or
    /// stops (`Mark::Stop`: its last message; the receiver's loop for the
    /// sender ends here). Everything the sender sent before it has been
    /// handled when the receiver counts it.
    Mark(Mark),
}

/// Steps of a node's stop that every shard waits for from every other
/// (`Mesh::mark`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The sender published the wills of all its clients.
    WillsPublished = 0,
    /// The sender sends nothing more.
    Stop = 1,
}

impl Mark {
    pub const COUNT: usize = 2;
}

/// Answers to calls between shards, by the request they answer.
pub enum Reply {
    /// `Interest` with `ack`, `Barrier`, `DurableSynced`: handled.
    Ack,
    /// `Claim`: the sender owns the id now; who owned it before.
    Claimed { previous: Option<Location> },
    /// `Takeover`: the session, if there was one.
    Session(Option<Box<SessionSnapshot>>),
    /// `TakeoverEnd`: what the moved session's subscriptions delivered on
    /// the old shard after it was exported.
    Pendings(Vec<Delivery>),
}
