//! Opening every shard's store at start (ADR 0007, "Restore"), before any
//! shard runs: what each shard restores, and the writers `main` joins at
//! the end (each syncs before it ends, so a clean stop loses nothing
//! whatever the sync mode). Builtin: one fjall store per shard; Redis: one
//! `ringmq-redis` thread, this node's sessions (`load_node`) spread over
//! the shards by client id.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::builtin::{self, OpenError, Writer};
use super::log;
use super::redis::{RedisClient, RedisCounters, RedisHandle, RedisSettings};
use super::{Restored, StoreHandle, StoredSession};
use crate::config::{Backend, DurableSessionsConfig, Engine, RedisConfig, RedisType, SyncMode};
use crate::session::snapshot::MessageSnapshot;

/// What the shards take at their start: shard `i` takes `shards[i]` once.
pub struct DurableStores {
    shards: Vec<Mutex<Option<ShardStore>>>,
    /// Every store's retained messages: each topic is in the store of the
    /// shard that owns it, and every shard holds all of them.
    pub retained: Vec<(String, MessageSnapshot)>,
    /// `durable_sessions.sync`: what acknowledgements wait for.
    pub sync: SyncMode,
    /// `durable_sessions.max_session_size` and each shard's share of
    /// `max_store_size`.
    pub quota: crate::session::store_quota::Quota,
    /// `durable_sessions.batch_interval`: how long a shard gathers a batch
    /// (`batch`, `none`).
    pub batch_interval: std::time::Duration,
    /// Shards still restoring: no shard accepts a connection before every
    /// restored session is registered at its home (a connect accepted
    /// earlier could miss a session another shard has not restored yet).
    restoring: AtomicUsize,
}

/// One shard's store handle and the sessions its store held.
pub struct ShardStore {
    pub handle: StoreHandle,
    pub sessions: Vec<StoredSession>,
    /// The Redis backend: loads on connect, fenced answers.
    pub redis: Option<RedisClient>,
}

/// What `main` joins once every shard dropped its store handle: each
/// backend applies (and syncs) every batch it was sent before it ends.
pub enum Writers {
    Builtin(Vec<Writer>),
    Redis(RedisHandle),
}

impl Writers {
    /// The Redis thread's counters (`None`: builtin).
    pub fn redis_counters(&self) -> Option<std::sync::Arc<RedisCounters>> {
        match self {
            Writers::Builtin(_) => None,
            Writers::Redis(h) => Some(h.counters_shared()),
        }
    }

    /// Waits for every writer to end, logging a failed one.
    pub fn join(self) {
        match self {
            Writers::Builtin(writers) => {
                for writer in writers {
                    if let Err(e) = writer.join() {
                        tracing::error!(error = %e, "durable store writer failed");
                    }
                }
            }
            Writers::Redis(handle) => {
                let counters = handle.counters();
                handle.join();
                tracing::info!(?counters, "redis: durable store writer ended");
            }
        }
    }
}

impl DurableStores {
    /// Shard restored its sessions.
    pub fn restored(&self) {
        self.restoring.fetch_sub(1, Ordering::AcqRel);
    }

    /// Every shard restored its sessions.
    pub fn all_restored(&self) -> bool {
        self.restoring.load(Ordering::Acquire) == 0
    }

