//! Claims of client ids, served at the id's home (`homes`).
//!
//! A connect claims its client id at the home, which answers with the
//! previous owner's `Location` and a fresh [`ClaimEpoch`]. Claims of one id
//! are served one at a time: the next waits until the claimant says it is
//! done (`ClaimDone`, after its takeover) or `CLAIM_TIMEOUT_MS`, so
//! concurrent connects of one id on several nodes end with one owner.
//! Owners on a node declared down are forgotten (the next claim starts a
//! fresh session). After membership changes every owner reports its ids to
//! their (possibly new) home (`OwnerReport`): a home that hears of two
//! owners keeps the newer epoch and evicts the older (`Evict`), which is how
//! owners reconcile after a partition heals.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::homes::Homes;
use super::proto::{
    Claim, ClaimAnswer, ClaimDone, ClaimEpoch, Evict, Message, OwnerEnded, OwnerReport,
};
use crate::limits::{CLAIMS_BUSY_MAX, CLAIMS_WAITING_PER_ID_MAX, CLAIM_TIMEOUT_MS};
use crate::router::location::{Location, NodeId};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimStats {
    pub served: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub evictions: u64,
}

#[derive(Debug)]
struct Busy {
    claimant: Location,
    request: u64,
    previous: Option<Location>,
    epoch: ClaimEpoch,
    deadline_ms: u64,
}

#[derive(Debug, Default)]
struct IdState {
    owner: Option<(Location, ClaimEpoch)>,
    busy: Option<Busy>,
    /// Claims waiting behind `busy`: (claimant, its request number).
    waiting: VecDeque<(Location, u64)>,
}

/// The home's side of claims. Sans-IO.
#[derive(Debug)]
pub struct ClaimTable {
    here: NodeId,
    /// Keeps epochs increasing even if the wall clock steps back.
    last_claimed_at_ms: u64,
    counter: u64,
    ids: BTreeMap<String, IdState>,
    deadlines: BTreeSet<(u64, String)>,
    transmits: VecDeque<(NodeId, Message)>,
    stats: ClaimStats,
}

impl ClaimTable {
    pub fn new(here: NodeId) -> ClaimTable {
        ClaimTable {
            here,
            last_claimed_at_ms: 0,
            counter: 0,
            ids: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            stats: ClaimStats::default(),
        }
    }

    pub fn stats(&self) -> ClaimStats {
        self.stats
    }

    /// The recorded owner of `client_id`, if this node homes it.
    pub fn owner(&self, client_id: &str) -> Option<(Location, ClaimEpoch)> {
        self.ids.get(client_id).and_then(|s| s.owner)
    }

    fn busy_count(&self) -> usize {
        self.deadlines.len()
    }

    /// A claim from node `from` (its claimant must be one of its shards).
    pub fn handle_claim(&mut self, from: NodeId, claim: Claim, now_ms: u64) {
        let claimant = Location::from(claim.claimant);
        if claimant.node != from {
            return; // a peer speaking for another node: ignored
        }
        let busy_full = self.busy_count() >= CLAIMS_BUSY_MAX;
        let state = self.ids.entry(claim.client_id.clone()).or_default();
        // The same claim again (sent again on a new link): answered again
        // if it is being served, ignored if it waits.
        if let Some(busy) = state
            .busy
            .as_ref()
            .filter(|b| b.claimant == claimant && b.request == claim.request)
        {
            let answer = ClaimAnswer {
                client_id: claim.client_id,
                request: claim.request,
                epoch: Some(busy.epoch),
                previous: busy.previous.map(Into::into),
            };
            self.transmits
                .push_back((claimant.node, Message::ClaimAnswer(answer)));
            return;
        }
        if state.waiting.contains(&(claimant, claim.request)) {
            return;
        }
        if state.busy.is_some() {
            if state.waiting.len() >= CLAIMS_WAITING_PER_ID_MAX {
                self.refuse(claimant, claim);
            } else {
                state.waiting.push_back((claimant, claim.request));
            }
            return;
        }
        if busy_full {
            self.refuse(claimant, claim);
            return;
        }
        self.serve(claim.client_id, claimant, claim.request, now_ms);
    }

    fn refuse(&mut self, claimant: Location, claim: Claim) {
        self.stats.refused += 1;
        self.transmits.push_back((
            claimant.node,
            Message::ClaimAnswer(ClaimAnswer {
                client_id: claim.client_id,
                request: claim.request,
                epoch: None,
                previous: None,
            }),
        ));
    }

    fn next_epoch(&mut self, now_ms: u64) -> ClaimEpoch {
        self.last_claimed_at_ms = self.last_claimed_at_ms.max(now_ms);
        self.counter += 1;
        ClaimEpoch {
            claimed_at_ms: self.last_claimed_at_ms,
            home: self.here.0,
            counter: self.counter,
        }
    }

    fn serve(&mut self, client_id: String, claimant: Location, request: u64, now_ms: u64) {
        let epoch = self.next_epoch(now_ms);
        let state = self.ids.get_mut(&client_id).expect("served id exists");
        let previous_at = state.owner.map(|(at, _)| at);
        let previous = previous_at.map(Into::into);
        let deadline_ms = now_ms + CLAIM_TIMEOUT_MS;
        state.busy = Some(Busy {
            claimant,
            request,
            previous: previous_at,
            epoch,
            deadline_ms,
        });
        self.deadlines.insert((deadline_ms, client_id.clone()));
        self.stats.served += 1;
        self.transmits.push_back((
            claimant.node,
            Message::ClaimAnswer(ClaimAnswer {
                client_id,
                request,
                epoch: Some(epoch),
                previous,
            }),
        ));
    }

