//! Moving a session between nodes (docs/adr/0001-cluster.md, "Move").
//!
//! New owner (the node where the client connects):
//! 1. `connect` claims the id at its home; the answer names the previous
//!    owner. None, or one on this node: [`TakeoverEvent::Start`] (fresh or
//!    a local takeover by the shards) and `ClaimDone` at once.
//! 2. Otherwise `TakeoverKick` to the previous owner's node, whose answer
//!    `TakeoverExport` becomes [`TakeoverEvent::Import`]: the shard imports
//!    the session and subscribes; once those route changes are released
//!    (acknowledged cluster-wide) the caller says `handle_routes_acked`.
//! 3. `HeldRequest`; meanwhile what this node routes to the client is
//!    buffered (`intercept`). The held and the buffered deliveries are
//!    merged by [`MessageId`] (each message once, every publisher's order
//!    kept: `complete_incoming`); then [`TakeoverEvent::Online`] and
//!    `ClaimDone`.
//!
//! Previous owner:
//! 1. `TakeoverKick`: [`TakeoverEvent::Export`] (the shard sends DISCONNECT
//!    0x8E, which is not a disconnect for the will, and exports);
//!    `handle_exported` sends the snapshot. Its subscriptions keep matching
//!    and what they deliver is held (`hold`).
//! 2. `HeldRequest`: it keeps holding for `TAKEOVER_LINGER_MS` (a peer may
//!    have routed a message here just before applying the new owner's
//!    route, and that message may still be on the peer's data stream), then
//!    hands everything over and [`TakeoverEvent::Drop`]s the session.
//!
//! A previous owner that does not answer within `TAKEOVER_TIMEOUT_MS`
//! (partitioned, or dead before detection) gives a fresh session; a node
//! declared down gives the same at once. `Evict` from a home (an older
//! epoch after a partition) kicks and drops.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::proto::{
    Claim, ClaimAnswer, ClaimDone, ClaimEpoch, HeldDeliveries, HeldMessage, HeldRequest, Message,
    MessageId, TakeoverExport, TakeoverKick,
};
use crate::limits::{CLAIM_TIMEOUT_MS, TAKEOVERS_MAX, TAKEOVER_LINGER_MS, TAKEOVER_TIMEOUT_MS};
use crate::router::location::{Location, NodeId};
use crate::session::snapshot::DeliverySnapshot;

/// What the shards must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeoverEvent {
    /// The claim was refused (too many concurrent claims, no home, or its
    /// answer never came): refuse the CONNECT (Server unavailable).
    Refused { client_id: String },
    /// Start the session at `at` and accept the connection: fresh, or taken
    /// over from `previous` on this node by the shards' own protocol.
    Start {
        client_id: String,
        at: Location,
        previous: Option<Location>,
    },
    /// Import this session at `at` (`None`: start fresh), subscribe, then
    /// call `handle_routes_acked` once the route changes are released.
    Import {
        client_id: String,
        at: Location,
        snapshot: Option<Bytes>,
    },
    /// Queue this message for the client, in order.
    Deliver {
        client_id: String,
        id: MessageId,
        /// Boxed: the other events are a client id and a location.
        delivery: Box<DeliverySnapshot>,
    },
    /// The move is complete: accept the connection.
    Online { client_id: String, at: Location },
    /// Previous owner: kick the connection (DISCONNECT 0x8E, no will),
    /// export the session, then call `handle_exported`.
    Export { client_id: String },
    /// Previous owner: the session has moved; drop it and its
    /// subscriptions (no will).
    Drop { client_id: String },
    /// A newer owner won (partition healed): kick (0x8E) and drop.
    Evict { client_id: String },
}

#[derive(Debug)]
enum Stage {
    Claiming { request: u64 },
    AwaitExport { from: NodeId },
    AwaitRoutes { from: NodeId },
    AwaitHeld { from: NodeId },
}

