//! Messages between shards. Everything here is `Send`: it is the only state
//! that crosses a shard boundary. Payloads travel as `Arc<Message>` holding
//! `Bytes`, so a fan-out to many shards copies no payload.

use crate::codec::ByteStr;
use crate::router::{Location, NumberedChange, SharedKey};
use crate::session::{Delivery, Message, Session};
use std::sync::Arc;

pub enum ShardMsg {
    /// The sender's subscriber count for a filter changed, with the
    /// change's number in the sender's sequence (`router::interest`); with
    /// `ack`, the sender waits for an `InterestAck` carrying that token.
    Interest {
        update: NumberedChange,
        ack: Option<u64>,
    },
    /// The answer to `Interest` with `ack`, and to `Barrier`.
    InterestAck { token: u64 },
    /// Answered with `InterestAck` once everything the receiver sent
    /// before is on its way: a SUBSCRIBE that changes no interest waits for
    /// it before reading the retained store.
    Barrier { token: u64 },
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
    /// id. Claims of one id are answered one at a time: the next only after
    /// the previous claimant's `ClaimDone`.
    Claim { client_id: ByteStr, token: u64 },
    /// From the home shard: the sender owns the id now; who owned it before.
    ClaimReply {
        token: u64,
        previous: Option<Location>,
    },
    /// To the home shard: the claimant's connection is in place (its session
    /// acquired and reachable); the next claim of the id may be answered.
    ClaimDone { client_id: ByteStr },
    /// To the previous owner: hand the session over to the sender.
    Takeover {
        client_id: ByteStr,
        token: u64,
        clean_start: bool,
    },
    /// The answer to `Takeover`. With a session, the sender keeps its
    /// subscriptions and collects what they deliver until `TakeoverEnd`.
    SessionMoved {
        token: u64,
        session: Option<Box<Session>>,
    },
    /// To the shard a session moved from: its subscriptions are in the
    /// sender's router and every shard knows; stop matching them and send
    /// what they delivered meanwhile.
    TakeoverEnd { client_id: ByteStr, token: u64 },
    /// The answer to `TakeoverEnd`: what the moved session's subscriptions
    /// delivered on the old shard after it was exported.
    TakeoverPendings {
        token: u64,
        deliveries: Vec<Delivery>,
    },
    /// To the home shard: the sender no longer holds a session for the id.
    Release { client_id: ByteStr },
    /// To a publisher's shard: a subscriber of the sender is congested by
    /// this client's messages; stop reading it until the matching `Resume`
    /// (`shard::pressure`).
    Pause { client_id: ByteStr },
    /// Undoes one `Pause` of the same client.
    Resume { client_id: ByteStr },
}
