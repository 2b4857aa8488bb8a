//! The builtin durable store (`durable_sessions.backend = "builtin"`,
//! docs/adr/0007-durable-sessions.md, docs/durability.md): one fjall
//! database per shard under `{data_dir}/durable/shard-{N}/`, with the
//! keyspaces `sessions`, `deliveries` and `retained` (the record bytes and
//! keys of [`super::record`]), written by a thread of its own
//! (`ringmq-store-{N}`, [`writer`]) so a shard never touches the disk.
//!
//! At start, before the shards run:
//! 1. [`absorb_extra`]: a run with more shards left stores `i + n`,
//!    `i + 2n`, ...; shard `i` moves their records into its own store,
//!    syncs, and removes them.
//! 2. [`open`]: reads and validates every record ([`restore`]) and starts
//!    the writer. A store damaged beyond a torn journal tail is an
//!    [`OpenError`] naming the store, the file or the record, and the fix;
//!    [`move_damaged_aside`] (for `ringmq --durable-recover-damaged`)
//!    moves it to `shard-{N}.damaged-{unix time}` so `open` starts empty.

mod restore;
mod writer;

#[cfg(test)]
mod bench;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_damage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::SyncMode;
use crate::limits::{
    DURABLE_BATCHES_QUEUED_MAX, DURABLE_JOURNALS_BYTES_MAX, DURABLE_MEMTABLE_BYTES_MAX,
    DURABLE_STORE_WORKER_THREADS,
};

use super::record::RecordError;
use super::{Restored, StoreHandle, Synced};

pub use writer::{StoreStats, Writer};

/// The keyspaces of a store.
pub const SESSIONS: &str = "sessions";
pub const DELIVERIES: &str = "deliveries";
pub const RETAINED: &str = "retained";

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the durable store directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the durable store {} is in use by another process (is another ringmq running with the \
         same node.data_dir?)",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "the durable store {} is damaged ({detail}); nothing was dropped. To start anyway, run \
         ringmq with --durable-recover-damaged: it moves the store aside to {}.damaged-<unix \
         time> and starts without it (or restore the directory from a backup)",
        path.display(),
        path.display()
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "the durable store {} holds a damaged {keyspace} record under key {key}: {error}; \
         nothing was dropped. To start anyway, run ringmq with --durable-recover-damaged: it \
         moves the store aside to {}.damaged-<unix time> and starts without it (or restore \
         the directory from a backup)",
        path.display(),
        path.display()
    )]
    Record {
        path: PathBuf,
        keyspace: &'static str,
        key: String,
        error: RecordError,
    },
}

impl OpenError {
    /// Damage `--durable-recover-damaged` may move aside (not a directory
    /// that cannot be created, nor a store in use).
    pub fn is_damage(&self) -> bool {
        matches!(self, OpenError::Damaged { .. } | OpenError::Record { .. })
    }

    pub(crate) fn damaged(path: &Path, error: fjall::Error) -> OpenError {
        match error {
            fjall::Error::Locked => OpenError::Locked {
                path: path.to_path_buf(),
            },
            fjall::Error::Io(source) if source.kind() != std::io::ErrorKind::InvalidData => {
                OpenError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
            other => OpenError::Damaged {
                path: path.to_path_buf(),
                detail: describe(&other),
            },
        }
    }
}

/// fjall's errors print as their Debug form; say which part failed.
fn describe(error: &fjall::Error) -> String {
    match error {
        fjall::Error::JournalRecovery(e) => {
            format!("its journal (journals/ inside it) fails recovery: {e:?}")
        }
        fjall::Error::Storage(e) => format!("a table or its metadata fails to read: {e:?}"),
        other => format!("{other:?}"),
    }
}

/// `{data_dir}/durable/shard-{shard}`.
pub fn store_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join("durable").join(format!("shard-{shard}"))
}

/// Opens (creating it if new) shard `shard`'s store under `data_dir`,
/// reads everything it holds, and starts its writer thread
/// `ringmq-store-{shard}`. The shard sends [`super::Batch`]es through the
/// handle; the writer publishes their tickets per `mode` (module
/// [`writer`]). Dropping the handle's sender ends the writer after a final
/// sync; [`Writer::join`] waits for it.
pub fn open(
    data_dir: &Path,
    shard: usize,
    mode: SyncMode,
) -> Result<(StoreHandle, Restored, Writer), OpenError> {
    let path = store_dir(data_dir, shard);
    let store = Store::open(&path)?;
    let (restored, epochs) = restore::read_all(&store)?;
    let (tx, rx) = tokio::sync::mpsc::channel(DURABLE_BATCHES_QUEUED_MAX);
    let synced = Arc::new(Synced::default());
    let writer = Writer::spawn(store, shard, mode, rx, synced.clone(), epochs)
        .map_err(|source| OpenError::Io { path, source })?;
    Ok((StoreHandle::new(tx, synced), restored, writer))
}

/// An open fjall database and its keyspaces.
pub(crate) struct Store {
    pub path: PathBuf,
    pub db: fjall::Database,
    pub sessions: fjall::Keyspace,
    pub deliveries: fjall::Keyspace,
    pub retained: fjall::Keyspace,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store, OpenError> {
        std::fs::create_dir_all(path).map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let damaged = |e| OpenError::damaged(path, e);
        let db = fjall::Database::builder(path)
            .worker_threads(DURABLE_STORE_WORKER_THREADS)
            .max_journaling_size(DURABLE_JOURNALS_BYTES_MAX)
            .open()
            .map_err(damaged)?;
        let keyspace = |name| {
            db.keyspace(name, || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(DURABLE_MEMTABLE_BYTES_MAX)
            })
            .map_err(damaged)
        };
        Ok(Store {
            path: path.to_path_buf(),
            sessions: keyspace(SESSIONS)?,
            deliveries: keyspace(DELIVERIES)?,
            retained: keyspace(RETAINED)?,
            db,
        })
    }
}

