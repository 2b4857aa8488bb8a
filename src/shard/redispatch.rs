//! Shared subscriptions when a member goes (MQTT 5.0 section 4.8.2): a
//! session that ends hands its undelivered shared QoS 1/2 messages back to
//! their groups, and a pick that lands on a member whose session is gone
//! picks another one. The session side (which messages) is
//! `Session::take_shared_undelivered`.

use std::rc::Rc;

use super::state::Shard;
use crate::router::{SharedKey, SharedPick};
use crate::session::Delivery;

impl Shard {
    /// The next local member of the group `key`. A member the router still
    /// lists whose session is gone from the slots (it is ending) is passed
    /// over for the next one, at most once per local member; the last pick
    /// is returned whatever it is (its delivery is then counted as without
    /// recipient). `None`: the group has no member here.
    pub(super) fn pick_shared_member(&self, key: &SharedKey) -> Option<SharedPick> {
        let mut picks = 0;
        loop {
            let pick = self.routes.pick_shared(key)?;
            picks += 1;
            if picks < pick.members && !self.sessions.contains(pick.recipient.client.as_str()) {
                continue;
            }
            return Some(pick);
        }
    }

    /// Hands each message an ended session did not deliver to another
    /// member of its group, through the usual shared delivery (this
    /// shard's members first, then the next shards'); with no member left
    /// anywhere it is dropped and counted as a message without recipient.
    /// Call after the session's subscriptions left the router, so that its
    /// own client is not picked again.
    pub async fn redispatch_shared(self: &Rc<Self>, undelivered: Vec<Delivery>) {
        if undelivered.is_empty() {
            return;
        }
        tracing::debug!(
            shard = self.id,
            messages = undelivered.len(),
            "redispatching an ended session's shared messages"
        );
        for d in undelivered {
            let Some(key) = d.shared else {
                continue;
            };
            self.deliver_shared(d.message, SharedKey::clone(&key), 0, self.id)
                .await;
        }
    }
}
