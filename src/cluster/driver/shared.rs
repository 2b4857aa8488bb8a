//! Shared groups in the driver's forwarding (docs/clustering.md, "Shared
//! subscriptions"): a publisher's shard picked a member location on
//! another node for a group; that node gets one `Forward` with
//! `shared = Some(group)` for it, beside (not instead of) an ordinary
//! `Forward` if it also has ordinary subscribers. A receiving node turns a
//! valid target back into a `SharedKey` for its shards.

use std::collections::BTreeMap;

use crate::cluster::logic::proto::SharedTarget;
use crate::codec::ByteStr;
use crate::router::location::NodeId;
use crate::router::topic::parse_shared;
use crate::router::SharedKey;

/// The frames one publish becomes, per node in ascending order: `None` for
/// the node's own routing (ordinary subscribers), `Some` for one member of
/// a group there. A QoS 1/2 publisher waits for the *last* frame of each
/// node: acknowledgements of one data stream are cumulative, so the last
/// one acknowledged means all of that node's frames are queued.
pub(super) fn forward_plan(
    nodes: &[NodeId],
    shared: Vec<(NodeId, SharedKey)>,
) -> BTreeMap<NodeId, Vec<Option<SharedTarget>>> {
    let mut plan: BTreeMap<NodeId, Vec<Option<SharedTarget>>> = BTreeMap::new();
    for &node in nodes {
        plan.entry(node).or_default().push(None);
    }
    for (node, key) in shared {
        plan.entry(node).or_default().push(Some(SharedTarget {
            group: key.group.to_string(),
            filter: key.filter.to_string(),
        }));
    }
    plan
}

/// A peer's shared target as a key, if it names a valid group and filter
/// (what a SUBSCRIBE of `$share/{group}/{filter}` would accept).
pub(super) fn shared_key_of(target: &SharedTarget) -> Option<SharedKey> {
    let raw = format!("$share/{}/{}", target.group, target.filter);
    match parse_shared(&raw) {
        Ok(Some(s)) if s.group == target.group && s.filter == target.filter => Some(SharedKey {
            group: ByteStr::from(target.group.as_str()),
            filter: ByteStr::from(target.filter.as_str()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, filter: &str) -> SharedKey {
        SharedKey {
            group: ByteStr::from(group),
            filter: ByteStr::from(filter),
        }
    }

    #[test]
    fn plan_groups_frames_per_node_ordinary_first() {
        let plan = forward_plan(
            &[NodeId(3), NodeId(2)],
            vec![(NodeId(2), key("g", "t/#")), (NodeId(4), key("h", "t/+"))],
        );
        let nodes: Vec<NodeId> = plan.keys().copied().collect();
        assert_eq!(nodes, [NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(plan[&NodeId(2)].len(), 2);
        assert_eq!(plan[&NodeId(2)][0], None);
        assert_eq!(
            plan[&NodeId(2)][1].as_ref().map(|t| t.group.as_str()),
            Some("g")
        );
        assert_eq!(plan[&NodeId(3)], [None]);
        assert_eq!(
            plan[&NodeId(4)][0].as_ref().map(|t| t.filter.as_str()),
            Some("t/+")
        );
    }

    #[test]
    fn only_valid_targets_become_keys() {
        let t = |group: &str, filter: &str| SharedTarget {
            group: group.into(),
            filter: filter.into(),
        };
        assert_eq!(shared_key_of(&t("g", "a/#")), Some(key("g", "a/#")));
        for (group, filter) in [
            ("", "a"),
            ("g+", "a"),
            ("g/x", "a"),
            ("g", "a/#/b"),
            ("g", ""),
        ] {
            assert_eq!(
                shared_key_of(&t(group, filter)),
                None,
                "{group:?} {filter:?}"
            );
        }
    }
}
