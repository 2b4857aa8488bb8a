//! The log engine of the builtin durable store
//! (`durable_sessions.engine = "log"`, docs/durability.md, ADR 0008): one
//! append-only log per shard under `{data_dir}/durable-log/shard-{N}/`,
//! written by the thread `ringmq-store-{N}` as the fjall engine's is, but
//! with no index on disk: the shard holds every session in memory, so the
//! store only has to give them back at start. Each write of the writer is
//! one checksummed group ([`segment`]), synced per the mode; an in-memory
//! [`index`] of where each live record is lets the writer skip tombstones
//! that kill nothing and compact the oldest segment once the log holds
//! more than twice its live bytes, so the disk returns to its baseline
//! after queues drain.
//!
//! Opening reads every segment ([`store`]): a torn tail of the last
//! segment (a write a crash cut, never acknowledged as synced) is cut
//! off; damage anywhere else refuses the start with the file and offset,
//! and `ringmq --durable-recover-damaged` moves the store aside.

mod index;
mod segment;
mod state;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::SyncMode;
use crate::limits::DURABLE_BATCHES_QUEUED_MAX;

use super::builtin::{OpenError, Writer};
use super::{Restored, StoreHandle, Synced};

/// `{data_dir}/durable-log/shard-{shard}`.
pub fn store_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join("durable-log").join(format!("shard-{shard}"))
}

/// Opens (creating it if new) shard `shard`'s log store under `data_dir`,
/// reads everything it holds and starts its writer; as `builtin::open`.
pub fn open(
    data_dir: &Path,
    shard: usize,
    mode: SyncMode,
) -> Result<(StoreHandle, Restored, Writer), OpenError> {
    let path = store_dir(data_dir, shard);
    let (store, restored) = store::LogStore::open(&path)?;
    let (tx, rx) = tokio::sync::mpsc::channel(DURABLE_BATCHES_QUEUED_MAX);
    let synced = Arc::new(Synced::default());
    let writer = writer::spawn(store, shard, mode, rx, synced.clone())
        .map_err(|source| OpenError::Io { path, source })?;
    Ok((
        StoreHandle::new(tx, synced).taking_states(),
        restored,
        writer,
    ))
}

/// Moves the log stores of shards `shard + shards`, `shard + 2 * shards`,
/// ... (left by a run with more shards) into shard `shard`'s, as
/// `builtin::absorb_extra` does for fjall stores: per client id the higher
/// epoch wins (equal: the moved one), a retained topic the own store holds
/// keeps its record; synced before the extra store is removed, so a crash
/// in between moves it again to the same result. Call before [`open`].
pub fn absorb_extra(data_dir: &Path, shard: usize, shards: usize) -> Result<usize, OpenError> {
    let root = data_dir.join("durable-log");
    let extras =
        super::builtin::extra_stores_in(&root, shard, shards).map_err(|source| OpenError::Io {
            path: root.clone(),
            source,
        })?;
    if extras.is_empty() {
        return Ok(0);
    }
    let own_path = store_dir(data_dir, shard);
    let (mut own, _) = store::LogStore::open(&own_path)?;
    for &extra in &extras {
        let path = store_dir(data_dir, extra);
        {
            let (_from, restored) = store::LogStore::open(&path)?;
            merge_into(&mut own, restored).map_err(|source| OpenError::Io {
                path: own_path.clone(),
                source,
            })?;
        }
        super::builtin::remove_dir_durably(&path)
            .map_err(|source| OpenError::Io { path, source })?;
        tracing::info!(
            shard,
            from = extra,
            "moved the durable store of shard {extra} into shard {shard}'s"
        );
    }
    Ok(extras.len())
}

fn merge_into(own: &mut store::LogStore, from: Restored) -> std::io::Result<()> {
    use segment::{Group, Kind};
    let invalid = |e: super::record::RecordError| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    let mut group = Group::new();
    for session in from.sessions {
        let client = session.meta.client_id.as_str();
        if own
            .index
            .epoch(client)
            .is_some_and(|e| e > session.meta.epoch)
        {
            continue;
        }
        if own.index.kills(Kind::RemoveSession, client, 0) {
            own.record(&mut group, Kind::RemoveSession, client, 0, &[]);
        }
        let meta = &session.meta;
        own.record_with(&mut group, Kind::Meta, client, meta.epoch, |out| {
            super::record::append_meta_for_group(meta, out)
        })
        .map_err(invalid)?;
        for (seq, d) in &session.deliveries {
            own.record_with(&mut group, Kind::Delivery, client, *seq, |out| {
                super::record::append_delivery_for_group(d, out)
            })
            .map_err(invalid)?;
        }
    }
    for (topic, message) in from.retained {
        if !own.index.kills(Kind::RemoveRetained, &topic, 0) {
            own.record_with(&mut group, Kind::Retained, &topic, 0, |out| {
                super::record::append_retained_for_group(&message, out)
            })
            .map_err(invalid)?;
        }
    }
    own.write(group)?;
    own.sync()
}
