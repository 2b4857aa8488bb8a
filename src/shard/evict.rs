//! What node evacuation and rebalance (`src/rebalance`) ask of a shard:
//! its counts, and disconnecting some of its clients with a reason and a
//! Server Reference while their sessions stay for their expiry interval.

use super::sessions::Slot;
use super::state::Shard;
use crate::codec::{ByteStr, ReasonCode};
use std::rc::Rc;

/// What one shard holds, for an evacuation's or a rebalance's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldCounts {
    /// MQTT connections past CONNECT.
    pub connected: u64,
    /// Sessions of any kind (online, offline, moving).
    pub sessions: u64,
    /// Sessions without a connection.
    pub disconnected_sessions: u64,
}

impl Shard {
    pub(super) fn held_counts(&self) -> HeldCounts {
        let disconnected = self.sessions.view(|slots| {
            slots
                .values()
                .filter(|s| matches!(s, Slot::Offline(_)))
                .count()
        });
        HeldCounts {
            connected: self.sessions.connections() as u64,
            sessions: self.sessions.len() as u64,
            disconnected_sessions: disconnected as u64,
        }
    }

    /// Disconnects up to `count` connected clients not already closing;
    /// returns how many it started to disconnect.
    pub(super) fn evict_connections(
        self: &Rc<Self>,
        count: u64,
        reason: ReasonCode,
        server_reference: Option<ByteStr>,
    ) -> u64 {
        let mut evicted = 0;
        for handle in self.sessions.online_handles() {
            if evicted == count {
                break;
            }
            if handle.closing.get() || handle.conn.borrow().is_closed() {
                continue;
            }
            handle
                .conn
                .borrow_mut()
                .evict(reason, server_reference.clone());
            self.drain_sync_actions(&handle);
            handle.request_close();
            evicted += 1;
        }
        if evicted > 0 {
            tracing::debug!(shard = self.id, evicted, reason = ?reason, "clients evicted");
        }
        evicted
    }
}
