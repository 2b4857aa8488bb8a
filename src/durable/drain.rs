//! What the builtin engines' writers share: taking the batches waiting in
//! their channel, and walking their ops in order without the deliveries
//! put and removed within them (`op::cancelled`).

use tokio::sync::mpsc::Receiver;

use super::{Batch, Op, Ticket};
use crate::limits::DURABLE_BATCHES_QUEUED_MAX;

/// Waits for a batch, then takes every batch waiting (up to the channel's
/// bound) into `waiting`. `None` once the channel is closed and drained
/// (the shard dropped its handle); else whether the channel was left
/// empty (the writer is idle after this write: time for housekeeping).
pub fn next_batches(batches: &mut Receiver<Batch>, waiting: &mut Vec<Batch>) -> Option<bool> {
    waiting.push(batches.blocking_recv()?);
    while waiting.len() < DURABLE_BATCHES_QUEUED_MAX {
        match batches.try_recv() {
            Ok(batch) => waiting.push(batch),
            Err(_) => return Some(true),
        }
    }
    Some(false)
}

/// Hands `apply` every op of `batches` (emptied) in order but those that
/// cancel; returns the highest ticket and how many ops were applied.
pub fn apply_ops<E>(
    batches: &mut Vec<Batch>,
    mut apply: impl FnMut(Op) -> Result<(), E>,
) -> Result<(Ticket, u64), E> {
    let mut ticket = 0;
    let mut ops = 0;
    let skip = super::op::cancelled(batches);
    for (b, batch) in batches.drain(..).enumerate() {
        ticket = ticket.max(batch.ticket);
        for (o, op) in batch.ops.into_iter().enumerate() {
            if skip.contains(&(b, o)) {
                continue;
            }
            ops += 1;
            apply(op)?;
        }
    }
    Ok((ticket, ops))
}
