//! The writer of one builtin store: an OS thread `ringmq-store-{N}` that
//! receives its shard's [`Batch`]es, applies their ops, syncs per the
//! mode and publishes the tickets ([`Synced`]).
//!
//! Every wake-up drains every batch waiting (up to the channel's bound)
//! and writes them as one fjall write (journal to the OS), skipping the
//! deliveries put and removed within them (`op::cancelled`), then:
//! * `always`: one `fdatasync` of the journal (`PersistMode::SyncData`)
//!   for all of them (group commit), then the highest ticket is published:
//!   a published ticket is on disk. Batches whose ops all cancelled in the
//!   shard come empty: published without a sync when nothing was written
//!   (everything before them is synced already).
//! * `batch`: synced and published as `always` (nothing waits for the
//!   ticket). The shard seals a batch `batch_interval` after it began to
//!   gather it (`shard::durable`), so this is about one sync per interval,
//!   and an acknowledged change is synced within the interval (plus the
//!   write), not within two as a timer of the writer's own would make it.
//! * `none`: published at once, never synced but at the end.
//!
//! When the channel closes (the shard dropped its handle: a clean
//! shutdown) the writer syncs everything (`PersistMode::SyncAll`) and
//! stops. A failed write or sync stops the writer with the error (the
//! shard's next send fails): a store that cannot write must not pretend
//! to.
//!
//! Epochs: an op whose epoch is below the one stored for its client is
//! ignored and counted (`StoreStats::stale_ops`): a stale owner never
//! overwrites a newer one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::Receiver;

use crate::config::SyncMode;
use crate::durable::record::{
    decode_delivery, delivery_key, delivery_prefix, encode_delivery, encode_meta, encode_retained,
    retained_key, session_key, session_records,
};
use crate::durable::{Batch, Op, Synced, Ticket};
use crate::limits::DURABLE_COMPACT_REMOVALS_MIN;

use super::restore::Epochs;
use super::{Store, WriteError};

/// What a writer has done, readable while it runs (metrics, benches).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    /// Journal syncs (`fdatasync`) made.
    pub syncs: AtomicU64,
    /// Ops ignored because their epoch is below the stored one.
    pub stale_ops: AtomicU64,
    /// Compactions of the deliveries keyspace started to free the space of
    /// removed deliveries.
    pub compactions: AtomicU64,
}

/// The writer thread of a store.
pub struct Writer {
    thread: Option<JoinHandle<Result<(), WriteError>>>,
    stats: Arc<StoreStats>,
}

impl Writer {
    /// A writer of another engine (`durable::log`): its thread and stats.
    pub(crate) fn from_thread(
        thread: JoinHandle<Result<(), WriteError>>,
        stats: Arc<StoreStats>,
    ) -> Writer {
        Writer {
            thread: Some(thread),
            stats,
        }
    }

