//! Cross-node session takeover in the running driver (docs/adr/0001-cluster.md,
//! "Session takeover across nodes"): the sans-IO homes, claims and
//! takeovers of `cluster::logic`, glued the way `logic/sim/node.rs` glues
//! them, over the real shards.
//!
//! * A connect on a clustered node claims its id here (`ToDriver::Claim`)
//!   after the node-local claim at its home shard; the answer
//!   ([`ClaimOutcome`]) says whether the session is this node's business
//!   (fresh, or taken from a local shard as on a single node) or comes from
//!   a peer (`Import`, then `ToDriver::Imported` once its routes are
//!   acknowledged, answered with the deliveries the peer held).
//! * As the previous owner, the driver has the owning shard kick and
//!   export the session ([`ShardJob::Export`]); the shard keeps its
//!   subscriptions matching and holds what they deliver (its `Exported`
//!   slot, as in a move between shards) until the logic's linger ends
//!   ([`ShardJob::EndExport`]); what the shard held then goes to the new
//!   owner in `HeldDeliveries` frames. The logic's own `hold` is not used:
//!   the shards hold, the driver only carries what they held.
//!
//! Deliveries carry no cluster-wide message id on the shards' path, so the
//! new owner merges the held deliveries with what it buffered by content
//! (`shard::takeover_remote`; ADR 0001, deviations).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::cluster::logic::claims::ClaimTable;
use crate::cluster::logic::homes::{Homes, Role};
use crate::cluster::logic::proto::{ClaimEpoch, HeldDeliveries, HeldMessage, Message, MessageId};
use crate::cluster::logic::takeover::{TakeoverEvent, Takeovers};
use crate::limits::{CLAIM_TIMEOUT_MS, TAKEOVER_HELD_CHUNK_MAX};
use crate::router::location::{Location, NodeId, ShardId};
use crate::session::snapshot::DeliverySnapshot;

/// The answer to a connect's claim of its client id.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The claim was refused (no home, too many claims, no answer in
    /// time): CONNACK Server unavailable.
    Refused,
    /// The session is not on another node: fresh, or taken from this
    /// node's shards by their own protocol.
    Local,
    /// The session comes from a peer (`None`: it had none, start fresh).
    /// Import it, subscribe, then send `ToDriver::Imported`.
    Import { snapshot: Option<Bytes> },
}

/// Work for one shard, run by `super` through the shard's inbox; its end
/// comes back as a [`JobDone`].
#[derive(Debug)]
pub enum ShardJob {
    /// Kick the connection (DISCONNECT 0x8E, no will), export the session
    /// and keep holding what its subscriptions deliver.
    Export {
        client_id: String,
        shard: ShardId,
        to: Location,
    },
    /// Stop holding for the moved session: its subscriptions leave the
    /// router; what was held goes to `send_to` (or is dropped).
    EndExport {
        client_id: String,
        shard: ShardId,
        send_to: Option<(NodeId, ClaimEpoch)>,
    },
    /// A newer owner won: kick (0x8E, no will) and drop the session.
    Evict { client_id: String, shard: ShardId },
}

/// A [`ShardJob`] done.
#[derive(Debug)]
pub enum JobDone {
    Exported {
        client_id: String,
        snapshot: Option<Bytes>,
    },
    Held {
        client_id: String,
        to: NodeId,
        epoch: ClaimEpoch,
        held: Vec<DeliverySnapshot>,
    },
}

/// A session moving in: what the previous owner held, until the shard
/// asks (`Imported`) and the move is complete (`Online`).
#[derive(Default)]
struct Importing {
    held: Vec<DeliverySnapshot>,
    online: bool,
    waiter: Option<oneshot::Sender<Vec<DeliverySnapshot>>>,
}

/// A connect that found a move of its id under way here (in or out): it
/// claims once that move ends (or is refused at `deadline_ms`). Bounded
/// without a limit of its own: a connect holds its id's node-local claim
/// meanwhile, so there is at most one per id in progress, and connects are
/// bounded by the node's connection caps.
struct Deferred {
    client_id: String,
    at: Location,
    answer: oneshot::Sender<ClaimOutcome>,
    deadline_ms: u64,
}

/// The takeover side of the driver's state.
pub struct TakeoverGlue {
    here: NodeId,
    homes: Homes,
    claims: ClaimTable,
    takeovers: Takeovers,
    /// Frames this node sends itself (the home of an id may be here).
    loopback: VecDeque<Message>,
    transmits: VecDeque<(NodeId, Message)>,
    claiming: HashMap<String, oneshot::Sender<ClaimOutcome>>,
    deferred: VecDeque<Deferred>,
    importing: HashMap<String, Importing>,
    /// Where each session this node owns lives (for a kick or an evict).
    owners: HashMap<String, Location>,
    /// Sessions exported from a shard, still held there until the linger
    /// ends.
    exporting: HashMap<String, ShardId>,
    /// The logic's (empty) hand-over of an exporting session, replaced by
    /// the shard's held deliveries: to whom, under which epoch.
    held_out: HashMap<String, (NodeId, ClaimEpoch)>,
    /// The new owner named by a kick, until the export starts.
    kicked_to: HashMap<String, Location>,
    jobs: VecDeque<ShardJob>,
}

