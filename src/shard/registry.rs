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

use super::client_key::ClientKey;
use crate::codec::ByteStr;
use crate::router::Location;
use ahash::AHashMap;
use std::collections::VecDeque;

/// The registry of the ids homed on the shard at `home`. An id owned by
/// `home` itself has no entry of its own: it is owned there while the shard
/// holds its session (`held_here`, asked of `State::slots` by the caller),
/// so the common case, a client whose session is on its id's home shard,
/// costs the registry nothing (about 28 bytes per session as an `owners`
/// entry; docs/performance.md, "Idle connections after issue 12", round 2).
pub struct Registry {
    home: Location,
    /// Where the session of each id homed here is, when not at `home`.
    owners: AHashMap<ClientKey, Location>,
    /// Ids with a connect in progress (claimed, no `claim_done` yet). Only
    /// while connecting: no per-session entry.
    claiming: AHashMap<ByteStr, Claiming>,
}

/// A connect in progress for an id: who claimed it (its owner meanwhile,
/// `home` included), and the claims waiting for it, in arrival order.
struct Claiming {
    by: Location,
    waiting: VecDeque<(Location, u64)>,
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
    pub fn new(home: Location) -> Registry {
        Registry {
            home,
            owners: AHashMap::new(),
            claiming: AHashMap::new(),
        }
    }

    /// `from` claims `client_id`: answered now, unless another connect of
    /// the id is in progress (then at its `claim_done`). `held_here`: the
    /// home shard holds a session of the id.
    pub fn claim(
        &mut self,
        from: Location,
        client_id: &ByteStr,
        token: u64,
        held_here: bool,
    ) -> Option<Answer> {
        if let Some(c) = self.claiming.get_mut(client_id) {
            c.waiting.push_back((from, token));
            return None;
        }
        let previous = self.owner(client_id.as_str(), held_here);
        self.set_owner(client_id.as_str(), from);
        let claiming = Claiming {
            by: from,
            waiting: VecDeque::new(),
        };
        self.claiming.insert(client_id.clone(), claiming);
        Some(Answer {
            to: from,
            token,
            previous,
        })
    }

    /// The connect in progress for `client_id` is in place: the next
    /// waiting claim, if any, takes over from it.
    pub fn claim_done(&mut self, client_id: &ByteStr) -> Option<Answer> {
        let c = self.claiming.get_mut(client_id)?;
        let Some((to, token)) = c.waiting.pop_front() else {
            self.claiming.remove(client_id);
            return None;
        };
        let previous = std::mem::replace(&mut c.by, to);
        self.set_owner(client_id.as_str(), to);
        Some(Answer {
            to,
            token,
            previous: Some(previous),
        })
    }

    /// `from` no longer holds a session for `client_id`. Ignored while a
    /// connect holds the claim: that release is of a connection that ended
    /// meanwhile. Nothing to do for `home`, whose ownership is its session
    /// (the caller releases after the session left `State::slots`).
    pub fn release(&mut self, from: Location, client_id: &ByteStr) {
        if self.owners.get(client_id.as_str()) == Some(&from)
            && !self.claiming.contains_key(client_id)
        {
            self.owners.remove(client_id.as_str());
        }
    }

    /// Who owns `client_id` when no connect of it is in progress.
    fn owner(&self, client_id: &str, held_here: bool) -> Option<Location> {
        match self.owners.get(client_id) {
            Some(at) => Some(*at),
            None => held_here.then_some(self.home),
        }
    }

