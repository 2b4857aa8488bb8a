//! The client-id registry of one home shard, as plain data: which location
//! (node and shard) owns each id homed here, and the claims waiting while a
//! connect of the id is in progress. The shard carries out the answers
//! (`shard/takeover.rs`). Owners and claimants are `Location`s so a
//! session on another node can be named (docs/adr/0001-cluster.md); on a
//! single node they are all this node's shards.
//!
//! One connect per id at a time: a claim is answered only once the previous
//! claimant's connection is in place (`claim_done`). A connect thus always
//! takes the session over from a settled owner. Answering claims at once let
//! a connect still acquiring be asked for the session by a later one while
//! it waited for that later one's shard: the two waited for each other, and
//! neither CONNECT was ever answered (issue 11, item 8).

use super::client_key::{shared_key, ClientKey};
use crate::codec::ByteStr;
use crate::router::Location;
use ahash::AHashMap;
use std::collections::VecDeque;

#[derive(Default)]
pub struct Registry {
    /// Where the session of each id homed here is.
    owners: AHashMap<ClientKey, Location>,
    /// Ids with a connect in progress (claimed, no `claim_done` yet), and
    /// the claims waiting for it, in arrival order. Only while connecting:
    /// the per-session `owners` entry stays 16 bytes.
    claiming: AHashMap<ByteStr, VecDeque<(Location, u64)>>,
}

/// A claim to answer now: `to` (its `token`) owns the id; `previous`
/// owned it before and has the session, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub to: Location,
    pub token: u64,
    pub previous: Option<Location>,
}

impl Registry {
    /// `from` claims `client_id`: answered now, unless another connect of
    /// the id is in progress (then at its `claim_done`).
    pub fn claim(&mut self, from: Location, client_id: &ByteStr, token: u64) -> Option<Answer> {
        if let Some(waiting) = self.claiming.get_mut(client_id) {
            waiting.push_back((from, token));
            return None;
        }
        self.claiming.insert(client_id.clone(), VecDeque::new());
        let previous = self.owners.insert(client_id.as_str().into(), from);
        Some(Answer {
            to: from,
            token,
            previous,
        })
    }

    /// The connect in progress for `client_id` is in place: the next
    /// waiting claim, if any, takes over from it.
    pub fn claim_done(&mut self, client_id: &ByteStr) -> Option<Answer> {
        let next = self.claiming.get_mut(client_id).and_then(|w| w.pop_front());
        let Some((to, token)) = next else {
            self.claiming.remove(client_id);
            return None;
        };
        let previous = self.owners.insert(client_id.as_str().into(), to);
        Some(Answer {
            to,
            token,
            previous,
        })
    }

    /// `from` no longer holds a session for `client_id`. Ignored while a
    /// connect of `from` holds the claim: that release is its previous
    /// connection's, which ended meanwhile.
    pub fn release(&mut self, from: Location, client_id: &ByteStr) {
        if self.owners.get(client_id.as_str()) == Some(&from)
            && !self.claiming.contains_key(client_id)
        {
            self.owners.remove(client_id.as_str());
        }
    }

    /// A key for `client_id` in another registry map (the shard's slots, `Sessions`):
    /// this map's own when the id is homed here, so both maps share one
    /// allocation (docs/performance.md, idle connections round 5).
    pub fn shared_key(&self, client_id: &str) -> ClientKey {
        shared_key(&self.owners, client_id)
    }

    #[cfg(test)]
    pub fn owner(&self, client_id: &str) -> Option<Location> {
        self.owners.get(client_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::NodeId;

    /// Shard `shard` of this node.
    fn at(shard: u16) -> Location {
        Location::new(NodeId(1), shard)
    }

    fn answer(to: u16, token: u64, previous: Option<u16>) -> Option<Answer> {
        Some(Answer {
            to: at(to),
            token,
            previous: previous.map(at),
        })
    }

    /// Issue 11 item 8: X connected on shard 1; Y (shard 0) and Z (shard 1)
    /// claim at once. Answered at once, Z's claim named Y's shard while Y
    /// was still acquiring from Z's: each waited for the other. Now Z waits
    /// until Y is in place, and takes over from it.
    #[test]
    fn claims_of_one_id_are_answered_one_at_a_time_in_order() {
        let id = ByteStr::from("c");
        let mut r = Registry::default();
        assert_eq!(r.claim(at(1), &id, 10), answer(1, 10, None));
        assert_eq!(r.claim_done(&id), None);
        assert_eq!(r.claim(at(0), &id, 20), answer(0, 20, Some(1)));
        assert_eq!(r.claim(at(1), &id, 30), None);
        assert_eq!(r.claim(at(0), &id, 40), None);
        assert_eq!(r.claim_done(&id), answer(1, 30, Some(0)));
        assert_eq!(r.claim_done(&id), answer(0, 40, Some(1)));
        assert_eq!(r.claim_done(&id), None);
        assert!(r.claiming.is_empty());
        assert_eq!(r.owner("c"), Some(at(0)));
        // Other ids are not held up.
        assert_eq!(r.claim(at(1), &ByteStr::from("d"), 50), answer(1, 50, None));
    }

    #[test]
    fn release_is_ignored_while_the_releasing_shard_holds_the_claim() {
        let id = ByteStr::from("c");
        let mut r = Registry::default();
        r.claim(at(1), &id, 1);
        r.claim_done(&id);
        // A new connect on shard 1 claims; its previous connection's session
        // ends meanwhile and is released: the new one keeps the id.
        r.claim(at(1), &id, 2);
        r.release(at(1), &id);
        assert_eq!(r.owner("c"), Some(at(1)));
        r.claim_done(&id);
        // Another shard's release changes nothing.
        r.release(at(0), &id);
        assert_eq!(r.owner("c"), Some(at(1)));
        r.release(at(1), &id);
        assert_eq!(r.owner("c"), None);
    }

    /// A claim from another node's shard is served like a local one: the
    /// answer names where the session was, node included, for a takeover
    /// across nodes (docs/adr/0001-cluster.md).
    #[test]
    fn owners_can_be_on_another_node() {
        let id = ByteStr::from("c");
        let there = Location::new(NodeId(2), 3);
        let mut r = Registry::default();
        r.claim(at(0), &id, 1);
        r.claim_done(&id);
        assert_eq!(
            r.claim(there, &id, 2),
            Some(Answer {
                to: there,
                token: 2,
                previous: Some(at(0)),
            })
        );
        r.claim_done(&id);
        // Shard 3 of this node is not shard 3 of the other node.
        r.release(at(3), &id);
        assert_eq!(r.owner("c"), Some(there));
        r.release(there, &id);
        assert_eq!(r.owner("c"), None);
    }
}