impl TakeoverGlue {
    pub fn new(here: NodeId, role: Role) -> TakeoverGlue {
        let mut homes = Homes::new();
        homes.handle_member_up(here, role);
        TakeoverGlue {
            here,
            homes,
            claims: ClaimTable::new(here),
            takeovers: Takeovers::new(here),
            loopback: VecDeque::new(),
            transmits: VecDeque::new(),
            claiming: HashMap::new(),
            deferred: VecDeque::new(),
            importing: HashMap::new(),
            owners: HashMap::new(),
            exporting: HashMap::new(),
            held_out: HashMap::new(),
            kicked_to: HashMap::new(),
            jobs: VecDeque::new(),
        }
    }

    /// This node's role, once known (`Core::new` assumes core).
    pub fn set_role(&mut self, role: Role) {
        self.homes.handle_member_down(self.here);
        self.homes.handle_member_up(self.here, role);
    }

    // ------------------------------------------------------------ membership

    pub fn handle_member_up(&mut self, node: NodeId, role: Role, now_ms: u64) {
        self.homes.handle_member_up(node, role);
        self.homes_changed();
        self.pump(now_ms);
    }

    pub fn handle_member_down(&mut self, node: NodeId, now_ms: u64) {
        self.homes.handle_member_down(node);
        self.claims.handle_member_down(node, now_ms);
        self.takeovers.handle_member_down(node);
        self.homes_changed();
        self.pump(now_ms);
    }

    /// A new link to a running peer (`node`): owners report again and
    /// claims waiting for an answer from it are sent again (what the old
    /// link carried may be lost; a home answers a repeated claim again).
    pub fn handle_link_renewed(&mut self, node: NodeId, now_ms: u64) {
        self.takeovers.handle_homes_changed(&self.homes);
        self.takeovers.handle_link_renewed(node);
        self.pump(now_ms);
    }

    fn homes_changed(&mut self) {
        self.claims.handle_homes_changed(&self.homes);
        self.takeovers.handle_homes_changed(&self.homes);
    }

    // ------------------------------------------------------------ frames

    /// A claim or takeover frame from `from` (this node for the loopback).
    /// Other kinds are handed back.
    pub fn handle_message(&mut self, from: NodeId, m: Message, now_ms: u64) -> Option<Message> {
        match m {
            Message::Claim(c) => self.claims.handle_claim(from, c, now_ms),
            Message::ClaimAnswer(a) => self.takeovers.handle_claim_answer(a, now_ms),
            Message::ClaimDone(d) => self.claims.handle_claim_done(from, d, now_ms),
            Message::TakeoverKick(k) => {
                // The export (an event of this call) names the new owner.
                let id = k.client_id.clone();
                self.kicked_to
                    .insert(id.clone(), Location::from(k.new_owner));
                self.takeovers.handle_kick(from, k, now_ms);
                self.pump(now_ms);
                self.kicked_to.remove(&id);
            }
            Message::TakeoverExport(x) => self.takeovers.handle_export(from, x, now_ms),
            Message::HeldRequest(r) => self.takeovers.handle_held_request(from, r, now_ms),
            Message::HeldDeliveries(h) => self.takeovers.handle_held(from, h),
            Message::OwnerReport(r) => self.claims.handle_owner_report(from, r),
            Message::OwnerEnded(e) => self.claims.handle_owner_ended(from, e),
            Message::Evict(e) => self.takeovers.handle_evict(e),
            other => return Some(other),
        }
        self.pump(now_ms);
        None
    }

    // ------------------------------------------------------------ shards

    /// A connect at `at` claims `client_id`.
    pub fn handle_claim(
        &mut self,
        client_id: String,
        at: Location,
        answer: oneshot::Sender<ClaimOutcome>,
        now_ms: u64,
    ) {
        if self.takeovers.in_progress(&client_id) || self.claiming.contains_key(&client_id) {
            self.deferred.push_back(Deferred {
                client_id,
                at,
                answer,
                deadline_ms: now_ms + CLAIM_TIMEOUT_MS,
            });
            return;
        }
        let home = self.homes.home_of(&client_id);
        self.claiming.insert(client_id.clone(), answer);
        self.takeovers.connect(&client_id, at, home, now_ms);
        self.pump(now_ms);
    }

