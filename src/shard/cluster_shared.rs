//! Shared groups across nodes, the receiving side: a message another node
//! forwarded for one member of a group on this node (`Forward::shared`,
//! docs/clustering.md, "Shared subscriptions"). The publisher's node made
//! the cluster-wide pick; here only a shard of this node is chosen (by the
//! strategy, `Router::pick_shared_on_node`), and the usual node-local
//! shared delivery takes over: a member gone meanwhile passes the message
//! to the next shard of this node, never to another node.

use std::rc::Rc;
use std::sync::Arc;

use super::msg::ShardMsg;
use super::state::Shard;
use crate::router::SharedKey;
use crate::session::Message;

impl Shard {
    /// Delivers `message` to one member of `key` on this node, or counts
    /// it as without recipient if the group has no member here any more
    /// (the publisher's node picked this node before it learned that).
    pub(super) async fn deliver_forwarded_shared(
        self: &Rc<Self>,
        message: Arc<Message>,
        key: SharedKey,
    ) {
        match self.routes.pick_shared_on_node(&key) {
            None => {
                tracing::debug!(
                    group = %key.group,
                    filter = %key.filter,
                    "a message forwarded for a shared group with no member on this node"
                );
                self.routes.count_no_recipient(1);
            }
            Some(shard) if shard == self.id => {
                self.deliver_shared(message, key, 0, self.id).await;
            }
            Some(shard) => {
                self.send(
                    shard,
                    ShardMsg::Shared {
                        message,
                        key,
                        hops: 0,
                    },
                )
                .await;
            }
        }
    }
}