#[derive(Debug)]
struct Incoming {
    at: Location,
    home: NodeId,
    epoch: Option<ClaimEpoch>,
    stage: Stage,
    deadline_ms: u64,
    /// Routed here while the held deliveries are not in.
    buffered: Vec<(MessageId, DeliverySnapshot)>,
    /// Held by the previous owner, as received so far.
    held: Vec<(MessageId, DeliverySnapshot)>,
    /// Delivered during this move: each message once.
    seen: BTreeSet<MessageId>,
}

#[derive(Debug)]
struct Outgoing {
    to: Location,
    epoch: ClaimEpoch,
    exported: bool,
    /// `Some`: the new owner asked; hand over at this time.
    linger_until_ms: Option<u64>,
    deadline_ms: u64,
    held: VecDeque<HeldMessage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeoverStats {
    pub moved_in: u64,
    pub moved_out: u64,
    /// Previous owners that did not answer: fresh sessions.
    pub export_timeouts: u64,
    pub held_dropped: u64,
    pub duplicates_dropped: u64,
    pub evicted: u64,
}

/// One node's takeovers in both roles, and the ids it owns. Sans-IO.
#[derive(Debug)]
pub struct Takeovers {
    here: NodeId,
    next_request: u64,
    incoming: BTreeMap<String, Incoming>,
    outgoing: BTreeMap<String, Outgoing>,
    /// Sessions this node owns and the epoch of the claim that made it so.
    owned: BTreeMap<String, (Location, ClaimEpoch)>,
    transmits: VecDeque<(NodeId, Message)>,
    events: VecDeque<TakeoverEvent>,
    stats: TakeoverStats,
}

impl Takeovers {
    pub fn new(here: NodeId) -> Takeovers {
        Takeovers {
            here,
            next_request: 0,
            incoming: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            owned: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TakeoverStats::default(),
        }
    }

    pub fn stats(&self) -> TakeoverStats {
        self.stats
    }

    pub fn owned(&self) -> impl Iterator<Item = (&str, Location, ClaimEpoch)> {
        self.owned.iter().map(|(id, &(at, e))| (id.as_str(), at, e))
    }

    /// Whether `client_id` is moving in or out of this node.
    pub fn in_progress(&self, client_id: &str) -> bool {
        self.incoming.contains_key(client_id) || self.outgoing.contains_key(client_id)
    }

    // ------------------------------------------------------------ new owner

    /// A client connects at `at`; `home` from `Homes::home_of`.
    pub fn connect(&mut self, client_id: &str, at: Location, home: Option<NodeId>, now_ms: u64) {
        assert!(at.is_on(self.here));
        let refuse = home.is_none()
            || self.in_progress(client_id)
            || self.incoming.len() + self.outgoing.len() >= TAKEOVERS_MAX;
        let Some(home) = home.filter(|_| !refuse) else {
            self.events.push_back(TakeoverEvent::Refused {
                client_id: client_id.into(),
            });
            return;
        };
        self.next_request += 1;
        let request = self.next_request;
        self.incoming.insert(
            client_id.into(),
            Incoming {
                at,
                home,
                epoch: None,
                stage: Stage::Claiming { request },
                deadline_ms: now_ms + CLAIM_TIMEOUT_MS,
                buffered: Vec::new(),
                held: Vec::new(),
                seen: BTreeSet::new(),
            },
        );
        self.transmits.push_back((
            home,
            Message::Claim(Claim {
                client_id: client_id.into(),
                claimant: at.into(),
                request,
            }),
        ));
    }

    /// A new link with `node`: claims it has not answered are sent again
    /// (the old link may have lost them or their answers; a home answers a
    /// repeated claim again).
    pub fn handle_link_renewed(&mut self, node: NodeId) {
        for (client_id, inc) in &self.incoming {
            if let Stage::Claiming { request } = inc.stage {
                if inc.home == node {
                    self.transmits.push_back((
                        node,
                        Message::Claim(Claim {
                            client_id: client_id.clone(),
                            claimant: inc.at.into(),
                            request,
                        }),
                    ));
                }
            }
        }
    }