    /// Shard `shard`'s store (once).
    pub fn take(&self, shard: usize) -> Option<ShardStore> {
        self.shards
            .get(shard)?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Opens the stores of `shards` shards under `data_dir` (moving in the
/// stores a run with more shards left), one thread per shard: each store is
/// read and validated on its own thread, so a restart reads its records on
/// every CPU (docs/durability.md, "Restart time"). With `recover_damaged`
/// (`--durable-recover-damaged`) a damaged store is moved aside and its
/// shard starts empty; otherwise damage stops the start with the error,
/// which names the store and the fix (the lowest shard's, if several).
pub fn open(
    cfg: &DurableSessionsConfig,
    data_dir: &Path,
    shards: usize,
    recover_damaged: bool,
) -> Result<(DurableStores, Vec<Writer>), String> {
    let opened: Vec<Result<Opened, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..shards)
            .map(|shard| {
                std::thread::Builder::new()
                    .name(format!("ringmq-restore-{shard}"))
                    .spawn_scoped(scope, move || {
                        open_one(cfg, data_dir, shard, shards, recover_damaged)
                    })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| match t {
                Ok(t) => t
                    .join()
                    .unwrap_or_else(|_| Err("a store's restore thread panicked".to_string())),
                Err(e) => Err(format!("cannot start a store's restore thread: {e}")),
            })
            .collect()
    });
    let mut stores = Vec::with_capacity(shards);
    let mut writers = Vec::with_capacity(shards);
    let mut retained = Vec::new();
    for result in opened {
        let (handle, restored, writer) = result?;
        let Restored {
            sessions,
            retained: r,
        } = restored;
        retained.extend(r);
        stores.push(Mutex::new(Some(ShardStore {
            handle,
            sessions,
            redis: None,
        })));
        writers.push(writer);
    }
    Ok((
        DurableStores {
            shards: stores,
            retained,
            sync: cfg.sync,
            quota: crate::session::store_quota::Quota::new(
                cfg.max_session_size,
                cfg.max_store_size,
                shards,
            ),
            batch_interval: cfg.batch_interval(),
            restoring: AtomicUsize::new(shards),
        },
        writers,
    ))
}

type Opened = (StoreHandle, Restored, Writer);

/// Shard `shard`'s store: the extra stores moved in, opened (moved aside
/// first if damaged and `recover_damaged`), every record read.
fn open_one(
    cfg: &DurableSessionsConfig,
    data_dir: &Path,
    shard: usize,
    shards: usize,
    recover_damaged: bool,
) -> Result<Opened, String> {
    let engine = cfg.engine;
    let open_own = || match engine {
        Engine::Log => log::open(data_dir, shard, cfg.sync),
        Engine::Fjall => builtin::open(data_dir, shard, cfg.sync),
    };
    let opened = match engine {
        Engine::Log => log::absorb_extra(data_dir, shard, shards),
        Engine::Fjall => builtin::absorb_extra(data_dir, shard, shards),
    }
    .and_then(|_| open_own());
    let opened = match opened {
        Ok(o) => o,
        Err(e) if recover_damaged && e.is_damage() => {
            tracing::warn!(shard, error = %e, "durable store damaged: moving it aside");
            let dir = match engine {
                Engine::Log => log::store_dir(data_dir, shard),
                Engine::Fjall => builtin::store_dir(data_dir, shard),
            };
            builtin::move_aside(&dir)
                .map_err(|io| format!("cannot move the damaged store aside: {io}"))?;
            open_own().map_err(|e: OpenError| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    tracing::info!(
        shard,
        sessions = opened.1.sessions.len(),
        retained = opened.1.retained.len(),
        "durable store opened"
    );
    Ok(opened)
}

/// Where the stores are: the builtin's data directory, or `[redis]` and
/// this node's name (its key in Redis's node index).
pub struct OpenSpec<'a> {
    pub durable: &'a DurableSessionsConfig,
    pub redis: &'a RedisConfig,
    pub node_name: &'a str,
    pub data_dir: &'a Path,
    pub recover_damaged: bool,
}

/// Opens the configured backend for `shards` shards: `open` for builtin,
/// `open_redis` for Redis.
pub fn open_backend(spec: &OpenSpec, shards: usize) -> Result<(DurableStores, Writers), String> {
    match spec.durable.backend {
        Backend::Builtin => open(spec.durable, spec.data_dir, shards, spec.recover_damaged)
            .map(|(stores, writers)| (stores, Writers::Builtin(writers))),
        Backend::Redis => open_redis(spec.durable, spec.redis, spec.node_name, shards),
    }
}

/// Connects to Redis (a start with Redis unreachable fails, naming
/// `[redis] servers`), loads this node's sessions and every retained
/// message, and gives each shard its handle. A session goes to the shard
/// `shard_of` picks (any shard would do: each registers its sessions at
/// their homes; this spreads them evenly).
pub fn open_redis(
    cfg: &DurableSessionsConfig,
    redis: &RedisConfig,
    node_name: &str,
    shards: usize,
) -> Result<(DurableStores, Writers), String> {
    let settings = RedisSettings::new(
        redis.redis_type == RedisType::Cluster,
        redis.servers.iter().map(|s| s.to_string()).collect(),
        redis.password.clone(),
    );
    let (handles, handle) =
        super::redis::start(&settings, node_name, shards).map_err(|e| e.to_string())?;
    let restored = match futures_lite::future::block_on(handle.load_node()) {
        Ok(r) => r,
        Err(e) => {
            let e = format!("cannot load this node's sessions from Redis: {e}");
            drop(handles);
            handle.join();
            return Err(e);
        }
    };
    let Restored { sessions, retained } = restored;
    tracing::info!(
        sessions = sessions.len(),
        retained = retained.len(),
        servers = %settings.servers.join(", "),
        "redis: durable store opened"
    );
    let mut per_shard: Vec<Vec<StoredSession>> = (0..shards).map(|_| Vec::new()).collect();
    for s in sessions {
        per_shard[shard_of(&s.meta.client_id, shards)].push(s);
    }
    let stores = handles
        .into_iter()
        .zip(per_shard)
        .enumerate()
        .map(|(shard, (store, sessions))| {
            Mutex::new(Some(ShardStore {
                handle: store,
                sessions,
                redis: Some(handle.client(shard)),
            }))
        })
        .collect();
    Ok((
        DurableStores {
            shards: stores,
            retained,
            sync: cfg.sync,
            quota: crate::session::store_quota::Quota::new(
                cfg.max_session_size,
                cfg.max_store_size,
                shards,
            ),
            batch_interval: cfg.batch_interval(),
            restoring: AtomicUsize::new(shards),
        },
        Writers::Redis(handle),
    ))
}

/// The shard a session loaded from Redis is restored on (FNV-1a of the
/// client id: stable, spreads ids evenly).
pub fn shard_of(client_id: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_in_range_and_spreads_ids() {
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[shard_of(&format!("client-{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(shard_of("x", 1), 0);
    }

    #[test]
    fn redis_unreachable_fails_naming_the_servers() {
        let redis = RedisConfig {
            redis_type: RedisType::Single,
            servers: vec![crate::config::HostPort::parse("127.0.0.1:1").unwrap()],
            password: String::new(),
        };
        let cfg = DurableSessionsConfig {
            enable: true,
            backend: Backend::Redis,
            ..Default::default()
        };
        let e = open_redis(&cfg, &redis, "n1", 2)
            .err()
            .expect("unreachable");
        assert!(
            e.contains("127.0.0.1:1") && e.contains("[redis] servers"),
            "{e}"
        );
    }
}
