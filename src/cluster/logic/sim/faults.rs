//! Faults and membership: crashes and restarts, partitions and heals,
//! link breaks, and the oracle's announcements of them.

use std::collections::BTreeSet;

use super::node::SimNode;
use super::{Scheduled, Sim, DETECT_MS, JOIN_MS};
use crate::router::location::NodeId;

impl Sim {
    pub(super) fn membership(&mut self, what: Scheduled) {
        match what {
            Scheduled::Down { at, peer } => self.with_node(at, |n, cx| n.member_down(peer, cx)),
            Scheduled::Up { at, peer } => {
                let alive = self.nodes.get(&peer).is_some_and(|n| n.is_some());
                if alive && self.net.is_up(at, peer) {
                    self.with_node(at, |n, cx| n.member_up(peer, cx));
                }
            }
            Scheduled::Restart { node } => {
                let epoch = self.world.now_ms;
                self.nodes.insert(
                    node,
                    Some(SimNode::new(
                        node,
                        epoch,
                        self.config.shards,
                        self.config.sabotage,
                    )),
                );
                self.world.fault();
                let peers: Vec<NodeId> = self
                    .alive()
                    .into_iter()
                    .filter(|&p| p != node && self.side[&p] == self.side[&node])
                    .collect();
                for p in peers {
                    self.net
                        .connect(&mut self.rng, node, p, self.config.latency_max_ms);
                    let (a, b) = (
                        self.rng.u64(JOIN_MS.0..=JOIN_MS.1),
                        self.rng.u64(JOIN_MS.0..=JOIN_MS.1),
                    );
                    self.at(self.world.now_ms + a, Scheduled::Up { at: node, peer: p });
                    self.at(self.world.now_ms + b, Scheduled::Up { at: p, peer: node });
                }
            }
        }
    }

    pub(super) fn fault(&mut self) {
        self.faults += 1;
        self.world.fault();
        let alive = self.alive();
        let now = self.world.now_ms;
        let partitioned = self.side.values().any(|&s| s != 0);
        match self.rng.u32(0..4) {
            // Crash a node (never the last one), restart it later.
            0 if alive.len() > 1 => {
                let x = alive[self.rng.usize(..alive.len())];
                self.world.log(format_args!("fault crash {x}"));
                self.nodes.insert(x, None);
                for &p in &self.ids {
                    self.net.break_link(x, p);
                }
                for &p in &alive {
                    if p != x && self.side[&p] == self.side[&x] {
                        let d = self.rng.u64(DETECT_MS.0..=DETECT_MS.1);
                        self.at(now + d, Scheduled::Down { at: p, peer: x });
                    }
                }
                let back = DETECT_MS.1 + self.rng.u64(100..=3_000);
                self.at(now + back, Scheduled::Restart { node: x });
            }
            // Heal a partition.
            1 | 2 if partitioned => {
                self.world.log(format_args!("fault heal"));
                for (i, &a) in alive.iter().enumerate() {
                    for &b in &alive[i + 1..] {
                        if self.side[&a] != self.side[&b] {
                            self.net
                                .connect(&mut self.rng, a, b, self.config.latency_max_ms);
                            let (da, db) = (
                                self.rng.u64(JOIN_MS.0..=JOIN_MS.1),
                                self.rng.u64(JOIN_MS.0..=JOIN_MS.1),
                            );
                            self.at(now + da, Scheduled::Up { at: a, peer: b });
                            self.at(now + db, Scheduled::Up { at: b, peer: a });
                        }
                    }
                }
                self.side.values_mut().for_each(|s| *s = 0);
            }
            // Split the cluster in two.
            1 if alive.len() > 1 => {
                let cut: BTreeSet<NodeId> =
                    alive.iter().copied().filter(|_| self.rng.bool()).collect();
                self.world.log(format_args!("fault partition {cut:?}"));
                for &id in &self.ids {
                    self.side.insert(id, u8::from(cut.contains(&id)));
                }
                for (i, &a) in alive.iter().enumerate() {
                    for &b in &alive[i + 1..] {
                        if self.side[&a] != self.side[&b] {
                            self.net.break_link(a, b);
                            let (da, db) = (
                                self.rng.u64(DETECT_MS.0..=DETECT_MS.1),
                                self.rng.u64(DETECT_MS.0..=DETECT_MS.1),
                            );
                            self.at(now + da, Scheduled::Down { at: a, peer: b });
                            self.at(now + db, Scheduled::Down { at: b, peer: a });
                        }
                    }
                }
            }
            // Break one link; it reconnects at once (no membership change).
            _ => {
                let connected: Vec<(NodeId, NodeId)> = alive
                    .iter()
                    .flat_map(|&a| alive.iter().map(move |&b| (a, b)))
                    .filter(|&(a, b)| a < b && self.net.is_up(a, b))
                    .collect();
                if connected.is_empty() {
                    return;
                }
                let (a, b) = connected[self.rng.usize(..connected.len())];
                self.world.log(format_args!("fault link {a} {b}"));
                self.net.break_link(a, b);
                self.with_node(a, |n, cx| n.link_down(b, cx));
                self.with_node(b, |n, cx| n.link_down(a, cx));
                self.net
                    .connect(&mut self.rng, a, b, self.config.latency_max_ms);
                self.with_node(a, |n, cx| n.link_up(b, cx));
                self.with_node(b, |n, cx| n.link_up(a, cx));
            }
        }
    }
}
