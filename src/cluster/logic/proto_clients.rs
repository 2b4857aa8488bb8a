//! The frames of the cluster-wide clients API (`GET|DELETE
//! /api/v5/clients[/{clientid}]` answered for every node): a node's admin
//! API asks each running peer over the control stream ([`ClientsQuery`])
//! and each peer answers from its own shards ([`ClientsAnswer`]). Kinds
//! and versioning are `proto`'s; a listing answer carries at most
//! `limits::CLUSTER_CLIENTS_ANSWER_MAX` entries (the asker pages).
//!
//! Both roots end with [`CLIENTS_MAGIC`], checked on decode: their other
//! fields are small integers and tags, so the last bytes of a truncated
//! body (an rkyv root is at the end) could otherwise read as a valid one.

use rkyv::bytecheck::Verify;
use rkyv::rancor::{Fallible, Source};

/// The last field of every clients frame ("RCLQ").
pub const CLIENTS_MAGIC: u32 = 0x5243_4c51;

/// What is asked of a peer's clients.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ClientsQuestion {
    /// How many sessions (connected or offline) the node holds.
    Count,
    /// Sessions `skip .. skip + take` of the node's listing (its shards in
    /// order); `take` at most `CLUSTER_CLIENTS_ANSWER_MAX`.
    List { skip: u64, take: u64 },
    /// One client's record, if its session is on the node.
    Get { client_id: String },
    /// Kick the client (DISCONNECT 0x98) and discard its session.
    Kick { client_id: String },
}

/// Asker -> peer.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(bytecheck(verify))]
pub struct ClientsQuery {
    /// The asker's number for this question (matches the answer).
    pub request: u64,
    pub question: ClientsQuestion,
    /// `CLIENTS_MAGIC`.
    pub magic: u32,
}

impl ClientsQuery {
    pub fn new(request: u64, question: ClientsQuestion) -> ClientsQuery {
        ClientsQuery {
            request,
            question,
            magic: CLIENTS_MAGIC,
        }
    }
}

/// One session as a peer describes it (`metrics::ClientInfo` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WireClient {
    pub client_id: String,
    pub shard: u16,
    pub connected: bool,
    pub username: Option<String>,
    pub proto_ver: u8,
    /// The client's address, `ip:port`.
    pub peer: Option<String>,
    pub keepalive_s: u16,
    pub clean_start: Option<bool>,
    pub expiry_interval_s: u32,
    pub subscriptions: u64,
    pub mqueue_len: u64,
    pub mqueue_max: u64,
    pub mqueue_dropped: u64,
    pub inflight_cnt: u64,
    pub connected_at_ms: Option<u64>,
    pub disconnected_at_ms: Option<u64>,
}

/// A peer's answer, variant for variant of the question.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ClientsReply {
    Count(u64),
    Clients(Vec<WireClient>),
    Client(Option<WireClient>),
    Kicked(bool),
    /// The peer's shards could not answer (busy, stopping).
    Unavailable(String),
}

/// Peer -> asker.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(bytecheck(verify))]
pub struct ClientsAnswer {
    pub request: u64,
    pub reply: ClientsReply,
    /// `CLIENTS_MAGIC`.
    pub magic: u32,
}

impl ClientsAnswer {
    pub fn new(request: u64, reply: ClientsReply) -> ClientsAnswer {
        ClientsAnswer {
            request,
            reply,
            magic: CLIENTS_MAGIC,
        }
    }
}

/// A clients frame whose last field is not `CLIENTS_MAGIC`.
#[derive(Debug)]
struct BadMagic(u32);

impl std::fmt::Display for BadMagic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "clients frame ends with {:#x}, not {CLIENTS_MAGIC:#x}",
            self.0
        )
    }
}

impl std::error::Error for BadMagic {}

fn check_magic<E: Source>(magic: u32) -> Result<(), E> {
    if magic == CLIENTS_MAGIC {
        Ok(())
    } else {
        Err(E::new(BadMagic(magic)))
    }
}

// SAFETY: `verify` only reads a field that bytecheck already checked.
unsafe impl<C> Verify<C> for ArchivedClientsQuery
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _: &mut C) -> Result<(), C::Error> {
        check_magic(self.magic.to_native())
    }
}

// SAFETY: as above.
unsafe impl<C> Verify<C> for ArchivedClientsAnswer
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _: &mut C) -> Result<(), C::Error> {
        check_magic(self.magic.to_native())
    }
}
