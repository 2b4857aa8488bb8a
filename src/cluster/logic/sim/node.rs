//! One simulated node: the cluster logic of this module's siblings, glued
//! the way the cluster thread will glue it, over a model of the node's
//! shards (sessions with their subscriptions, per-shard interest counts).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::super::claims::ClaimTable;
use super::super::forward::{ForwardEvent, ForwardIn, ForwardOut, PublishAcks};
use super::super::homes::{Homes, Role};
use super::super::proto::{Forward, ForwardBatch, Message, MessageId};
use super::super::records;
use super::super::routes::{RouteEvent, RouteRelay};
use super::super::takeover::{TakeoverEvent, Takeovers};
use super::net::Net;
use super::world::{Acked, SessionModel, World};
use super::Sabotage;
use crate::codec::ByteStr;
use crate::router::location::{NodeId, ShardId};
use crate::router::topic::matches;
use crate::router::InterestChange;
use crate::session::snapshot::{DeliverySnapshot, MessageSnapshot};

#[path = "node_clients.rs"]
mod clients;

/// What the simulation hands every node call.
pub(super) struct Ctx<'a> {
    pub net: &'a mut Net,
    pub rng: &'a mut fastrand::Rng,
    pub world: &'a mut World,
}

/// Why a route-relay token was issued.
#[derive(Debug)]
enum Purpose {
    Subscribe {
        client: String,
        filter: String,
        sub_id: u64,
        fault_gen: u64,
    },
    Import {
        client: String,
    },
    Other,
}

pub(super) struct SimNode {
    pub id: NodeId,
    sabotage: Option<Sabotage>,
    relay: RouteRelay,
    homes: Homes,
    claims: ClaimTable,
    takeovers: Takeovers,
    fwd_out: BTreeMap<NodeId, ForwardOut>,
    fwd_in: ForwardIn,
    pub_acks: PublishAcks,
    /// Peers this node believes running.
    pub view: BTreeSet<NodeId>,
    /// Routes learned from peers: node -> filters.
    pub remote: BTreeMap<NodeId, BTreeSet<String>>,
    pub sessions: BTreeMap<String, SessionModel>,
    next_token: u64,
    tokens: BTreeMap<u64, Purpose>,
    /// Imports waiting for their subscriptions' routes: client -> tokens.
    imports: BTreeMap<String, usize>,
    /// Publisher tokens of QoS 1/2 forwards -> message.
    pub_tokens: BTreeMap<u64, MessageId>,
    msg_seq: Vec<u64>,
    /// Frames this node sends itself (the home of an id may be here).
    loopback: VecDeque<Message>,
}

impl SimNode {
    pub fn new(id: NodeId, epoch: u64, shard_count: u16, sabotage: Option<Sabotage>) -> SimNode {
        let mut homes = Homes::new();
        homes.handle_member_up(id, Role::Core);
        SimNode {
            id,
            sabotage,
            relay: RouteRelay::new(id, epoch, shard_count),
            homes,
            claims: ClaimTable::new(id),
            takeovers: Takeovers::new(id),
            fwd_out: BTreeMap::new(),
            fwd_in: ForwardIn::new(),
            pub_acks: PublishAcks::new(),
            view: BTreeSet::new(),
            remote: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_token: 0,
            tokens: BTreeMap::new(),
            imports: BTreeMap::new(),
            pub_tokens: BTreeMap::new(),
            msg_seq: vec![0; usize::from(shard_count)],
            loopback: VecDeque::new(),
        }
    }

    /// Whether it may accept clients: it has every peer's routes.
    pub fn ready(&self) -> bool {
        self.relay.routes_complete()
    }

