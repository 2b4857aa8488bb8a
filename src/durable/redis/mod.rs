//! The Redis backend of durable sessions (`durable.backend = "redis"`,
//! ADR 0007, docs/durability.md, "The Redis backend"): a Redis Cluster (or one Redis)
//! shared by the nodes of a ringmq cluster or by independent nodes.
//!
//! One OS thread, `ringmq-redis`, runs a current-thread tokio runtime with
//! the `redis` client (the client needs tokio; shards never touch it).
//! Each shard's [`StoreHandle`] sends [`Batch`]es to a task of that thread,
//! which applies each waiting group of batches as one Lua script per
//! client on the client's slot, all pipelined, and publishes the group's
//! last ticket in the shard's [`Synced`] once Redis acknowledged every
//! write of it (and, with `replica_acks`, once each master's replicas
//! did). Loads ([`RedisHandle::load_session`], [`RedisHandle::load_node`])
//! are requests to the same thread, answered through a oneshot channel.
//!
//! Modules: [`keys`] the key layout, [`record`] the record bytes,
//! [`script`] the Lua scripts and the planning of a group (sans-IO),
//! [`writer`] the write path, [`load`] the read paths, [`conn`] the
//! connection, [`counters`] what it did.

pub mod conn;
pub mod counters;
pub mod keys;
pub mod load;
pub mod record;
pub mod script;
pub mod writer;

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

pub use counters::{CountersSnapshot, RedisCounters};

use crate::durable::{Batch, Restored, StoreHandle, StoredSession, Synced};
use crate::limits::{
    REDIS_BATCHES_QUEUED_MAX, REDIS_CONNECT_TIMEOUT_MS, REDIS_FENCED_QUEUE_MAX,
    REDIS_REQUESTS_QUEUED_MAX,
};

/// Epochs travel through Lua as doubles (`limits::REDIS_EPOCH_MAX`).
pub use crate::limits::REDIS_EPOCH_MAX as EPOCH_MAX;

/// What the backend needs from the config (`[redis]`), as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis_type = "cluster"` (true) or `"single"`.
    pub cluster: bool,
    /// Seeds: any nodes of the cluster, or the one server; `host:port`.
    pub servers: Vec<String>,
    /// Empty: no AUTH.
    pub password: String,
    /// Replicas each master must acknowledge a group to (`WAIT n`) before
    /// its ticket is published; 0: Redis's reply alone counts as synced.
    pub replica_acks: u32,
}

impl RedisSettings {
    /// The `[redis]` keys with the default `replica_acks`: 1 for a cluster
    /// (a master killed mid-run loses nothing synced, ADR 0007), 0 for a
    /// single server (no replicas to wait for).
    pub fn new(cluster: bool, servers: Vec<String>, password: String) -> RedisSettings {
        RedisSettings {
            cluster,
            servers,
            password,
            replica_acks: u32::from(cluster),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Config(String),
    #[error(
        "redis: cannot connect to {servers}: {reason} (check [redis] servers, password and \
         redis_type, and that Redis is running)"
    )]
    Connect { servers: String, reason: String },
    #[error("redis: {0}")]
    Redis(String),
    /// A newer owner holds the session (its epoch is `stored_epoch`).
    #[error("redis: fenced, the session's owner epoch is {stored_epoch}")]
    Fenced { stored_epoch: u64 },
    #[error("redis: record {key} is damaged: {error}")]
    Record {
        key: String,
        error: record::RecordError,
    },
    #[error("redis: the Redis thread has stopped")]
    Stopped,
}

/// A write Redis refused because a newer owner holds the client's
/// session: the shard ends that session (its client reconnects and finds
/// it where the newer owner is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub client: Arc<str>,
    pub stored_epoch: u64,
}

enum Request {
    Session {
        client: String,
        epoch: u64,
        reply: oneshot::Sender<Result<Option<StoredSession>, Error>>,
    },
    Node {
        reply: oneshot::Sender<Result<Restored, Error>>,
    },
}

/// The node's end of the Redis thread: loads, counters, fenced answers.
pub struct RedisHandle {
    requests: mpsc::Sender<Request>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<RedisCounters>,
    fenced: Vec<Arc<ArrayQueue<Fenced>>>,
}

impl RedisHandle {
    /// Takes the session of `client` for this node with `epoch` (above
    /// the stored one, else [`Error::Fenced`] names it): the old owner's
    /// later writes are refused. `None`: Redis holds no session (the claim
    /// still fences). The returned meta carries `epoch`.
    pub async fn load_session(
        &self,
        client: &str,
        epoch: u64,
    ) -> Result<Option<StoredSession>, Error> {
        request_session(&self.requests, client, epoch).await
    }