    fn set_owner(&mut self, client_id: &str, owner: Location) {
        if owner == self.home {
            self.owners.remove(client_id);
        } else if let Some(at) = self.owners.get_mut(client_id) {
            *at = owner;
        } else {
            self.owners.insert(client_id.into(), owner);
        }
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

    /// The registry homed on shard 0.
    fn home0() -> Registry {
        Registry::new(at(0))
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
        let mut r = home0();
        assert_eq!(r.claim(at(1), &id, 10, false), answer(1, 10, None));
        assert_eq!(r.claim_done(&id), None);
        assert_eq!(r.claim(at(0), &id, 20, false), answer(0, 20, Some(1)));
        assert_eq!(r.claim(at(1), &id, 30, true), None);
        assert_eq!(r.claim(at(0), &id, 40, true), None);
        assert_eq!(r.claim_done(&id), answer(1, 30, Some(0)));
        assert_eq!(r.claim_done(&id), answer(0, 40, Some(1)));
        assert_eq!(r.claim_done(&id), None);
        assert!(r.claiming.is_empty());
        assert_eq!(r.owner("c", true), Some(at(0)));
        // Other ids are not held up.
        assert_eq!(
            r.claim(at(1), &ByteStr::from("d"), 50, false),
            answer(1, 50, None)
        );
    }

    #[test]
    fn release_is_ignored_while_the_releasing_shard_holds_the_claim() {
        let id = ByteStr::from("c");
        let mut r = home0();
        r.claim(at(1), &id, 1, false);
        r.claim_done(&id);
        // A new connect on shard 1 claims; its previous connection's session
        // ends meanwhile and is released: the new one keeps the id.
        r.claim(at(1), &id, 2, false);
        r.release(at(1), &id);
        assert_eq!(r.owner("c", false), Some(at(1)));
        r.claim_done(&id);
        // Another shard's release changes nothing.
        r.release(at(0), &id);
        r.release(at(2), &id);
        assert_eq!(r.owner("c", false), Some(at(1)));
        r.release(at(1), &id);
        assert_eq!(r.owner("c", false), None);
    }

    /// An id whose session is on its home shard has no entry: the home's
    /// session is its ownership. Claims from elsewhere take the session
    /// from the home, and the home takes it back.
    #[test]
    fn ids_owned_by_their_home_take_no_entry() {
        let id = ByteStr::from("c");
        let mut r = home0();
        assert_eq!(r.claim(at(0), &id, 1, false), answer(0, 1, None));
        assert_eq!(r.claim_done(&id), None);
        assert!(r.owners.is_empty() && r.claiming.is_empty());
        // The session is held at home: a claim from shard 1 takes it from there.
        assert_eq!(r.claim(at(1), &id, 2, true), answer(1, 2, Some(0)));
        r.claim_done(&id);
        assert_eq!(r.owner("c", false), Some(at(1)));
        // And back home: the entry goes.
        assert_eq!(r.claim(at(0), &id, 3, false), answer(0, 3, Some(1)));
        r.claim_done(&id);
        assert!(r.owners.is_empty());
        assert_eq!(r.owner("c", true), Some(at(0)));
        // A home's own release is its session leaving `slots`.
        r.release(at(0), &id);
        assert_eq!(r.owner("c", false), None);
        // A local takeover at home: the previous owner is home itself.
        assert_eq!(r.claim(at(0), &id, 4, true), answer(0, 4, Some(0)));
    }

    /// A claim from another node's shard is served like a local one: the
    /// answer names where the session was, node included, for a takeover
    /// across nodes (docs/adr/0001-cluster.md).
    #[test]
    fn owners_can_be_on_another_node() {
        let id = ByteStr::from("c");
        let there = Location::new(NodeId(2), 3);
        let mut r = home0();
        r.claim(at(0), &id, 1, false);
        r.claim_done(&id);
        assert_eq!(
            r.claim(there, &id, 2, true),
            Some(Answer {
                to: there,
                token: 2,
                previous: Some(at(0)),
            })
        );
        r.claim_done(&id);
        // Shard 3 of this node is not shard 3 of the other node.
        r.release(at(3), &id);
        assert_eq!(r.owner("c", false), Some(there));
        r.release(there, &id);
        assert_eq!(r.owner("c", false), None);
    }
}
