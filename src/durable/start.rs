//! Opening every shard's store at start (ADR 0007, "Restore"), before any
//! shard runs: what each shard restores, and the writers `main` joins at
//! the end (each syncs before it ends, so a clean stop loses nothing
//! whatever the sync mode).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::builtin::{self, OpenError, Writer};
use super::{Restored, StoreHandle, StoredSession};
use crate::config::{Backend, DurableSessionsConfig, SyncMode};
use crate::session::snapshot::MessageSnapshot;

/// What the shards take at their start: shard `i` takes `shards[i]` once.
pub struct DurableStores {
    shards: Vec<Mutex<Option<ShardStore>>>,
    /// Every store's retained messages: each topic is in the store of the
    /// shard that owns it, and every shard holds all of them.
    pub retained: Vec<(String, MessageSnapshot)>,
    /// `durable_sessions.sync`: what acknowledgements wait for.
    pub sync: SyncMode,
    /// Shards still restoring: no shard accepts a connection before every
    /// restored session is registered at its home (a connect accepted
    /// earlier could miss a session another shard has not restored yet).
    restoring: AtomicUsize,
}

/// One shard's store handle and the sessions its store held.
pub struct ShardStore {
    pub handle: StoreHandle,
    pub sessions: Vec<StoredSession>,
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
/// stores a run with more shards left). With `recover_damaged`
/// (`--durable-recover-damaged`) a damaged store is moved aside and its
/// shard starts empty; otherwise damage stops the start with the error,
/// which names the store and the fix.
pub fn open(
    cfg: &DurableSessionsConfig,
    data_dir: &Path,
    shards: usize,
    recover_damaged: bool,
) -> Result<(DurableStores, Vec<Writer>), String> {
    if cfg.backend != Backend::Builtin {
        return Err(
            "durable_sessions.backend = \"redis\" is not available in this build yet: set \
             durable_sessions.backend = \"builtin\""
                .to_owned(),
        );
    }
    let mut stores = Vec::with_capacity(shards);
    let mut writers = Vec::with_capacity(shards);
    let mut retained = Vec::new();
    for shard in 0..shards {
        let opened = builtin::absorb_extra(data_dir, shard, shards)
            .and_then(|_| builtin::open(data_dir, shard, cfg.sync, cfg.batch_interval()));
        let (handle, restored, writer) = match opened {
            Ok(o) => o,
            Err(e) if recover_damaged && e.is_damage() => {
                tracing::warn!(shard, error = %e, "durable store damaged: moving it aside");
                builtin::move_damaged_aside(data_dir, shard)
                    .map_err(|io| format!("cannot move the damaged store aside: {io}"))?;
                builtin::open(data_dir, shard, cfg.sync, cfg.batch_interval())
                    .map_err(|e: OpenError| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let Restored {
            sessions,
            retained: r,
        } = restored;
        tracing::info!(
            shard,
            sessions = sessions.len(),
            retained = r.len(),
            "durable store opened"
        );
        retained.extend(r);
        stores.push(Mutex::new(Some(ShardStore { handle, sessions })));
        writers.push(writer);
    }
    Ok((
        DurableStores {
            shards: stores,
            retained,
            sync: cfg.sync,
            restoring: AtomicUsize::new(shards),
        },
        writers,
    ))
}