    pub(crate) fn spawn(
        store: Store,
        shard: usize,
        mode: SyncMode,
        batches: Receiver<Batch>,
        synced: Arc<Synced>,
        epochs: Epochs,
    ) -> std::io::Result<Writer> {
        let stats = Arc::new(StoreStats::default());
        let state = State {
            store,
            mode,
            synced,
            epochs,
            stats: stats.clone(),
            removals: 0,
            compaction: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("ringmq-store-{shard}"))
            .spawn(move || {
                let result = state.run(batches);
                if let Err(e) = &result {
                    tracing::error!(shard, "durable store writer stopped: {e}");
                }
                result
            })?;
        Ok(Writer {
            thread: Some(thread),
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// Waits for the writer to end (after the handle's sender is dropped
    /// and every batch is written and synced).
    pub fn join(mut self) -> Result<(), WriteError> {
        let thread = self.thread.take().expect("joined once");
        thread.join().unwrap_or(Err(WriteError::Panicked))
    }
}

struct State {
    store: Store,
    mode: SyncMode,
    synced: Arc<Synced>,
    epochs: Epochs,
    stats: Arc<StoreStats>,
    /// Deliveries and sessions removed since the last compaction.
    removals: u64,
    /// The compaction running beside the writer, if any.
    compaction: Option<JoinHandle<Result<(), fjall::Error>>>,
}

impl State {
    fn run(mut self, mut batches: Receiver<Batch>) -> Result<(), WriteError> {
        let mut waiting = Vec::new();
        while let Some(idle) = crate::durable::drain::next_batches(&mut batches, &mut waiting) {
            let (ticket, ops) = self.write(&mut waiting)?;
            if self.mode != SyncMode::None && ops > 0 {
                self.sync()?;
            }
            self.synced.publish(ticket);
            if idle {
                self.maybe_compact(false)?;
            }
        }
        self.store.db.persist(fjall::PersistMode::SyncAll)?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.maybe_compact(true)?;
        self.store.flush_memtables()?;
        Ok(())
    }

    /// Frees the space of removed deliveries. fjall drops a removed value
    /// only when a compaction meets its tombstone at the last level, which
    /// a store whose queues drained may not see for a long time; so once
    /// the removals since the last compaction reach half of the keyspace's
    /// entries (tombstones and overwrites included: an overestimate, so
    /// live data is rewritten at most about twice per removal) and at
    /// least `DURABLE_COMPACT_REMOVALS_MIN`, the memtable is written out
    /// and the keyspace compacted whole, on a thread beside the writer so
    /// acknowledgements do not wait for it (`last`: at close, waited for).
    fn maybe_compact(&mut self, last: bool) -> Result<(), WriteError> {
        if let Some(running) = &self.compaction {
            if !running.is_finished() && !last {
                return Ok(());
            }
            let running = self.compaction.take().expect("checked");
            running.join().map_err(|_| WriteError::Panicked)??;
        }
        let entries = self.store.deliveries.approximate_len() as u64;
        if self.removals < DURABLE_COMPACT_REMOVALS_MIN || self.removals * 2 < entries {
            return Ok(());
        }
        self.removals = 0;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        let deliveries = self.store.deliveries.clone();
        let compact = move || {
            deliveries.rotate_memtable_and_wait()?;
            deliveries.major_compact()
        };
        if last {
            compact()?;
        } else {
            let thread = std::thread::Builder::new()
                .name("ringmq-compact".into())
                .spawn(compact)
                .map_err(fjall::Error::Io)?;
            self.compaction = Some(thread);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), WriteError> {
        self.store.db.persist(fjall::PersistMode::SyncData)?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies the ops of `batches` (emptied) in order; returns the highest
    /// ticket and how many ops there were.
    fn write(&mut self, batches: &mut Vec<Batch>) -> Result<(Ticket, u64), WriteError> {
        let mut write = self.store.db.batch();
        // A delivery put and removed within this group: skipped whole.
        let (ticket, ops) =
            crate::durable::drain::apply_ops(batches, |op| self.apply(&mut write, op))?;
        write.commit()?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(ops, Ordering::Relaxed);
        Ok((ticket, ops))
    }

    /// Whether an op of `client` at `epoch` may write (and records a
    /// newer epoch).
    fn admit(&mut self, client: &str, epoch: u64, raises: bool) -> bool {
        let key = session_key(client);
        match self.epochs.get_mut(&key) {
            Some(stored) if epoch < *stored => {
                self.stats.stale_ops.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(stored) => {
                if raises {
                    *stored = epoch;
                }
                true
            }
            None => {
                if raises {
                    self.epochs.insert(key, epoch);
                }
                true
            }
        }
    }

    fn apply(&mut self, write: &mut fjall::OwnedWriteBatch, op: Op) -> Result<(), WriteError> {
        match op {
            Op::PutSession {
                client,
                epoch,
                snapshot,
            } => {
                if !self.admit(&client, epoch, true) {
                    return Ok(());
                }
                // The removal scans what is committed: commit this
                // batch's earlier writes first.
                self.flush_pending(write)?;
                let (meta, deliveries) = session_records(&snapshot, epoch);
                self.store.put_session(write, &meta, &deliveries)?;
            }
            Op::PutMeta { client, meta } => {
                if self.admit(&client, meta.epoch, true) {
                    let key = session_key(&client);
                    write.insert(&self.store.sessions, key, encode_meta(&meta)?);
                }
            }
            Op::PutDelivery {
                client,
                epoch,
                seq,
                record,
                ..
            } => {
                if self.admit(&client, epoch, false) {
                    let key = delivery_key(&client, seq);
                    write.insert(&self.store.deliveries, key, encode_delivery(&record)?);
                }
            }
            Op::PutDeliveryState {
                client,
                epoch,
                seq,
                state,
            } => {
                // The shard sends these to the log engine only; should one
                // come here, the whole record is read back and rewritten.
                if self.admit(&client, epoch, false) {
                    self.flush_pending(write)?;
                    let key = delivery_key(&client, seq);
                    if let Some(bytes) = self.store.deliveries.get(&key)? {
                        let mut record = decode_delivery(&bytes)?;
                        record.state = state;
                        write.insert(&self.store.deliveries, key, encode_delivery(&record)?);
                    }
                }
            }
            Op::RemoveDelivery { client, epoch, seq } => {
                if self.admit(&client, epoch, false) {
                    write.remove(&self.store.deliveries, delivery_key(&client, seq));
                    self.removals += 1;
                }
            }
            Op::RemoveSession { client, epoch } => {
                if !self.admit(&client, epoch, false) {
                    return Ok(());
                }
                self.flush_pending(write)?;
                let store = &self.store;
                write.remove(&store.sessions, session_key(&client));
                self.removals += store.remove_deliveries(write, &delivery_prefix(&client))? as u64;
                self.epochs.remove(&session_key(&client));
            }
            Op::PutRetained { topic, message } => {
                let key = retained_key(&topic);
                write.insert(&self.store.retained, key, encode_retained(&message)?);
            }
            Op::RemoveRetained { topic } => {
                write.remove(&self.store.retained, retained_key(&topic));
            }
        }
        Ok(())
    }

    fn flush_pending(&self, write: &mut fjall::OwnedWriteBatch) -> Result<(), WriteError> {
        if !write.is_empty() {
            std::mem::replace(write, self.store.db.batch()).commit()?;
        }
        Ok(())
    }
}
