//! The previous owner's side of a takeover, and reconciliation by epoch
//! (see `super`'s module doc).

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Outgoing, Stage, TakeoverEvent, Takeovers};
use crate::cluster::logic::homes::Homes;
use crate::cluster::logic::proto::{
    Evict, HeldDeliveries, HeldMessage, HeldRequest, Message, MessageId, OwnerEnded, OwnerReport,
    TakeoverExport, TakeoverKick,
};
use crate::limits::{
    TAKEOVERS_MAX, TAKEOVER_HELD_CHUNK_MAX, TAKEOVER_HELD_MAX, TAKEOVER_LINGER_MS,
    TAKEOVER_TIMEOUT_MS,
};
use crate::router::location::{Location, NodeId};
use crate::session::snapshot::DeliverySnapshot;

impl Takeovers {
    // ------------------------------------------------------------ previous owner

    pub fn handle_kick(&mut self, from: NodeId, kick: TakeoverKick, now_ms: u64) {
        let to = Location::from(kick.new_owner);
        if to.node != from {
            return;
        }
        let owned = self.owned.get(&kick.client_id).copied();
        if self.outgoing.len() >= TAKEOVERS_MAX || owned.is_none() {
            // No session here (it ended, or never moved here): nothing to
            // hand over.
            self.transmits.push_back((
                from,
                Message::TakeoverExport(TakeoverExport {
                    client_id: kick.client_id.clone(),
                    epoch: kick.epoch,
                    snapshot: None,
                }),
            ));
            // The new owner still asks for held messages: answer empty.
            self.outgoing.insert(
                kick.client_id,
                Outgoing {
                    to,
                    epoch: kick.epoch,
                    exported: true,
                    linger_until_ms: None,
                    deadline_ms: now_ms + TAKEOVER_TIMEOUT_MS,
                    held: VecDeque::new(),
                },
            );
            return;
        }
        if self.incoming.remove(&kick.client_id).is_some() {
            // Moving in here while a newer claim moves it on: ours lost.
            self.events.push_back(TakeoverEvent::Refused {
                client_id: kick.client_id.clone(),
            });
        }
        self.owned.remove(&kick.client_id);
        self.outgoing.insert(
            kick.client_id.clone(),
            Outgoing {
                to,
                epoch: kick.epoch,
                exported: false,
                linger_until_ms: None,
                deadline_ms: now_ms + TAKEOVER_TIMEOUT_MS,
                held: VecDeque::new(),
            },
        );
        self.events.push_back(TakeoverEvent::Export {
            client_id: kick.client_id,
        });
    }

    /// The shard exported the session (`SessionSnapshot::encode` bytes;
    /// `None` if it had ended meanwhile).
    pub fn handle_exported(&mut self, client_id: &str, snapshot: Option<Bytes>) {
        let Some(out) = self.outgoing.get_mut(client_id) else {
            return;
        };
        if out.exported {
            return;
        }
        out.exported = true;
        self.transmits.push_back((
            out.to.node,
            Message::TakeoverExport(TakeoverExport {
                client_id: client_id.into(),
                epoch: out.epoch,
                snapshot,
            }),
        ));
    }

    /// A delivery matched for `client_id` on this node: true if it was
    /// held for the new owner (the session is moving out).
    pub fn hold(&mut self, client_id: &str, id: MessageId, delivery: DeliverySnapshot) -> bool {
        let Some(out) = self.outgoing.get_mut(client_id) else {
            return false;
        };
        if out.held.len() >= TAKEOVER_HELD_MAX {
            self.stats.held_dropped += 1;
            let victim = out
                .held
                .iter()
                .position(|m| m.delivery.qos == 0)
                .unwrap_or(0);
            out.held.remove(victim);
        }
        out.held.push_back(HeldMessage { id, delivery });
        true
    }

    pub fn handle_held_request(&mut self, from: NodeId, req: HeldRequest, now_ms: u64) {
        let Some(out) = self.outgoing.get_mut(&req.client_id) else {
            // Unknown here (timed out): an empty, final answer.
            self.transmits.push_back((
                from,
                Message::HeldDeliveries(HeldDeliveries {
                    client_id: req.client_id,
                    epoch: req.epoch,
                    messages: Vec::new(),
                    last: true,
                }),
            ));
            return;
        };
        if out.to.node == from && out.epoch == req.epoch && out.linger_until_ms.is_none() {
            let until = now_ms + TAKEOVER_LINGER_MS;
            out.linger_until_ms = Some(until);
            out.deadline_ms = out.deadline_ms.max(until);
        }
    }

    pub(super) fn hand_over(&mut self, client_id: &str) {
        let out = self.outgoing.remove(client_id).expect("outgoing");
        let mut held = out.held;
        loop {
            let n = held.len().min(TAKEOVER_HELD_CHUNK_MAX);
            let messages: Vec<HeldMessage> = held.drain(..n).collect();
            let last = held.is_empty();
            self.transmits.push_back((
                out.to.node,
                Message::HeldDeliveries(HeldDeliveries {
                    client_id: client_id.into(),
                    epoch: out.epoch,
                    messages,
                    last,
                }),
            ));
            if last {
                break;
            }
        }
        self.stats.moved_out += 1;
        self.events.push_back(TakeoverEvent::Drop {
            client_id: client_id.into(),
        });
    }

    // ------------------------------------------------------------ reconcile

    /// Membership changed: tell each owned id's home that this node owns it.
    pub fn handle_homes_changed(&mut self, homes: &Homes) {
        for (id, &(at, epoch)) in &self.owned {
            if let Some(home) = homes.home_of(id) {
                self.transmits.push_back((
                    home,
                    Message::OwnerReport(OwnerReport {
                        client_id: id.clone(),
                        owner: at.into(),
                        epoch,
                    }),
                ));
            }
        }
    }

    pub fn handle_evict(&mut self, evict: Evict) {
        let stale = self
            .owned
            .get(&evict.client_id)
            .is_some_and(|&(_, epoch)| epoch <= evict.epoch);
        if stale {
            self.owned.remove(&evict.client_id);
            self.stats.evicted += 1;
            self.events.push_back(TakeoverEvent::Evict {
                client_id: evict.client_id,
            });
        }
    }

    /// The session ended on this node (expired, or a clean start ended):
    /// its `home` forgets it.
    pub fn handle_session_ended(&mut self, client_id: &str, home: Option<NodeId>) {
        let Some((at, epoch)) = self.owned.remove(client_id) else {
            return;
        };
        if let Some(home) = home {
            self.transmits.push_back((
                home,
                Message::OwnerEnded(OwnerEnded {
                    client_id: client_id.into(),
                    owner: at.into(),
                    epoch,
                }),
            ));
        }
    }

    /// `node` was declared down: moves from it give fresh sessions, moves
    /// to it are dropped.
    pub fn handle_member_down(&mut self, node: NodeId) {
        let ids: Vec<String> = self.incoming.keys().cloned().collect();
        for id in ids {
            let inc = &self.incoming[&id];
            let affected = match inc.stage {
                Stage::Claiming { .. } => inc.home == node,
                Stage::AwaitExport { from }
                | Stage::AwaitRoutes { from }
                | Stage::AwaitHeld { from } => from == node,
            };
            if affected {
                self.abandon_incoming(&id);
            }
        }
        let gone: Vec<String> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.to.node == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.outgoing.remove(&id);
            self.events.push_back(TakeoverEvent::Drop { client_id: id });
        }
    }
}
