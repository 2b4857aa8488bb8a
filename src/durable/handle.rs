//! [`StoreHandle`]: a shard's end of its store, whatever the backend: a
//! bounded channel of [`Batch`]es to the writer and the [`Synced`] ticket
//! the writer publishes. tokio's mpsc works across runtimes: the shard
//! sends from glommio (`send().await` when full: back-pressure, never a
//! drop), the builtin writer receives on its own thread
//! (`blocking_recv`), the Redis writer in its tokio runtime.

use std::sync::Arc;

use super::{Batch, Synced, Ticket};

pub struct StoreHandle {
    pub batches: tokio::sync::mpsc::Sender<Batch>,
    pub synced: Arc<Synced>,
    /// The next ticket this shard gives a batch (tickets start at 1).
    next_ticket: Ticket,
    /// The store takes `Op::PutDeliveryState` (the log engine); the shard
    /// writes whole deliveries otherwise.
    pub takes_states: bool,
}

impl StoreHandle {
    pub fn new(batches: tokio::sync::mpsc::Sender<Batch>, synced: Arc<Synced>) -> StoreHandle {
        StoreHandle {
            batches,
            synced,
            next_ticket: 1,
            takes_states: false,
        }
    }

    /// This store takes `Op::PutDeliveryState`.
    pub fn taking_states(mut self) -> StoreHandle {
        self.takes_states = true;
        self
    }

    /// The ticket the next sealed batch gets: what a change gathered now
    /// waits for.
    pub fn next_ticket(&self) -> Ticket {
        self.next_ticket
    }

    /// Numbers `ops` as the next batch (the caller sends it).
    pub fn seal(&mut self, ops: Vec<super::Op>) -> Batch {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        Batch { ticket, ops }
    }
}