    /// Ends the claim being served for `client_id`: `owner` (if any) is
    /// recorded, and the next waiting claim is served.
    fn finish(&mut self, client_id: &str, owner: Option<(Location, ClaimEpoch)>, now_ms: u64) {
        let Some(state) = self.ids.get_mut(client_id) else {
            return;
        };
        if let Some(busy) = state.busy.take() {
            self.deadlines
                .remove(&(busy.deadline_ms, client_id.to_owned()));
        }
        if let Some((at, _)) = owner {
            // The previous owner normally gave its session up in the
            // takeover; if the takeover failed (a lost frame, a timeout)
            // it may still hold it: the newer claim wins.
            if let Some((prev, prev_epoch)) = state.owner.filter(|(prev, _)| prev.node != at.node) {
                self.stats.evictions += 1;
                self.transmits.push_back((
                    prev.node,
                    Message::Evict(Evict {
                        client_id: client_id.to_owned(),
                        epoch: prev_epoch,
                    }),
                ));
            }
            state.owner = owner;
        }
        if let Some((claimant, request)) = state.waiting.pop_front() {
            self.serve(client_id.to_owned(), claimant, request, now_ms);
        } else if state.owner.is_none() {
            self.ids.remove(client_id);
        }
    }

    /// The claimant finished its takeover (or fresh start).
    pub fn handle_claim_done(&mut self, from: NodeId, done: ClaimDone, now_ms: u64) {
        let owner = Location::from(done.owner);
        let matches = self.ids.get(&done.client_id).is_some_and(|s| {
            s.busy
                .as_ref()
                .is_some_and(|b| b.epoch == done.epoch && b.claimant.node == from)
        });
        if matches && owner.node == from {
            self.finish(&done.client_id, Some((owner, done.epoch)), now_ms);
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Claims not done in time: the claimant got its answer, so it is taken
    /// as the owner (a later claim kicks it if it is not).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now_ms {
                break;
            }
            self.stats.timed_out += 1;
            let owner = self.ids[&id].busy.as_ref().map(|b| (b.claimant, b.epoch));
            self.finish(&id, owner, now_ms);
        }
    }

    /// `node` was declared down: its sessions are gone (no durable
    /// sessions yet), its claims will never finish.
    pub fn handle_member_down(&mut self, node: NodeId, now_ms: u64) {
        let ids: Vec<String> = self.ids.keys().cloned().collect();
        for id in ids {
            let state = self.ids.get_mut(&id).expect("listed");
            state.waiting.retain(|(at, _)| at.node != node);
            if state.owner.is_some_and(|(at, _)| at.node == node) {
                state.owner = None;
            }
            if state.busy.as_ref().is_some_and(|b| b.claimant.node == node) {
                self.finish(&id, None, now_ms);
            } else if state.owner.is_none() && state.busy.is_none() {
                self.ids.remove(&id);
            }
        }
    }

    /// Homes moved: forget the ids this node no longer homes (their owners
    /// report to the new home; a stale record here could name an owner
    /// that has moved since).
    pub fn handle_homes_changed(&mut self, homes: &Homes) {
        let here = self.here;
        let gone: Vec<String> = self
            .ids
            .keys()
            .filter(|id| homes.home_of(id) != Some(here))
            .cloned()
            .collect();
        for id in gone {
            if let Some(state) = self.ids.remove(&id) {
                if let Some(b) = state.busy {
                    self.deadlines.remove(&(b.deadline_ms, id.clone()));
                }
                for (claimant, request) in state.waiting {
                    self.refuse(
                        claimant,
                        Claim {
                            client_id: id.clone(),
                            claimant: claimant.into(),
                            request,
                        },
                    );
                }
            }
        }
    }

    /// An owner says it holds `client_id`: keep the newer epoch, evict the
    /// older owner.
    pub fn handle_owner_report(&mut self, from: NodeId, report: OwnerReport) {
        let owner = Location::from(report.owner);
        if owner.node != from {
            return;
        }
        let state = self.ids.entry(report.client_id.clone()).or_default();
        let loser = match state.owner {
            None => {
                state.owner = Some((owner, report.epoch));
                None
            }
            Some((at, epoch)) if at == owner => {
                state.owner = Some((at, epoch.max(report.epoch)));
                None
            }
            Some((at, epoch)) if epoch < report.epoch => {
                state.owner = Some((owner, report.epoch));
                Some((at.node, epoch))
            }
            Some((_, epoch)) if epoch > report.epoch => Some((owner.node, report.epoch)),
            Some(_) => None, // same epoch, two locations: cannot happen
        };
        if let Some((node, epoch)) = loser {
            self.stats.evictions += 1;
            self.transmits.push_back((
                node,
                Message::Evict(Evict {
                    client_id: report.client_id,
                    epoch,
                }),
            ));
        }
    }

    /// An owner's session ended: the id is forgotten unless it moved on
    /// since (another owner or epoch) or a claim of it is being served.
    pub fn handle_owner_ended(&mut self, from: NodeId, ended: OwnerEnded) {
        let owner = Location::from(ended.owner);
        if owner.node != from {
            return;
        }
        let Some(state) = self.ids.get_mut(&ended.client_id) else {
            return;
        };
        if state.owner == Some((owner, ended.epoch)) {
            state.owner = None;
            if state.busy.is_none() && state.waiting.is_empty() {
                self.ids.remove(&ended.client_id);
            }
        }
    }

    /// Ids with an owner or a claim in progress (the table's size).
    pub fn ids(&self) -> usize {
        self.ids.len()
    }

    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        self.transmits.pop_front()
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