    /// This node's sessions (from its index, each checked to be still
    /// owned by it) and every retained message: what a restart restores.
    pub async fn load_node(&self) -> Result<Restored, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Node { reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// The live counters (the admin API renders them).
    pub fn counters_shared(&self) -> Arc<RedisCounters> {
        self.counters.clone()
    }

    /// Shard `shard`'s end of the thread: loads and its fenced answers.
    /// Every client must be dropped before [`RedisHandle::join`] (the
    /// thread ends once no one can send it a request).
    pub fn client(&self, shard: usize) -> RedisClient {
        RedisClient {
            requests: self.requests.clone(),
            fenced: self.fenced[shard].clone(),
            counters: self.counters.clone(),
        }
    }

    /// Shard `shard`'s fenced answers (the shard pops them).
    pub fn fenced(&self, shard: usize) -> Arc<ArrayQueue<Fenced>> {
        self.fenced[shard].clone()
    }

    /// Waits until every batch sent is applied and the thread ended; the
    /// shards' `StoreHandle`s must be dropped first (their channels close).
    pub fn join(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

async fn request_session(
    requests: &mpsc::Sender<Request>,
    client: &str,
    epoch: u64,
) -> Result<Option<StoredSession>, Error> {
    let (reply, answer) = oneshot::channel();
    let request = Request::Session {
        client: client.to_string(),
        epoch,
        reply,
    };
    requests.send(request).await.map_err(|_| Error::Stopped)?;
    answer.await.map_err(|_| Error::Stopped)?
}

/// A shard's end of the Redis thread (`RedisHandle::client`): cheap to
/// clone, usable from any runtime (tokio channels).
#[derive(Clone)]
pub struct RedisClient {
    requests: mpsc::Sender<Request>,
    fenced: Arc<ArrayQueue<Fenced>>,
    counters: Arc<RedisCounters>,
}

impl RedisClient {
    /// As [`RedisHandle::load_session`].
    pub async fn load_session(
        &self,
        client: &str,
        epoch: u64,
    ) -> Result<Option<StoredSession>, Error> {
        request_session(&self.requests, client, epoch).await
    }

    /// The next session Redis fenced on this shard, if any.
    pub fn pop_fenced(&self) -> Option<Fenced> {
        self.fenced.pop()
    }

    pub fn counters(&self) -> &RedisCounters {
        &self.counters
    }
}

fn validate(settings: &RedisSettings, node: &str, shards: usize) -> Result<(), Error> {
    if settings.servers.is_empty() {
        return Err(Error::Config(
            "redis.servers is empty: list at least one host:port of the Redis servers".into(),
        ));
    }
    for (i, s) in settings.servers.iter().enumerate() {
        conn::address(s).map_err(|e| Error::Config(format!("redis.servers[{i}]: {e}")))?;
    }
    if node.is_empty() || shards == 0 {
        return Err(Error::Config(
            "the node name must not be empty and there must be at least one shard".into(),
        ));
    }
    Ok(())
}

/// Connects (the start fails if Redis cannot be reached, naming the
/// servers), loads the scripts on every master, and starts the thread.
/// Gives each shard its `StoreHandle` (index = shard).
pub fn start(
    settings: &RedisSettings,
    node: &str,
    shards: usize,
) -> Result<(Vec<StoreHandle>, RedisHandle), Error> {
    validate(settings, node, shards)?;
    let counters = Arc::new(RedisCounters::default());
    let fenced: Vec<_> = (0..shards)
        .map(|_| Arc::new(ArrayQueue::new(REDIS_FENCED_QUEUE_MAX)))
        .collect();
    let mut handles = Vec::with_capacity(shards);
    let mut receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = mpsc::channel::<Batch>(REDIS_BATCHES_QUEUED_MAX);
        let synced = Arc::new(Synced::default());
        handles.push(StoreHandle::new(tx, synced.clone()));
        receivers.push((rx, synced));
    }
    let (requests, mut request_rx) = mpsc::channel(REDIS_REQUESTS_QUEUED_MAX);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), Error>>(1);
    let settings = settings.clone();
    let node = node.to_string();
    let (thread_counters, thread_fenced) = (counters.clone(), fenced.clone());
    let thread = std::thread::Builder::new()
        .name("ringmq-redis".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Redis(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            runtime.block_on(async move {
                let servers = settings.servers.join(", ");
                let (write, load) = script::sources();
                let connecting = async {
                    let mut c = conn::connect(&settings).await?;
                    conn::load_scripts(&mut c, &[&write, &load]).await?;
                    Ok::<_, redis::RedisError>(c)
                };
                let limit = std::time::Duration::from_millis(2 * REDIS_CONNECT_TIMEOUT_MS);
                let conn = match tokio::time::timeout(limit, connecting).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        let reason = e.to_string();
                        let _ = ready_tx.send(Err(Error::Connect { servers, reason }));
                        return;
                    }
                    Err(_) => {
                        let reason = format!("no answer within {} ms", limit.as_millis());
                        let _ = ready_tx.send(Err(Error::Connect { servers, reason }));
                        return;
                    }
                };
                let shared = Arc::new(writer::Shared {
                    conn,
                    node,
                    write: Script::new(&write),
                    load: Script::new(&load),
                    replica_acks: settings.replica_acks,
                    counters: thread_counters,
                    fenced: thread_fenced,
                });
                let _ = ready_tx.send(Ok(()));
                let tasks: Vec<_> = receivers
                    .into_iter()
                    .enumerate()
                    .map(|(shard, (rx, synced))| {
                        tokio::spawn(writer::run_shard(shared.clone(), shard, rx, synced))
                    })
                    .collect();
                while let Some(request) = request_rx.recv().await {
                    tokio::spawn(serve(shared.clone(), request));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        })
        .map_err(|e| Error::Redis(format!("cannot start the ringmq-redis thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((
            handles,
            RedisHandle {
                requests,
                thread: Some(thread),
                counters,
                fenced,
            },
        )),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Stopped)
        }
    }
}

async fn serve(shared: Arc<writer::Shared>, request: Request) {
    match request {
        Request::Session {
            client,
            epoch,
            reply,
        } => {
            let _ = reply.send(load::load_session(&shared, &client, epoch).await);
        }
        Request::Node { reply } => {
            let _ = reply.send(load::load_node(&shared).await);
        }
    }
}