    pub fn next_timeout(&self) -> Option<u64> {
        [
            self.relay.poll_timeout(),
            self.claims.poll_timeout(),
            self.takeovers.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------ membership and links

    pub fn member_up(&mut self, peer: NodeId, cx: &mut Ctx<'_>) {
        self.view.insert(peer);
        self.relay.handle_member_up(peer);
        self.homes.handle_member_up(peer, Role::Core);
        self.homes_changed();
        self.pump(cx);
    }

    pub fn member_down(&mut self, peer: NodeId, cx: &mut Ctx<'_>) {
        self.view.remove(&peer);
        self.link_down(peer, cx);
        self.relay.handle_member_down(peer);
        self.homes.handle_member_down(peer);
        self.claims.handle_member_down(peer, cx.world.now_ms);
        self.takeovers.handle_member_down(peer);
        self.pub_acks.handle_member_down(peer);
        self.homes_changed();
        self.pump(cx);
    }

    fn homes_changed(&mut self) {
        self.claims.handle_homes_changed(&self.homes);
        self.takeovers.handle_homes_changed(&self.homes);
    }

    /// The connection to `peer` broke (its streams are gone).
    pub fn link_down(&mut self, peer: NodeId, cx: &mut Ctx<'_>) {
        if let Some(mut out) = self.fwd_out.remove(&peer) {
            out.handle_link_down();
            while let Some(e) = out.poll_event() {
                if let ForwardEvent::Failed { token } = e {
                    self.pub_acks.handle_node(token, peer, false);
                }
            }
        }
        self.fwd_in.handle_link_down(peer);
        self.pump(cx);
    }

    /// A new connection to a running peer: routes and owners are
    /// resynchronised (what the old connection carried may be lost).
    pub fn link_up(&mut self, peer: NodeId, cx: &mut Ctx<'_>) {
        if self.view.contains(&peer) {
            self.relay.handle_member_up(peer);
            self.takeovers.handle_homes_changed(&self.homes);
            self.pump(cx);
        }
    }

    // ------------------------------------------------------------ frames and time

    pub fn receive(&mut self, from: NodeId, m: Message, cx: &mut Ctx<'_>) {
        let now = cx.world.now_ms;
        match m {
            Message::RouteChange(c) => self.relay.handle_route_change(from, c),
            Message::RouteAck(a) => self.relay.handle_route_ack(from, &a),
            Message::RouteSnapshotRequest(q) => self.relay.handle_snapshot_request(from, &q),
            Message::RouteSnapshot(s) => self.relay.handle_route_snapshot(from, s),
            Message::Forward(f) => self.forwarded(from, f, cx),
            Message::ForwardBatch(b) => {
                let shard = b.forwards.first().map_or(0, |f| f.id.shard);
                if !self.fwd_in.handle_window(from, shard, b.window) {
                    return;
                }
                for f in b.forwards {
                    self.forwarded(from, f, cx);
                }
            }
            Message::ForwardAck(a) => {
                if let Some(out) = self.fwd_out.get_mut(&from) {
                    out.handle_ack(&a);
                    while let Some(e) = out.poll_event() {
                        if let ForwardEvent::Acked { token } = e {
                            self.pub_acks.handle_node(token, from, true);
                        }
                    }
                }
            }
            Message::Claim(c) => self.claims.handle_claim(from, c, now),
            Message::ClaimAnswer(a) => self.takeovers.handle_claim_answer(a, now),
            Message::ClaimDone(d) => self.claims.handle_claim_done(from, d, now),
            Message::TakeoverKick(k) => self.takeovers.handle_kick(from, k, now),
            Message::TakeoverExport(x) => self.takeovers.handle_export(from, x, now),
            Message::HeldRequest(r) => self.takeovers.handle_held_request(from, r, now),
            Message::HeldDeliveries(h) => self.takeovers.handle_held(from, h),
            Message::OwnerReport(r) => self.claims.handle_owner_report(from, r),
            Message::OwnerEnded(e) => self.claims.handle_owner_ended(from, e),
            Message::Evict(e) => self.takeovers.handle_evict(e),
            Message::RetainedSync(_)
            | Message::LoadFigures(_)
            | Message::ClientsQuery(_)
            | Message::ClientsAnswer(_)
            | Message::RebalanceRequest(_)
            | Message::RebalanceAnswer(_)
            // Session pushes are the driver's (`driver::session_push`),
            // over the takeover this simulation covers.
            | Message::SessionPush(_)
            | Message::SessionPushDone(_) => {}
        }
        self.pump(cx);
    }

    pub fn timeout(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.world.now_ms;
        self.relay.handle_timeout(now);
        self.claims.handle_timeout(now);
        self.takeovers.handle_timeout(now);
        self.pump(cx);
    }

    /// Drains every component's frames and events until none is left.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        loop {
            let mut moved = false;
            let mut out: Vec<(NodeId, Message)> = Vec::new();
            out.extend(std::iter::from_fn(|| self.relay.poll_transmit()));
            out.extend(std::iter::from_fn(|| self.claims.poll_transmit()));
            out.extend(std::iter::from_fn(|| self.takeovers.poll_transmit()));
            out.extend(std::iter::from_fn(|| self.fwd_in.poll_transmit()));
            for (&peer, window) in self.fwd_out.iter_mut() {
                while let Some((_, body)) = window.poll_transmit() {
                    let frame = records::decode(&body).expect("a frame this node encoded decodes");
                    out.push((peer, sim_batch(frame)));
                }
            }
            for (to, m) in out {
                moved = true;
                if to == self.id {
                    self.loopback.push_back(m);
                } else {
                    cx.net.send(cx.rng, cx.world.now_ms, self.id, to, &m);
                }
            }
            while let Some(m) = self.loopback.pop_front() {
                moved = true;
                self.receive_local(m, cx);
            }
            while let Some(e) = self.relay.poll_event() {
                moved = true;
                self.route_event(e, cx);
            }
            while let Some(e) = self.takeovers.poll_event() {
                moved = true;
                self.takeover_event(e, cx);
            }
            while let Some((token, complete)) = self.pub_acks.poll_release() {
                moved = true;
                if let Some(id) = self.pub_tokens.remove(&token) {
                    cx.world.acked.insert(id, complete);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn receive_local(&mut self, m: Message, cx: &mut Ctx<'_>) {
        let (here, now) = (self.id, cx.world.now_ms);
        match m {
            Message::Claim(c) => self.claims.handle_claim(here, c, now),
            Message::ClaimAnswer(a) => self.takeovers.handle_claim_answer(a, now),
            Message::ClaimDone(d) => self.claims.handle_claim_done(here, d, now),
            Message::OwnerReport(r) => self.claims.handle_owner_report(here, r),
            Message::OwnerEnded(e) => self.claims.handle_owner_ended(here, e),
            Message::Evict(e) => self.takeovers.handle_evict(e),
            other => panic!("node {here} sent itself {other:?}"),
        }
    }

    fn route_event(&mut self, e: RouteEvent, cx: &mut Ctx<'_>) {
        cx.world.log(format_args!("{} route {:?}", self.id, e));
        match e {
            RouteEvent::Apply {
                from,
                epoch,
                seq,
                change,
            } => {
                let filters = self.remote.entry(from).or_default();
                if change.members > 0 {
                    filters.insert(change.filter.to_string());
                } else {
                    filters.remove(&*change.filter);
                }
                self.relay.handle_applied(from, epoch, seq);
            }
            RouteEvent::Replace {
                from,
                epoch,
                seq,
                changes,
            } => {
                let filters = changes
                    .iter()
                    .filter(|c| c.members > 0)
                    .map(|c| c.filter.to_string())
                    .collect();
                self.remote.insert(from, filters);
                self.relay.handle_applied(from, epoch, seq);
            }
            RouteEvent::Forget { node } => {
                self.remote.remove(&node);
            }
            RouteEvent::Released { token, out_of_sync } => match self.tokens.remove(&token) {
                Some(Purpose::Subscribe {
                    client,
                    filter,
                    sub_id,
                    fault_gen,
                }) => {
                    let sub = self
                        .sessions
                        .get_mut(&client)
                        .and_then(|s| s.subs.get_mut(&filter))
                        .filter(|s| s.id == sub_id);
                    if let Some(sub) = sub {
                        cx.world.fresh_subacks.push((filter, self.id));
                        let mut view = self.view.clone();
                        view.insert(self.id);
                        sub.acked = Some(Acked {
                            at_ms: cx.world.now_ms,
                            fault_gen,
                            out_of_sync,
                            view,
                        });
                    }
                }
                Some(Purpose::Import { client }) => {
                    let left = self.imports.get_mut(&client).expect("import waits");
                    *left -= 1;
                    if *left == 0 {
                        self.imports.remove(&client);
                        self.takeovers.handle_routes_acked(&client, cx.world.now_ms);
                    }
                }
                Some(Purpose::Other) | None => {}
            },
        }
    }

    fn takeover_event(&mut self, e: TakeoverEvent, cx: &mut Ctx<'_>) {
        cx.world.log(format_args!("{} takeover {:?}", self.id, e));
        match e {
            TakeoverEvent::Refused { .. } => {}
            TakeoverEvent::Start {
                client_id,
                at,
                previous,
            } => {
                let session = match previous.and_then(|_| self.sessions.remove(&client_id)) {
                    // A local takeover: the session changes shard.
                    Some(mut s) if !s.moving_out => {
                        self.set_interest_all(&s, cx);
                        s.at = at;
                        s.online = true;
                        s
                    }
                    other => {
                        if let Some(s) = other {
                            self.sessions.insert(client_id.clone(), s);
                            self.drop_session(&client_id, cx);
                        }
                        SessionModel::fresh(cx.world.incarnation(), at)
                    }
                };
                let moved = session.clone();
                cx.world.log(format_args!(
                    "{client_id} is session {} at {at}",
                    moved.incarnation
                ));
                self.sessions.insert(client_id, session);
                self.set_interest_all(&moved, cx);
            }
            TakeoverEvent::Import {
                client_id,
                at,
                snapshot,
            } => {
                let handle =
                    snapshot.map(|b| u64::from_le_bytes(b[..8].try_into().expect("handle")));
                let mut session = match handle.and_then(|h| cx.world.suitcase.remove(&h)) {
                    Some(s) => s,
                    None => SessionModel::fresh(cx.world.incarnation(), at),
                };
                if let Some(old) = self.sessions.remove(&client_id) {
                    self.sessions.insert(client_id.clone(), old);
                    self.drop_session(&client_id, cx);
                }
                cx.world.log(format_args!(
                    "{client_id} is session {} at {at}",
                    session.incarnation
                ));
                session.at = at;
                session.online = true;
                session.importing = true;
                session.moving_out = false;
                let filters: Vec<String> = session.subs.keys().cloned().collect();
                self.sessions.insert(client_id.clone(), session);
                if filters.is_empty() {
                    self.takeovers
                        .handle_routes_acked(&client_id, cx.world.now_ms);
                } else {
                    self.imports.insert(client_id.clone(), filters.len());
                    for f in filters {
                        let purpose = Purpose::Import {
                            client: client_id.clone(),
                        };
                        self.set_interest(at.shard, &f, purpose, cx);
                    }
                }
            }
            TakeoverEvent::Deliver {
                client_id,
                id,
                delivery: _,
            } => self.queue(&client_id, id, cx),
            TakeoverEvent::Online { client_id, .. } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.importing = false;
                }
            }
            TakeoverEvent::Export { client_id } => {
                let snapshot = self.sessions.get_mut(&client_id).map(|s| {
                    s.moving_out = true;
                    s.online = false;
                    cx.world.next_handle += 1;
                    let handle = cx.world.next_handle;
                    let mut moving = s.clone();
                    moving.moving_out = false;
                    cx.world.suitcase.insert(handle, moving);
                    Bytes::from(handle.to_le_bytes().to_vec())
                });
                self.takeovers.handle_exported(&client_id, snapshot);
            }
            TakeoverEvent::Drop { client_id } | TakeoverEvent::Evict { client_id } => {
                self.drop_session(&client_id, cx)
            }
        }
    }

    // ------------------------------------------------------------ shards model

    fn token(&mut self, purpose: Purpose) -> u64 {
        self.next_token += 1;
        self.tokens.insert(self.next_token, purpose);
        self.next_token
    }

    /// Tells the relay shard `shard`'s count of `filter`.
    fn set_interest(&mut self, shard: ShardId, filter: &str, purpose: Purpose, cx: &mut Ctx<'_>) {
        let members = self
            .sessions
            .values()
            .filter(|s| s.at.shard == shard && s.subs.contains_key(filter))
            .count() as u32;
        let token = self.token(purpose);
        let change = InterestChange {
            filter: ByteStr::from(filter),
            group: None,
            members,
        };
        self.relay
            .handle_interest(shard, &change, token, cx.world.now_ms);
    }

    fn set_interest_all(&mut self, s: &SessionModel, cx: &mut Ctx<'_>) {
        let filters: Vec<String> = s.subs.keys().cloned().collect();
        for f in filters {
            self.set_interest(s.at.shard, &f, Purpose::Other, cx);
        }
    }

    fn drop_session(&mut self, client: &str, cx: &mut Ctx<'_>) {
        if let Some(s) = self.sessions.remove(client) {
            let home = self.homes.home_of(client);
            self.takeovers.handle_session_ended(client, home);
            self.set_interest_all(&s, cx);
        }
    }

    /// Queues a message for a local session (or holds it for a moving one).
    fn queue(&mut self, client: &str, id: MessageId, cx: &mut Ctx<'_>) {
        let info = cx.world.messages[&id].clone();
        if let Some(s) = self.sessions.get_mut(client) {
            cx.world.deliveries += 1;
            if let Err(e) = s.receive(id, &info) {
                cx.world
                    .violations
                    .push(format!("{client} on {}: {e}", self.id));
            }
        }
    }

    /// Routes a message to this node's sessions only.
    fn deliver_local(&mut self, id: MessageId, cx: &mut Ctx<'_>) {
        let info = &cx.world.messages[&id];
        let clients: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.subs.keys().any(|f| matches(f, &info.topic)))
            .map(|(c, _)| c.clone())
            .collect();
        for client in clients {
            let delivery = delivery_of(&cx.world.messages[&id]);
            let hold = self.sabotage != Some(Sabotage::NoHolding);
            if hold && self.takeovers.hold(&client, id, delivery.clone()) {
                continue;
            }
            if self.takeovers.intercept(&client, id, delivery).is_some() {
                self.queue(&client, id, cx);
            }
        }
    }

    fn forwarded(&mut self, from: NodeId, f: Forward, cx: &mut Ctx<'_>) {
        let shard = f.id.shard;
        match self.fwd_in.handle_forward(from, shard, f.stream_seq) {
            Ok(true) => {
                self.deliver_local(f.id, cx);
                self.fwd_in.handle_queued(from, shard, f.stream_seq);
            }
            Ok(false) => {}
            Err(gap) => cx.world.violations.push(format!("{}: {gap}", self.id)),
        }
    }
}

/// A records frame as the rkyv batch the simulated network carries (it
/// moves `Message`s; only ids and numbers matter to it).
fn sim_batch(frame: records::RecordsFrame) -> Message {
    let forwards = frame
        .forwards
        .into_iter()
        .map(|f| Forward {
            id: f.id,
            stream_seq: f.stream_seq,
            message: MessageSnapshot {
                topic: f.message.topic.to_string(),
                payload: f.message.payload,
                qos: f.message.qos as u8,
                retain: f.message.retain,
                payload_format_indicator: None,
                message_expiry_interval_s: None,
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
                content_type: None,
                origin: None,
                expires_at_unix_ms: f.expires_at_unix_ms,
            },
            shared: f.shared,
        })
        .collect();
    Message::ForwardBatch(ForwardBatch {
        window: frame.window,
        forwards,
    })
}

/// The routed message of a simulated publish.
pub(super) fn message_of(info: &super::world::MsgInfo) -> std::sync::Arc<crate::session::Message> {
    std::sync::Arc::new(crate::session::Message {
        topic: ByteStr::from(info.topic.as_str()),
        payload: Bytes::from(info.pub_seq.to_le_bytes().to_vec()),
        qos: crate::codec::QoS::from_u8(info.qos).expect("the simulation publishes QoS 0-2"),
        retain: false,
        properties: None,
        origin: None,
        expires_at: None,
        id: None,
    })
}

pub(super) fn delivery_of(info: &super::world::MsgInfo) -> DeliverySnapshot {
    DeliverySnapshot {
        message: MessageSnapshot {
            topic: info.topic.clone(),
            payload: Bytes::from(info.pub_seq.to_le_bytes().to_vec()),
            qos: info.qos,
            retain: false,
            payload_format_indicator: None,
            message_expiry_interval_s: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            content_type: None,
            origin: None,
            expires_at_unix_ms: None,
        },
        qos: info.qos,
        retain: false,
        subscription_ids: Vec::new(),
        id: None,
    }
}
