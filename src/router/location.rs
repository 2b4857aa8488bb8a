//! Where a session, a subscriber or a route lives: a node of the cluster
//! and a shard of that node. Route results, the interest tables and the
//! client-id registry name `Location`s, so a destination can be another
//! node, not only another shard (docs/adr/0001-cluster.md). On a single
//! node every location's node is the local one.

/// Index of a shard (one per core) within a node.
pub type ShardId = u16;

/// A node of the cluster: a stable number derived from its name
/// (`node.name`, `name@host`), the same on every node and across restarts,
/// so a node's routes and owners can be named before any membership
/// exchange. Two names with one id are a configuration error the cluster
/// refuses at join (docs/adr/0001-cluster.md, "Node identity").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// FNV-1a (32 bits) of the node name: fixed by its definition, unlike
    /// std's hashers, so every node and version derives the same id.
    pub fn from_name(name: &str) -> NodeId {
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        NodeId(h)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A shard of a node. 8 bytes, `Copy`: it replaces a bare `ShardId` in the
/// registry's per-session entry without growing it (`shard::state` tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub node: NodeId,
    pub shard: ShardId,
}

impl Location {
    pub fn new(node: NodeId, shard: ShardId) -> Location {
        Location { node, shard }
    }

    /// Whether this is a shard of `node`.
    pub fn is_on(&self, node: NodeId) -> bool {
        self.node == node
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id is part of what nodes exchange: it must not change between
    /// versions or processes (FNV-1a's published test vectors).
    #[test]
    fn node_id_is_fnv1a_of_the_name() {
        assert_eq!(NodeId::from_name(""), NodeId(0x811c_9dc5));
        assert_eq!(NodeId::from_name("a"), NodeId(0xe40c_292c));
        assert_eq!(NodeId::from_name("foobar"), NodeId(0xbf9c_f968));
        assert_ne!(
            NodeId::from_name("ringmq@127.0.0.1"),
            NodeId::from_name("ringmq@127.0.0.2")
        );
    }

    #[test]
    fn a_location_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Location>(), 8);
        let here = Location::new(NodeId(7), 3);
        assert!(here.is_on(NodeId(7)) && !here.is_on(NodeId(8)));
        assert_eq!(here.to_string(), "00000007/3");
    }
}