    pub fn handle_claim_answer(&mut self, answer: ClaimAnswer, now_ms: u64) {
        let Some(inc) = self.incoming.get_mut(&answer.client_id) else {
            return;
        };
        if !matches!(inc.stage, Stage::Claiming { request } if request == answer.request) {
            return;
        }
        let Some(epoch) = answer.epoch else {
            self.incoming.remove(&answer.client_id);
            self.events.push_back(TakeoverEvent::Refused {
                client_id: answer.client_id,
            });
            return;
        };
        inc.epoch = Some(epoch);
        let previous = answer.previous.map(Location::from);
        match previous {
            Some(prev) if !prev.is_on(self.here) => {
                inc.stage = Stage::AwaitExport { from: prev.node };
                inc.deadline_ms = now_ms + TAKEOVER_TIMEOUT_MS;
                self.transmits.push_back((
                    prev.node,
                    Message::TakeoverKick(TakeoverKick {
                        client_id: answer.client_id,
                        epoch,
                        new_owner: inc.at.into(),
                    }),
                ));
            }
            _ => {
                let at = inc.at;
                self.events.push_back(TakeoverEvent::Start {
                    client_id: answer.client_id.clone(),
                    at,
                    previous,
                });
                self.finish_incoming(&answer.client_id);
            }
        }
    }

    pub fn handle_export(&mut self, from: NodeId, export: TakeoverExport, now_ms: u64) {
        let Some(inc) = self.incoming.get_mut(&export.client_id) else {
            return;
        };
        match inc.stage {
            Stage::AwaitExport { from: f } if f == from && inc.epoch == Some(export.epoch) => {}
            _ => return,
        }
        inc.stage = Stage::AwaitRoutes { from };
        inc.deadline_ms = now_ms + TAKEOVER_TIMEOUT_MS;
        self.events.push_back(TakeoverEvent::Import {
            client_id: export.client_id,
            at: inc.at,
            snapshot: export.snapshot,
        });
    }

    /// The imported session's subscriptions are acknowledged cluster-wide.
    pub fn handle_routes_acked(&mut self, client_id: &str, now_ms: u64) {
        let Some(inc) = self.incoming.get_mut(client_id) else {
            return;
        };
        let Stage::AwaitRoutes { from } = inc.stage else {
            return;
        };
        inc.stage = Stage::AwaitHeld { from };
        inc.deadline_ms = now_ms + TAKEOVER_LINGER_MS + TAKEOVER_TIMEOUT_MS;
        self.transmits.push_back((
            from,
            Message::HeldRequest(HeldRequest {
                client_id: client_id.into(),
                epoch: inc.epoch.expect("claimed"),
            }),
        ));
    }

    /// A message routed on this node to `client_id`: `Some` to deliver now,
    /// `None` if it was buffered (the session is moving in).
    pub fn intercept(
        &mut self,
        client_id: &str,
        id: MessageId,
        delivery: DeliverySnapshot,
    ) -> Option<DeliverySnapshot> {
        match self.incoming.get_mut(client_id) {
            Some(inc)
                if matches!(
                    inc.stage,
                    Stage::AwaitRoutes { .. } | Stage::AwaitHeld { .. }
                ) =>
            {
                inc.buffered.push((id, delivery));
                None
            }
            _ => Some(delivery),
        }
    }

    pub fn handle_held(&mut self, from: NodeId, held: HeldDeliveries) {
        let Some(inc) = self.incoming.get_mut(&held.client_id) else {
            return;
        };
        match inc.stage {
            Stage::AwaitHeld { from: f } if f == from && inc.epoch == Some(held.epoch) => {}
            _ => return,
        }
        inc.held
            .extend(held.messages.into_iter().map(|m| (m.id, m.delivery)));
        if held.last {
            self.stats.moved_in += 1;
            self.complete_incoming(&held.client_id);
        }
    }

