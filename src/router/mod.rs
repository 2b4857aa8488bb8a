//! Routing: topic filters, the subscription trie, retained messages and
//! shared-subscription picks. Pure data structures; shards own one each.
pub mod topic;