    /// The imported session's subscriptions are acknowledged cluster-wide;
    /// `done` gets the previous owner's held deliveries once it sent them.
    pub fn handle_imported(
        &mut self,
        client_id: String,
        done: oneshot::Sender<Vec<DeliverySnapshot>>,
        now_ms: u64,
    ) {
        let Some(imp) = self.importing.get_mut(&client_id) else {
            // Refused or timed out meanwhile: nothing held reached us.
            let _ = done.send(Vec::new());
            return;
        };
        if imp.online {
            let imp = self.importing.remove(&client_id).expect("present");
            let _ = done.send(imp.held);
            return;
        }
        imp.waiter = Some(done);
        self.takeovers.handle_routes_acked(&client_id, now_ms);
        self.pump(now_ms);
    }

    /// The session of `client_id` at `at` ended (expiry, clean end).
    pub fn handle_session_ended(&mut self, client_id: &str, at: Location, now_ms: u64) {
        if self.owners.get(client_id) == Some(&at) && !self.takeovers.in_progress(client_id) {
            self.owners.remove(client_id);
            let home = self.homes.home_of(client_id);
            self.takeovers.handle_session_ended(client_id, home);
            self.pump(now_ms);
        }
    }

    /// Client ids this node's home table holds (owned or being claimed).
    pub fn home_ids(&self) -> usize {
        self.claims.ids()
    }

    pub fn handle_job_done(&mut self, done: JobDone, now_ms: u64) {
        match done {
            JobDone::Exported {
                client_id,
                snapshot,
            } => self.takeovers.handle_exported(&client_id, snapshot),
            JobDone::Held {
                client_id,
                to,
                epoch,
                held,
            } => {
                let mut held: VecDeque<DeliverySnapshot> = held.into();
                // The new owner sorts by id: the held order is the order.
                let mut seq = 0u64;
                loop {
                    let n = held.len().min(TAKEOVER_HELD_CHUNK_MAX);
                    let messages = held
                        .drain(..n)
                        .map(|delivery| {
                            seq += 1;
                            HeldMessage {
                                id: MessageId {
                                    node: self.here.0,
                                    shard: 0,
                                    seq,
                                },
                                delivery,
                            }
                        })
                        .collect();
                    let last = held.is_empty();
                    let frame = HeldDeliveries {
                        client_id: client_id.clone(),
                        epoch,
                        messages,
                        last,
                    };
                    self.transmits
                        .push_back((to, Message::HeldDeliveries(frame)));
                    if last {
                        break;
                    }
                }
            }
        }
        self.pump(now_ms);
    }

    // ------------------------------------------------------------ time and output

    pub fn poll_timeout(&self) -> Option<u64> {
        let deferred = self.deferred.iter().map(|d| d.deadline_ms).min();
        [
            self.claims.poll_timeout(),
            self.takeovers.poll_timeout(),
            deferred,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.claims.handle_timeout(now_ms);
        self.takeovers.handle_timeout(now_ms);
        let mut i = 0;
        while i < self.deferred.len() {
            if self.deferred[i].deadline_ms <= now_ms {
                let d = self.deferred.remove(i).expect("in range");
                let _ = d.answer.send(ClaimOutcome::Refused);
            } else {
                i += 1;
            }
        }
        self.pump(now_ms);
    }

    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        self.transmits.pop_front()
    }

    pub fn poll_job(&mut self) -> Option<ShardJob> {
        self.jobs.pop_front()
    }

