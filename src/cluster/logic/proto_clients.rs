//! The frames of the cluster-wide clients API (`GET|DELETE
//! /api/v5/clients[/{clientid}]` answered for every node): a node's admin
//! API asks each running peer over the control stream ([`ClientsQuery`])
//! and each peer answers from its own shards ([`ClientsAnswer`]). Kinds
//! and versioning are `proto`'s; a listing answer carries at most
//! `limits::CLUSTER_CLIENTS_ANSWER_MAX` entries (the asker pages).

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
pub struct ClientsQuery {
    /// The asker's number for this question (matches the answer).
    pub request: u64,
    pub question: ClientsQuestion,
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
pub struct ClientsAnswer {
    pub request: u64,
    pub reply: ClientsReply,
}
