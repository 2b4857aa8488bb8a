//! The invariants, checked after every step (see the module doc).

use std::collections::{BTreeMap, BTreeSet};

use super::super::proto::MessageId;
use super::world::{self, Expectation};
use super::{Sim, DELIVERY_DEADLINE_MS, QUIET_MS, SETTLE_MS};
use crate::limits::TAKEOVER_LINGER_MS;
use crate::router::location::NodeId;
use crate::router::topic::matches;

impl Sim {
    /// Records the deliveries message `id` (published on `from`) owes.
    pub(super) fn expect(&mut self, id: MessageId, from: NodeId) {
        let topic = self.world.messages[&id].topic.clone();
        let mut seen = BTreeSet::new();
        let mut owed = Vec::new();
        for node in self.nodes.values().flatten() {
            for s in node.sessions.values() {
                if !seen.insert(s.incarnation) {
                    continue;
                }
                for (filter, sub) in &s.subs {
                    let Some(acked) = &sub.acked else { continue };
                    if matches(filter, &topic)
                        && acked.fault_gen == self.world.fault_gen
                        && acked.at_ms >= self.world.last_fault_ms + QUIET_MS
                        && acked.view.contains(&from)
                        && !acked.out_of_sync.contains(&from)
                    {
                        owed.push(Expectation {
                            id,
                            incarnation: s.incarnation,
                            filter: filter.clone(),
                            sub_id: sub.id,
                            due_ms: self.world.now_ms + DELIVERY_DEADLINE_MS,
                            fault_gen: self.world.fault_gen,
                        });
                    }
                }
            }
        }
        self.world.expectations.extend(owed);
    }

    pub(super) fn check(&mut self) -> Option<String> {
        if let Some(v) = self.world.violations.first() {
            return Some(v.clone());
        }
        // No route to a node declared down.
        for node in self.nodes.values().flatten() {
            for peer in node.remote.keys() {
                if !node.view.contains(peer) {
                    return Some(format!(
                        "{} keeps routes to {peer}, which it declared down",
                        node.id
                    ));
                }
            }
        }
        // One owner per client id per component, once settled.
        let settled =
            self.schedule.is_empty() && self.world.now_ms > self.world.last_fault_ms + SETTLE_MS;
        if settled {
            let mut owners: BTreeMap<(u8, &str), Vec<NodeId>> = BTreeMap::new();
            for node in self.nodes.values().flatten() {
                for (client, s) in &node.sessions {
                    if !s.moving_out {
                        owners
                            .entry((self.side[&node.id], client))
                            .or_default()
                            .push(node.id);
                    }
                }
            }
            if let Some(((_, client), nodes)) = owners.iter().find(|(_, n)| n.len() > 1) {
                return Some(format!("{client} is owned by {nodes:?} in one component"));
            }
        }
        self.check_deliveries()
    }

    fn check_deliveries(&mut self) -> Option<String> {
        let now = self.world.now_ms;
        let (due, later): (Vec<Expectation>, Vec<Expectation>) =
            std::mem::take(&mut self.world.expectations)
                .into_iter()
                .partition(|e| e.due_ms <= now);
        self.world.expectations = later;
        for mut e in due {
            if e.fault_gen != self.world.fault_gen || self.world.dropped.contains(&e.id) {
                continue;
            }
            let holders: Vec<&world::SessionModel> = self
                .nodes
                .values()
                .flatten()
                .filter_map(|n| n.sessions.values().find(|s| s.incarnation == e.incarnation))
                .collect();
            let settled: Vec<&&world::SessionModel> = holders
                .iter()
                .filter(|s| !s.moving_out && !s.importing)
                .collect();
            let Some(s) = settled.first() else {
                if !holders.is_empty() {
                    e.due_ms = now + TAKEOVER_LINGER_MS; // mid-move: look again
                    self.world.expectations.push(e);
                }
                continue; // the session ended
            };
            if s.subs.get(&e.filter).is_none_or(|sub| sub.id != e.sub_id) {
                continue; // unsubscribed since
            }
            if !s.received.contains(&e.id) {
                let info = &self.world.messages[&e.id];
                return Some(format!(
                    "SUBACK implies delivery: message {:?} ({} qos {}) published on {} at {} ms \
                     never reached session {} ({}) at {}",
                    e.id,
                    info.topic,
                    info.qos,
                    info.node,
                    info.published_at_ms,
                    e.incarnation,
                    e.filter,
                    s.at
                ));
            }
            self.world.expectations_met += 1;
        }
        None
    }
}
