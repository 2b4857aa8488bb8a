//! A client id's home: the core node that serves its claims.
//!
//! Rendezvous (highest random weight) hashing: every running core node
//! gets a score for the id and the highest wins. When a node leaves, only
//! the ids it was home of move (each to its own next-best node); when one
//! joins, only the ids it now wins move to it, about `1/n` of them. The
//! score is a hash fixed in code (FNV-1a 64, then a 64-bit finaliser so
//! nearby inputs spread), the same on every node and version, unlike std's
//! seeded hashers. Replicants never home an id: they hold no coordination
//! state (docs/adr/0001-cluster.md, "Home").

use std::collections::BTreeSet;

use crate::router::location::NodeId;

/// What a node is for the cluster's coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Core,
    Replicant,
}

/// The score of `node` for `client_id`.
pub fn score(node: NodeId, client_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.0.to_le_bytes().iter().chain(client_id.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits mix poorly on short inputs.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The running core nodes, as one node sees them.
#[derive(Debug, Clone, Default)]
pub struct Homes {
    cores: BTreeSet<NodeId>,
}

impl Homes {
    pub fn new() -> Homes {
        Homes::default()
    }

    /// A node is running: only core nodes become homes.
    pub fn handle_member_up(&mut self, node: NodeId, role: Role) {
        if role == Role::Core {
            self.cores.insert(node);
        }
    }

    pub fn handle_member_down(&mut self, node: NodeId) {
        self.cores.remove(&node);
    }

    /// The id's home, `None` while no core node is known.
    /// `O(core nodes)`.
    pub fn home_of(&self, client_id: &str) -> Option<NodeId> {
        self.cores
            .iter()
            .copied()
            .max_by_key(|&node| (score(node, client_id), node))
    }

    pub fn cores(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.cores.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn homes(nodes: &[u32]) -> Homes {
        let mut h = Homes::new();
        for &n in nodes {
            h.handle_member_up(NodeId(n), Role::Core);
        }
        h
    }

    fn ids() -> Vec<String> {
        (0..10_000).map(|i| format!("client-{i}")).collect()
    }

    /// Part of what nodes agree on: must not change between versions.
    #[test]
    fn the_score_is_fixed_by_its_definition() {
        assert_eq!(score(NodeId(1), "a"), score(NodeId(1), "a"));
        assert_ne!(score(NodeId(1), "a"), score(NodeId(2), "a"));
        // Computed apart from this code (FNV-1a 64 of 4 zero bytes, splitmix64
        // finaliser, in Python).
        assert_eq!(score(NodeId(0), ""), 0xaca6_d6b5_4be3_ed05);
    }

    #[test]
    fn no_core_no_home_and_replicants_never_home() {
        let mut h = Homes::new();
        assert_eq!(h.home_of("x"), None);
        h.handle_member_up(NodeId(5), Role::Replicant);
        assert_eq!(h.home_of("x"), None);
        h.handle_member_up(NodeId(6), Role::Core);
        assert!(ids().iter().all(|id| h.home_of(id) == Some(NodeId(6))));
    }

    #[test]
    fn homes_spread_evenly() {
        let h = homes(&[10, 20, 30, 40, 50]);
        let mut counts = std::collections::BTreeMap::new();
        for id in ids() {
            *counts.entry(h.home_of(&id).unwrap()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 5);
        for (&node, &n) in &counts {
            assert!((1_600..=2_400).contains(&n), "{node}: {n} of 10000");
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_ids() {
        let before = homes(&[10, 20, 30, 40, 50]);
        let mut after = before.clone();
        after.handle_member_down(NodeId(30));
        for id in ids() {
            let (b, a) = (before.home_of(&id).unwrap(), after.home_of(&id).unwrap());
            if b != NodeId(30) {
                assert_eq!(a, b, "{id} moved though its home stayed");
            } else {
                assert_ne!(a, NodeId(30));
            }
        }
    }

    #[test]
    fn a_node_joining_takes_about_its_share_and_nothing_else_moves() {
        let before = homes(&[10, 20, 30, 40]);
        let mut after = before.clone();
        after.handle_member_up(NodeId(50), Role::Core);
        let mut moved = 0;
        for id in ids() {
            let (b, a) = (before.home_of(&id).unwrap(), after.home_of(&id).unwrap());
            if a != b {
                assert_eq!(a, NodeId(50), "{id} moved between old nodes");
                moved += 1;
            }
        }
        assert!((1_600..=2_400).contains(&moved), "{moved} of 10000 moved");
    }
}
