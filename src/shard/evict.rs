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
    /// returns how many it started to disconnect. With several
    /// `references`, each client gets the list rotated by one more than the
    /// last (from `rotation`): clients usually follow the first reference,
    /// so the evicted clients spread over the servers named.
    pub(super) fn evict_connections(
        self: &Rc<Self>,
        count: u64,
        reason: ReasonCode,
        references: &[String],
        rotation: usize,
    ) -> u64 {
        let mut evicted = 0;
        for handle in self.sessions.online_handles() {
            if evicted == count {
                break;
            }
            if handle.closing.get() || handle.conn.borrow().is_closed() {
                continue;
            }
            let server_reference =
                (!references.is_empty()).then(|| rotated(references, rotation + evicted as usize));
            handle.conn.borrow_mut().evict(reason, server_reference);
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

/// `references` from entry `by % len` on, wrapping, space-separated.
fn rotated(references: &[String], by: usize) -> ByteStr {
    let n = references.len();
    let mut out = String::new();
    for k in 0..n {
        if k > 0 {
            out.push(' ');
        }
        out.push_str(&references[(by + k) % n]);
    }
    ByteStr::from(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_rotate() {
        let refs = ["a:1".to_string(), "b:2".to_string(), "c:3".to_string()];
        assert_eq!(super::rotated(&refs, 0).as_str(), "a:1 b:2 c:3");
        assert_eq!(super::rotated(&refs, 4).as_str(), "b:2 c:3 a:1");
        assert_eq!(super::rotated(&refs[..1], 7).as_str(), "a:1");
    }
}
