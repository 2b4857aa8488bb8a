//! Durable sessions (issue 15, docs/adr/0007-durable-sessions.md): what a
//! shard writes about its persistent sessions and retained messages
//! ([`Op`]), the records they are stored as, and how a store tells the
//! shard what is synced ([`Synced`]). The backends (`builtin`: one store
//! per shard on a writer thread, fjall or an append-only `log`; `redis`: a Redis Cluster on a tokio
//! thread) take batches of ops and never run on a shard.

pub mod builtin;
pub mod drain;
pub mod handle;
pub mod log;
pub mod op;
pub mod record;
pub mod redis;
pub mod start;
pub mod synced;

pub use handle::StoreHandle;
pub use op::{
    Batch, DeliveryRecord, DeliveryState, Op, Restored, SessionMeta, StoredSession, Ticket,
};
pub use synced::Synced;
