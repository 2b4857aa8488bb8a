//! Routing: topic filters, the subscription trie, retained messages and
//! shared-subscription picks. Pure data structures; shards own one each.
//!
//! - `topic`: validation, `$share/` parsing and single filter/topic matching.
//! - `trie`: `TopicTrie<V>`, filter -> value with matching by topic name
//!   (exact filters in a hash map, wildcard filters in a level tree).
//! - `interest`: the interest protocol's sequence numbers per origin
//!   (`InterestClock`) and the marks of added interest (`InterestMarks`).
//! - `location`: `Location { node, shard }`, where a session, subscriber or
//!   route lives; `NodeId`, derived from `node.name`.
//! - `retained`: `RetainedStore<T>`, topic -> retained message with
//!   matching by filter, capped.
//! - `routing`: `Router`, one shard's subscriptions plus its view of every
//!   shard's interest, kept current by `InterestChange` messages; `route`
//!   picks target shards, `local_recipients` / `pick_shared` the sessions.
//!   Its parts: `route` (the types it takes and gives), `filter` (the
//!   node-wide interest in one filter, shared-group cursors), `local` (this
//!   shard's subscribers, group round robin, merging matches per client).
//! - `shared`: `mqtt.shared_subscription_strategy` and the shared-group
//!   picks it makes (a location cluster-wide, then a member there).
//! - `sim` (tests): seeded simulation of several routers against a naive model.
//! - `sim_interest` (tests): seeded simulation of late interest changes and
//!   the publishes routed meanwhile.
mod children;
mod filter;
pub mod interest;
mod local;
pub mod location;
pub mod retained;
mod route;
pub mod routing;
pub mod shared;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_interest;
pub mod topic;
pub mod trie;

pub use interest::{InterestClock, InterestMarks, NumberedChange};
pub use retained::{RetainedFull, RetainedStore};
pub use routing::{
    InterestChange, Location, NodeId, Recipient, RecipientRef, Route, Router, ShardId, SharedKey,
    SharedPick, SubscribeOutcome, SubscriptionIds, UnsubscribeOutcome,
};
pub use shared::SharedStrategy;
pub use trie::TopicTrie;
