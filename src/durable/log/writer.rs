//! The writer of one log store: the thread `ringmq-store-{N}`, as the
//! fjall engine's (`builtin::writer`: the same batches, tickets, modes,
//! epochs and end), appending one group per wake-up:
//!
//! * every batch waiting is drained and its ops encoded into one group,
//!   skipping the deliveries put and removed within them (`op::cancelled`)
//!   and tombstones that would kill nothing ([`super::index::Index::kills`]);
//! * `always` and `batch`: one `fdatasync` per group (group commit), then
//!   the highest ticket is published; `none`: published at once;
//! * the head segment is rotated when full; a fully dead oldest segment is
//!   deleted at once, and when the writer finds no batch waiting it takes
//!   one compaction step if the store holds more than twice its live bytes
//!   (plus `limits::DURABLE_LOG_BUSY_SLACK_BYTES` while it is busy:
//!   [`super::store::LogStore::wants_compaction`]); a writer that
//!   never finds its channel empty takes one every
//!   `limits::DURABLE_LOG_COMPACT_EVERY_BYTES` appended.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::Receiver;

use crate::config::SyncMode;
use crate::durable::builtin::{StoreStats, WriteError, Writer};
use crate::durable::record::{
    append_delivery_for_group, append_meta_for_group, append_retained_for_group, session_records,
};
use crate::durable::{Batch, Op, Synced, Ticket};
use crate::limits::{
    DURABLE_LOG_COMPACT_EVERY_BYTES, DURABLE_LOG_QUIET_BYTES, DURABLE_LOG_QUIET_WINDOW,
};

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

/// What the writer does to its store between writes: rotation, and at
/// most one compaction step ([`LogStore::wants_compaction`]).
#[derive(Default)]
pub(super) struct Housekeeping {
    /// Bytes appended since the last compaction step: a writer that never
    /// finds its channel empty (the store is the bottleneck) still takes a
    /// step every `DURABLE_LOG_COMPACT_EVERY_BYTES`, so its disk stays
    /// bounded under a sustained load. A step frees about half a segment
    /// on average once the store holds twice its live bytes; counting
    /// writes instead let large writes outrun it (a unit test found it).
    since_step_bytes: u64,
    /// Bytes appended in the previous and the current
    /// `DURABLE_LOG_QUIET_WINDOW` (a writer that appended more than
    /// `DURABLE_LOG_QUIET_BYTES` in them is busy), and when the current
    /// one began.
    window_bytes: [u64; 2],
    window_began: Option<Instant>,
}

impl Housekeeping {
    /// After a write that appended `appended` bytes at `now`; `idle`: the
    /// writer found no batch waiting. Returns whether it took a compaction
    /// step.
    pub(super) fn after_write(
        &mut self,
        store: &mut LogStore,
        idle: bool,
        appended: u64,
        now: Instant,
    ) -> std::io::Result<bool> {
        store.rotate_if_full()?;
        self.since_step_bytes += appended;
        let recent = self.count(appended, now);
        let busy = !idle || recent > DURABLE_LOG_QUIET_BYTES;
        let due = idle || self.since_step_bytes >= DURABLE_LOG_COMPACT_EVERY_BYTES;
        if (due || store.oldest_is_dead()) && store.wants_compaction(busy) {
            store.compact_step()?;
            self.since_step_bytes = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// Counts `appended` in the current window; returns the bytes of the
    /// previous and current windows.
    fn count(&mut self, appended: u64, now: Instant) -> u64 {
        let began = *self.window_began.get_or_insert(now);
        let passed = now.saturating_duration_since(began);
        if passed >= 2 * DURABLE_LOG_QUIET_WINDOW {
            self.window_bytes = [0, 0];
            self.window_began = Some(now);
        } else if passed >= DURABLE_LOG_QUIET_WINDOW {
            self.window_bytes = [self.window_bytes[1], 0];
            self.window_began = Some(began + DURABLE_LOG_QUIET_WINDOW);
        }
        self.window_bytes[1] += appended;
        self.window_bytes.iter().sum()
    }
}

impl State {
    fn run(mut self, mut batches: Receiver<Batch>) -> Result<(), WriteError> {
        let mut waiting = Vec::new();
        let mut housekeeping = Housekeeping::default();
        while let Some(idle) = crate::durable::drain::next_batches(&mut batches, &mut waiting) {
            let (ticket, ops, appended) = self.write(&mut waiting)?;
            if self.mode != SyncMode::None && ops > 0 {
                self.store.sync()?;
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            }
            self.synced.publish(ticket);
            if housekeeping.after_write(&mut self.store, idle, appended, Instant::now())? {
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A clean close: everything synced, the dead bytes dropped.
        self.store.sync()?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let mut steps = self.store.index.segments().count();
        while self.store.wants_compaction(false) && steps > 0 {
            self.store.compact_step()?;
            steps -= 1;
        }
        Ok(())
    }

    /// Encodes the ops of `batches` (emptied) into one group and appends
    /// it; returns the highest ticket, how many ops were written and the
    /// bytes appended.
    fn write(&mut self, batches: &mut Vec<Batch>) -> Result<(Ticket, u64, u64), WriteError> {
        let mut group = Group::in_buffer(std::mem::take(&mut self.buffer));
        let (ticket, ops) =
            crate::durable::drain::apply_ops(batches, |op| self.apply(&mut group, op))?;
        self.buffer = self.store.write(group)?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(ops, Ordering::Relaxed);
        Ok((ticket, ops, self.buffer.len() as u64))
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
            Op::PutDeliveryState {
                client,
                epoch,
                seq,
                state,
            } => {
                // Six bytes after the delivery's record; nothing if the
                // delivery is not stored (its put was cancelled or fenced).
                if self.admit(&client, epoch) && self.store.index.delivery(&client, seq).is_some() {
                    let state = super::state::encode(state);
                    self.store
                        .record(group, Kind::DeliveryState, &client, seq, &state);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Busy while more than `DURABLE_LOG_QUIET_BYTES` were appended in the
    /// current and previous windows, quiet two windows later. Fails if the
    /// windows never slide (a writer busy forever never compacts a drained
    /// store down to its baseline) or forget too early.
    #[test]
    fn a_writer_is_busy_while_it_appended_a_lot_lately() {
        let mut h = Housekeeping::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(h.count(600 << 10, t0), 600 << 10);
        assert!(h.count(600 << 10, t0 + ms(500)) > DURABLE_LOG_QUIET_BYTES);
        // The next window still counts the previous one.
        assert_eq!(h.count(0, t0 + ms(1200)), 1200 << 10);
        // Two windows on: quiet.
        assert_eq!(h.count(0, t0 + ms(2300)), 0);
        assert_eq!(h.count(10, t0 + ms(5000)), 10);
    }
}