    /// Delivers the held and the buffered messages, goes online, tells
    /// the home. The two lists overlap (both nodes matched while the new
    /// owner's routes spread) and neither alone has one publisher's
    /// messages in order: a peer may have routed a message here before it
    /// applied the previous owner's last subscription and the next one to
    /// both. A message id's number grows with each publish on its origin
    /// shard, where one publisher's messages all come from, so sorting the
    /// union by id restores every publisher's order.
    fn complete_incoming(&mut self, client_id: &str) {
        let inc = self.incoming.get_mut(client_id).expect("incoming");
        let at = inc.at;
        let mut all = std::mem::take(&mut inc.held);
        all.append(&mut inc.buffered);
        all.sort_by_key(|(id, _)| *id);
        for (id, delivery) in all {
            if inc.seen.insert(id) {
                self.events.push_back(TakeoverEvent::Deliver {
                    client_id: client_id.into(),
                    id,
                    delivery: Box::new(delivery),
                });
            } else {
                self.stats.duplicates_dropped += 1;
            }
        }
        self.events.push_back(TakeoverEvent::Online {
            client_id: client_id.into(),
            at,
        });
        self.finish_incoming(client_id);
    }

    fn finish_incoming(&mut self, client_id: &str) {
        let inc = self.incoming.remove(client_id).expect("incoming");
        let epoch = inc.epoch.expect("claimed");
        self.owned.insert(client_id.into(), (inc.at, epoch));
        self.transmits.push_back((
            inc.home,
            Message::ClaimDone(ClaimDone {
                client_id: client_id.into(),
                epoch,
                owner: inc.at.into(),
            }),
        ));
    }

    /// Gives up waiting for the previous owner: a fresh session (or the
    /// session as imported, without what was held).
    fn abandon_incoming(&mut self, client_id: &str) {
        let inc = self.incoming.get(client_id).expect("incoming");
        match inc.stage {
            Stage::Claiming { .. } => {
                self.incoming.remove(client_id);
                self.events.push_back(TakeoverEvent::Refused {
                    client_id: client_id.into(),
                });
            }
            Stage::AwaitExport { .. } => {
                self.stats.export_timeouts += 1;
                self.events.push_back(TakeoverEvent::Start {
                    client_id: client_id.into(),
                    at: inc.at,
                    previous: None,
                });
                self.finish_incoming(client_id);
            }
            Stage::AwaitRoutes { .. } | Stage::AwaitHeld { .. } => {
                self.complete_incoming(client_id)
            }
        }
    }

    // ------------------------------------------------------------ time and output

    /// Earliest deadline. `O(takeovers in progress)`: bounded by
    /// `TAKEOVERS_MAX`, and small in steady state.
    pub fn poll_timeout(&self) -> Option<u64> {
        let incoming = self.incoming.values().map(|i| i.deadline_ms);
        let outgoing = self
            .outgoing
            .values()
            .map(|o| o.linger_until_ms.unwrap_or(o.deadline_ms));
        incoming.chain(outgoing).min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let late: Vec<String> = self
            .incoming
            .iter()
            .filter(|(_, i)| i.deadline_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            self.abandon_incoming(&id);
        }
        let due: Vec<(String, bool)> = self
            .outgoing
            .iter()
            .filter_map(|(id, o)| match o.linger_until_ms {
                Some(t) if t <= now_ms => Some((id.clone(), true)),
                _ if o.deadline_ms <= now_ms && o.linger_until_ms.is_none() => {
                    Some((id.clone(), false))
                }
                _ => None,
            })
            .collect();
        for (id, asked) in due {
            if asked {
                self.hand_over(&id);
            } else {
                // The new owner never asked: it gave up; so do we.
                self.outgoing.remove(&id);
                self.events.push_back(TakeoverEvent::Drop { client_id: id });
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TakeoverEvent> {
        self.events.pop_front()
    }
}

#[path = "takeover_outgoing.rs"]
mod outgoing;

#[cfg(test)]
#[path = "takeover_tests.rs"]
mod tests;
