//! The shard's side of the session lifecycle (`session::lifecycle`): every
//! transition goes through `Shard::with_lifecycle`, which then follows the
//! events it emitted. Today the follower is the log; the durable store and
//! the cluster will follow the same events.

use super::state::Shard;
use crate::session::Lifecycle;

impl Shard {
    /// Runs one transition on this shard's lifecycle, then follows its
    /// events. Never called with the lifecycle already borrowed: the
    /// transitions do no I/O and call nothing back.
    pub fn with_lifecycle<R>(&self, transition: impl FnOnce(&mut Lifecycle) -> R) -> R {
        let mut lifecycle = self.lifecycle.borrow_mut();
        let result = transition(&mut lifecycle);
        while let Some(event) = lifecycle.poll_event() {
            tracing::debug!(
                shard = self.id,
                client_id = %event.client_id(),
                event = event.kind(),
                "session lifecycle"
            );
        }
        result
    }
}
