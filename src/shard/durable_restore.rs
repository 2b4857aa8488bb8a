//! Restore at start (ADR 0007, "Restore"): the sessions this shard's store
//! held become offline parked sessions here, registered at their homes,
//! routed, with their wills and expiry on the wall clock; the retained
//! messages of every store go into this shard's retained store. Runs
//! before the shard accepts connections.

use std::rc::Rc;
use std::sync::Arc;

use crate::codec::ByteStr;
use crate::durable::StoredSession;
use crate::session::lifecycle::expiry_deadline;
use crate::session::snapshot::{MessageSnapshot, SessionSnapshot, SnapshotError, WallClock};

use super::sessions::{Parked, Slot};
use super::state::Shard;

/// A stored session as a snapshot (`durable::record::session_snapshot`).
pub fn snapshot_of(stored: StoredSession) -> SessionSnapshot {
    crate::durable::record::session_snapshot(stored.meta, stored.deliveries)
}

impl Shard {
    /// Parks every stored session here and loads the retained messages.
    /// A record that is not a valid session is refused with the client id
    /// and why (the store validated its bytes; this checks the session's
    /// rules, `SessionSnapshot::into_session`).
    pub async fn restore_durable(
        self: &Rc<Self>,
        sessions: Vec<StoredSession>,
        retained: &[(String, MessageSnapshot)],
    ) -> Result<(), String> {
        let clock = WallClock::now();
        for (topic, message) in retained {
            let mut message = message
                .clone()
                .into_message(&clock)
                .map_err(|e| format!("stored retained message on {topic:?}: {e}"))?;
            // Not stored (`DeliverySnapshot` carries ids, the retained
            // record does not): a new one, as for a message routed here.
            message.id = Some(self.message_ids.next());
            let topic = ByteStr::from(topic.as_str());
            self.routes.set_retained(&topic, Some(Arc::new(message)));
        }
        let restored = sessions.len();
        for stored in sessions {
            let epoch = stored.meta.epoch;
            let client = stored.meta.client_id.clone();
            let (mut session, expires_at, will) = snapshot_of(stored)
                .into_session(&clock)
                .map_err(|e: SnapshotError| format!("stored session of client {client:?}: {e}"))?;
            // Online at the crash: its disconnect was never written, so its
            // expiry counts from the restore.
            let expires_at =
                expires_at.or_else(|| expiry_deadline(clock.instant, session.expiry_interval_s()));
            session.make_durable(epoch);
            let client_id = ByteStr::from(client.as_str());
            self.claim(&client_id).await;
            self.subscribe_session(&session).await;
            self.sessions.insert(
                client_id.as_str(),
                Slot::Offline(Box::new(Parked {
                    session,
                    expires_at,
                })),
            );
            self.claim_done(&client_id).await;
            if let Some((w, due)) = will {
                self.schedule_will(&client_id, Arc::new(w), due);
            }
        }
        tracing::info!(
            shard = self.id,
            sessions = restored,
            retained = retained.len(),
            "durable sessions restored"
        );
        Ok(())
    }
}