    /// Moves everything the logic produced on: frames out (or back in, for
    /// this node), events to the shards' waiters and jobs.
    fn pump(&mut self, now_ms: u64) {
        loop {
            let mut moved = false;
            let mut out: Vec<(NodeId, Message)> = Vec::new();
            out.extend(std::iter::from_fn(|| self.claims.poll_transmit()));
            while let Some((to, m)) = self.takeovers.poll_transmit() {
                match m {
                    Message::HeldDeliveries(h) if self.exporting.contains_key(&h.client_id) => {
                        // Replaced by what the shard held (`EndExport`).
                        moved = true;
                        self.held_out.insert(h.client_id, (to, h.epoch));
                    }
                    m => out.push((to, m)),
                }
            }
            for (to, m) in out {
                moved = true;
                if to == self.here {
                    self.loopback.push_back(m);
                } else {
                    self.transmits.push_back((to, m));
                }
            }
            while let Some(m) = self.loopback.pop_front() {
                moved = true;
                self.receive_local(m, now_ms);
            }
            while let Some(e) = self.takeovers.poll_event() {
                moved = true;
                self.event(e);
            }
            if self.start_deferred(now_ms) {
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn receive_local(&mut self, m: Message, now_ms: u64) {
        let here = self.here;
        match m {
            Message::Claim(c) => self.claims.handle_claim(here, c, now_ms),
            Message::ClaimAnswer(a) => self.takeovers.handle_claim_answer(a, now_ms),
            Message::ClaimDone(d) => self.claims.handle_claim_done(here, d, now_ms),
            Message::OwnerReport(r) => self.claims.handle_owner_report(here, r),
            Message::OwnerEnded(e) => self.claims.handle_owner_ended(here, e),
            Message::Evict(e) => self.takeovers.handle_evict(e),
            other => warn!(
                kind = other.kind(),
                "cluster: a takeover frame to this node itself"
            ),
        }
    }

    /// Claims deferred behind a move of their id that has ended.
    fn start_deferred(&mut self, now_ms: u64) -> bool {
        let mut started = false;
        let mut i = 0;
        while i < self.deferred.len() {
            let id = &self.deferred[i].client_id;
            if self.takeovers.in_progress(id) || self.claiming.contains_key(id) {
                i += 1;
                continue;
            }
            let d = self.deferred.remove(i).expect("in range");
            let home = self.homes.home_of(&d.client_id);
            self.claiming.insert(d.client_id.clone(), d.answer);
            self.takeovers.connect(&d.client_id, d.at, home, now_ms);
            started = true;
        }
        started
    }

    fn answer(&mut self, client_id: &str, outcome: ClaimOutcome) {
        if let Some(answer) = self.claiming.remove(client_id) {
            let _ = answer.send(outcome);
        }
    }

    fn event(&mut self, e: TakeoverEvent) {
        debug!(?e, "cluster takeover");
        match e {
            TakeoverEvent::Refused { client_id } => {
                self.answer(&client_id, ClaimOutcome::Refused);
                if let Some(imp) = self.importing.remove(&client_id) {
                    if let Some(w) = imp.waiter {
                        let _ = w.send(imp.held);
                    }
                }
            }
            TakeoverEvent::Start { client_id, at, .. } => {
                self.owners.insert(client_id.clone(), at);
                self.answer(&client_id, ClaimOutcome::Local);
            }
            TakeoverEvent::Import {
                client_id,
                snapshot,
                ..
            } => {
                self.importing
                    .insert(client_id.clone(), Importing::default());
                self.answer(&client_id, ClaimOutcome::Import { snapshot });
            }
            TakeoverEvent::Deliver {
                client_id,
                delivery,
                ..
            } => {
                if let Some(imp) = self.importing.get_mut(&client_id) {
                    imp.held.push(*delivery);
                }
            }
            TakeoverEvent::Online { client_id, at } => {
                self.owners.insert(client_id.clone(), at);
                if let Some(imp) = self.importing.get_mut(&client_id) {
                    match imp.waiter.take() {
                        Some(w) => {
                            let imp = self.importing.remove(&client_id).expect("present");
                            let _ = w.send(imp.held);
                        }
                        None => imp.online = true,
                    }
                }
            }
            TakeoverEvent::Export { client_id } => match self.owners.remove(&client_id) {
                Some(at) => {
                    self.exporting.insert(client_id.clone(), at.shard);
                    let to = self
                        .kicked_to
                        .get(&client_id)
                        .copied()
                        .unwrap_or(Location::new(self.here, 0));
                    self.jobs.push_back(ShardJob::Export {
                        client_id,
                        shard: at.shard,
                        to,
                    });
                }
                // Not known here (it ended meanwhile): nothing to export.
                None => self.takeovers.handle_exported(&client_id, None),
            },
            TakeoverEvent::Drop { client_id } => {
                let send_to = self.held_out.remove(&client_id);
                match self.exporting.remove(&client_id) {
                    Some(shard) => self.jobs.push_back(ShardJob::EndExport {
                        client_id,
                        shard,
                        send_to,
                    }),
                    None => {
                        if let Some((to, epoch)) = send_to {
                            self.handle_job_done_held_empty(client_id, to, epoch);
                        }
                    }
                }
            }
            TakeoverEvent::Evict { client_id } => {
                if let Some(at) = self.owners.remove(&client_id) {
                    self.jobs.push_back(ShardJob::Evict {
                        client_id,
                        shard: at.shard,
                    });
                }
            }
        }
    }

    fn handle_job_done_held_empty(&mut self, client_id: String, to: NodeId, epoch: ClaimEpoch) {
        let frame = HeldDeliveries {
            client_id,
            epoch,
            messages: Vec::new(),
            last: true,
        };
        self.transmits
            .push_back((to, Message::HeldDeliveries(frame)));
    }
}

#[path = "takeover_jobs.rs"]
mod jobs;
pub use jobs::{role_of, run_adopt, run_job};

#[cfg(test)]
#[path = "takeover_tests.rs"]
mod tests;
