//! The writer of one log store: the thread `ringmq-store-{N}`, as the
//! fjall engine's (`builtin::writer`: the same batches, tickets, modes,
//! epochs and end), appending one group per wake-up:
//!
//! * every batch waiting is drained and its ops encoded into one group,
//!   skipping the deliveries put and removed within them (`op::cancelled`)
//!   and tombstones that would kill nothing ([`super::index::Index::kills`]);
//! * `always` and `batch`: one `fdatasync` per group (group commit), then
//!   the highest ticket is published; `none`: published at once;
//! * the head segment is rotated when full, and when the writer finds no
//!   batch waiting it takes one compaction step if the store holds more
//!   than twice its live bytes ([`super::store::LogStore::compact_step`]);
//!   a writer that never finds its channel empty takes one every
//!   `limits::DURABLE_LOG_COMPACT_EVERY_WRITES` writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc::Receiver;

use crate::config::SyncMode;
use crate::durable::builtin::{StoreStats, WriteError, Writer};
use crate::durable::record::{
    append_delivery_for_group, append_meta_for_group, append_retained_for_group, session_records,
};
use crate::durable::{Batch, Op, Synced, Ticket};
use crate::limits::DURABLE_LOG_COMPACT_EVERY_WRITES;

use super::segment::{Group, Kind};
use super::store::LogStore;

pub(crate) fn spawn(
    store: LogStore,
    shard: usize,
    mode: SyncMode,
    batches: Receiver<Batch>,
    synced: Arc<Synced>,
) -> std::io::Result<Writer> {
    let stats = Arc::new(StoreStats::default());
    let state = State {
        store,
        mode,
        synced,
        stats: stats.clone(),
        buffer: Vec::new(),
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
    Ok(Writer::from_thread(thread, stats))
}

struct State {
    store: LogStore,
    mode: SyncMode,
    synced: Arc<Synced>,
    stats: Arc<StoreStats>,
    /// The last group's buffer, reused (its room grows to the largest).
    buffer: Vec<u8>,
}

impl State {
    fn run(mut self, mut batches: Receiver<Batch>) -> Result<(), WriteError> {
        let mut waiting = Vec::new();
        // Writes since the last compaction step: a writer that never finds
        // its channel empty (the store is the bottleneck) still compacts,
        // one step every `DURABLE_LOG_COMPACT_EVERY_WRITES` writes, so its
        // disk stays bounded under a sustained load.
        let mut since_step = 0u32;
        while let Some(idle) = crate::durable::drain::next_batches(&mut batches, &mut waiting) {
            let (ticket, ops) = self.write(&mut waiting)?;
            if self.mode != SyncMode::None && ops > 0 {
                self.store.sync()?;
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            }
            self.synced.publish(ticket);
            self.store.rotate_if_full()?;
            since_step += 1;
            let due = idle || since_step >= DURABLE_LOG_COMPACT_EVERY_WRITES;
            if due && self.store.wants_compaction() {
                self.store.compact_step()?;
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
                since_step = 0;
            }
        }
        // A clean close: everything synced, the dead bytes dropped.
        self.store.sync()?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let mut steps = self.store.index.segments().count();
        while self.store.wants_compaction() && steps > 0 {
            self.store.compact_step()?;
            steps -= 1;
        }
        Ok(())
    }

    /// Encodes the ops of `batches` (emptied) into one group and appends
    /// it; returns the highest ticket and how many ops were written.
    fn write(&mut self, batches: &mut Vec<Batch>) -> Result<(Ticket, u64), WriteError> {
        let mut group = Group::in_buffer(std::mem::take(&mut self.buffer));
        let (ticket, ops) =
            crate::durable::drain::apply_ops(batches, |op| self.apply(&mut group, op))?;
        self.buffer = self.store.write(group)?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(ops, Ordering::Relaxed);
        Ok((ticket, ops))
    }

    /// Whether an op of `client` at `epoch` may write: not below the
    /// stored epoch (a stale owner never overwrites a newer one).
    fn admit(&self, client: &str, epoch: u64) -> bool {
        match self.store.index.epoch(client) {
            Some(stored) if epoch < stored => {
                self.stats.stale_ops.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    fn apply(&mut self, group: &mut Group, op: Op) -> Result<(), WriteError> {
        match op {
            Op::PutSession {
                client,
                epoch,
                snapshot,
            } => {
                if !self.admit(&client, epoch) {
                    return Ok(());
                }
                let (meta, deliveries) = session_records(&snapshot, epoch);
                if self.store.index.kills(Kind::RemoveSession, &client, 0) {
                    self.store
                        .record(group, Kind::RemoveSession, &client, 0, &[]);
                }
                self.store
                    .record_with(group, Kind::Meta, &client, meta.epoch, |out| {
                        append_meta_for_group(&meta, out)
                    })?;
                for (seq, record) in &deliveries {
                    self.store
                        .record_with(group, Kind::Delivery, &client, *seq, |out| {
                            append_delivery_for_group(record, out)
                        })?;
                }
            }
            Op::PutMeta { client, meta } => {
                if self.admit(&client, meta.epoch) {
                    self.store
                        .record_with(group, Kind::Meta, &client, meta.epoch, |out| {
                            append_meta_for_group(&meta, out)
                        })?;
                }
            }
            Op::PutDelivery {
                client,
                epoch,
                seq,
                record,
                ..
            } => {
                if self.admit(&client, epoch) {
                    self.store
                        .record_with(group, Kind::Delivery, &client, seq, |out| {
                            append_delivery_for_group(&record, out)
                        })?;
                }
            }
            Op::RemoveDelivery { client, epoch, seq } => {
                if self.admit(&client, epoch)
                    && self.store.index.kills(Kind::RemoveDelivery, &client, seq)
                {
                    self.store
                        .record(group, Kind::RemoveDelivery, &client, seq, &[]);
                }
            }
            Op::RemoveSession { client, epoch } => {
                if self.admit(&client, epoch)
                    && self.store.index.kills(Kind::RemoveSession, &client, 0)
                {
                    self.store
                        .record(group, Kind::RemoveSession, &client, 0, &[]);
                }
            }
            Op::PutRetained { topic, message } => {
                self.store
                    .record_with(group, Kind::Retained, &topic, 0, |out| {
                        append_retained_for_group(&message, out)
                    })?;
            }
            Op::RemoveRetained { topic } => {
                if self.store.index.kills(Kind::RemoveRetained, &topic, 0) {
                    self.store
                        .record(group, Kind::RemoveRetained, &topic, 0, &[]);
                }
            }
        }
        Ok(())
    }
}