/// The stores of shards `shard + shards`, `shard + 2 * shards`, ... that
/// exist under `data_dir` (left by a run with more shards), ascending.
pub fn extra_stores(data_dir: &Path, shard: usize, shards: usize) -> std::io::Result<Vec<usize>> {
    extra_stores_in(&data_dir.join("durable"), shard, shards)
}

/// [`extra_stores`] of the engine whose stores are `{dir}/shard-{N}`.
pub(crate) fn extra_stores_in(
    dir: &Path,
    shard: usize,
    shards: usize,
) -> std::io::Result<Vec<usize>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if n >= shards && shards > 0 && n % shards == shard {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Moves the records of every extra store of `shard` ([`extra_stores`])
/// into shard `shard`'s own store (per client id the higher epoch wins;
/// a retained topic already in the own store keeps its record), syncs it,
/// then removes the extra stores. A crash in between leaves both: the next
/// start moves them again, to the same result. Returns how many stores
/// were moved. Call before [`open`].
pub fn absorb_extra(data_dir: &Path, shard: usize, shards: usize) -> Result<usize, OpenError> {
    let extras = extra_stores(data_dir, shard, shards).map_err(|source| OpenError::Io {
        path: data_dir.join("durable"),
        source,
    })?;
    if extras.is_empty() {
        return Ok(0);
    }
    let own = Store::open(&store_dir(data_dir, shard))?;
    for &extra in &extras {
        let path = store_dir(data_dir, extra);
        {
            let from = Store::open(&path)?;
            let (restored, _) = restore::read_all(&from)?;
            restore::merge_into(&own, restored)?;
            own.db
                .persist(fjall::PersistMode::SyncAll)
                .map_err(|e| OpenError::damaged(&own.path, e))?;
        }
        remove_dir_durably(&path).map_err(|source| OpenError::Io { path, source })?;
        tracing::info!(
            shard,
            from = extra,
            "moved the durable store of shard {extra} into shard {shard}'s"
        );
    }
    Ok(extras.len())
}

/// Moves shard `shard`'s store aside to `shard-{N}.damaged-{unix time}`
/// (`ringmq --durable-recover-damaged`), so the next [`open`] starts
/// with an empty store. Returns where it went; `None` if there was none.
pub fn move_damaged_aside(data_dir: &Path, shard: usize) -> std::io::Result<Option<PathBuf>> {
    move_aside(&store_dir(data_dir, shard))
}

/// Moves the store directory `path` (of either engine) aside to
/// `{path}.damaged-{unix time}`; `None` if there was none.
pub fn move_aside(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let path = path.to_path_buf();
    if !path.exists() {
        return Ok(None);
    }
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.clone().into_os_string();
    aside.push(format!(".damaged-{unix_s}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(&path, &aside)?;
    sync_parent(&path);
    tracing::warn!(
        "moved the damaged durable store {} aside to {}: this shard starts without its sessions",
        path.display(),
        aside.display()
    );
    Ok(Some(aside))
}

pub(crate) fn remove_dir_durably(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(path)?;
    sync_parent(path);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
}

/// A key as text for an error message: UTF-8 shown as is, with the
/// delivery separator and other bytes escaped.
pub(crate) fn show_key(key: &[u8]) -> String {
    let shown: String = key.escape_ascii().to_string();
    if shown.len() > 200 {
        format!("\"{}...\"", &shown[..200])
    } else {
        format!("\"{shown}\"")
    }
}

impl Store {
    /// Writes every memtable to a table, so the journals can go and the
    /// next open has nothing to replay (a clean close).
    pub(crate) fn flush_memtables(&self) -> Result<(), fjall::Error> {
        for keyspace in [&self.sessions, &self.deliveries, &self.retained] {
            keyspace.rotate_memtable_and_wait()?;
        }
        Ok(())
    }

    /// Adds to `batch` the removal of every delivery of the client whose
    /// delivery key prefix is `prefix` (as committed: the caller commits
    /// earlier writes of the same client first).
    pub(crate) fn remove_deliveries(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        prefix: &[u8],
    ) -> Result<usize, fjall::Error> {
        let mut removed = 0;
        for guard in self.deliveries.prefix(prefix) {
            batch.remove(&self.deliveries, guard.key()?);
            removed += 1;
        }
        Ok(removed)
    }

    /// Adds to `batch` everything stored for `meta.client_id` replaced by
    /// `meta` and `deliveries` (`Op::PutSession`, a moved store).
    pub(crate) fn put_session(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        meta: &super::SessionMeta,
        deliveries: &[(u64, super::DeliveryRecord)],
    ) -> Result<(), WriteError> {
        let client = meta.client_id.as_str();
        self.remove_deliveries(batch, &super::record::delivery_prefix(client))?;
        batch.insert(
            &self.sessions,
            super::record::session_key(client),
            super::record::encode_meta(meta)?,
        );
        for (seq, record) in deliveries {
            batch.insert(
                &self.deliveries,
                super::record::delivery_key(client, *seq),
                super::record::encode_delivery(record)?,
            );
        }
        Ok(())
    }
}

/// Why the writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("durable store write failed: {0:?}")]
    Store(#[from] fjall::Error),
    #[error("durable store record refused: {0}")]
    Record(#[from] RecordError),
    #[error("durable store writer thread panicked")]
    Panicked,
    #[error("durable store write failed: {0}")]
    Io(#[from] std::io::Error),
}
