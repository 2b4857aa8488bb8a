//! Shared subscriptions when a member goes (MQTT 5.0 section 4.8.2): a
//! session that ends hands its undelivered shared QoS 1/2 messages back to
//! their groups, and a pick that lands on a member whose session is gone
//! picks another one. The session side (which messages) is
//! `Session::take_shared_undelivered`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::state::{resolve, ConnHandle, Shard, State};
use crate::router::SharedKey;
use crate::session::{Delivery, Message};

/// The next local member of the group `key` and its delivery of `message`,
/// resolved as `resolve` does (`Some(None)`: queued in a session that is
/// offline or moving, or dropped and counted). A member the router still
/// lists whose session is gone from `slots` (it is ending) is passed over
/// for the next one, at most once per local member. `None`: the group has
/// no member here.
pub(super) fn pick_shared_target(
    st: &mut State,
    message: &Arc<Message>,
    key: &SharedKey,
    moving_len_max: usize,
    now: Instant,
) -> Option<Option<(Rc<ConnHandle>, Delivery)>> {
    let mut picks = 0;
    loop {
        let pick = st.router.pick_shared_member(key)?;
        picks += 1;
        let client = pick.recipient.client.clone();
        if picks < pick.members && !st.slots.contains_key(client.as_str()) {
            continue;
        }
        let d = Delivery::shared(message, pick.recipient, pick.key);
        return Some(resolve(
            &mut st.slots,
            &mut st.dropped_no_recipient,
            moving_len_max,
            &client,
            d,
            now,
        ));
    }
}

impl Shard {
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
