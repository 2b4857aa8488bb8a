//! Session takeover across nodes, the shard's part (docs/adr/0001-cluster.md,
//! "Session takeover across nodes"; the driver's part is
//! `cluster::driver::takeover`).
//!
//! New owner: after the node-local claim, a connect claims its id in the
//! cluster (`claim_in_cluster`). When the session comes from a peer it is
//! imported from its snapshot (`import_from_peer`): its slot is
//! `Importing` (what this node routes to it waits there), its
//! subscriptions are added and acknowledged cluster-wide, then the driver
//! hands over what the previous owner held, and both are merged into the
//! session.
//!
//! Previous owner: the driver runs `export_to_peer` on the owning shard
//! (DISCONNECT 0x8E, no will; the session leaves as a snapshot and its
//! slot becomes `Exported`, holding what its subscriptions still deliver),
//! then `end_export` once the new owner has its routes and the linger
//! passed: the subscriptions leave the router and what was held goes to
//! the new owner.

use super::io::Oneshot;
use super::service::ShardContext;
use super::sessions::{Handover, Moving, Slot};
use super::state::Shard;
use crate::cluster::driver::takeover::ClaimOutcome;
use crate::cluster::driver::ToDriver;
use crate::codec::ByteStr;
use crate::router::Location;
use crate::session::snapshot::{DeliverySnapshot, MessageSnapshot, SessionSnapshot, WillSnapshot};
use crate::session::{Delivery, Message, MessageId, Session, WallClock};
use ahash::AHashMap;
use bytes::Bytes;
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The cluster refused the claim of a client id: CONNACK Server
/// unavailable.
#[derive(Debug)]
pub struct Unavailable;

impl Shard {
    /// Claims `client_id` cluster-wide (after the node-local claim);
    /// `None` at once on a single node.
    pub(super) async fn claim_in_cluster(&self, client_id: &ByteStr) -> Option<ClaimOutcome> {
        let cluster = self.cluster.as_ref()?;
        let (answer, outcome) = oneshot::channel();
        let claim = ToDriver::Claim {
            client_id: client_id.to_string(),
            at: self.location(),
            answer,
        };
        if cluster.driver().send(claim).await.is_err() {
            return Some(ClaimOutcome::Refused); // the node is stopping
        }
        Some(outcome.await.unwrap_or(ClaimOutcome::Refused))
    }

    /// The session of `client_id` ended here: the driver stops reporting
    /// this node as its owner.
    pub(super) fn cluster_session_ended(&self, client_id: &ByteStr) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(ToDriver::SessionEnded {
                client_id: client_id.to_string(),
                at: self.location(),
            });
        }
    }

    /// Imports the session a peer exported (`None`: it had none, or its
    /// snapshot did not validate: a fresh start). Returns once the peer's
    /// held deliveries are in it; the caller makes the connection reachable
    /// without awaiting, as for a move between shards.
    pub(super) async fn import_from_peer(
        self: &Rc<Self>,
        client_id: &ByteStr,
        snapshot: Option<Bytes>,
    ) -> Option<Session> {
        let clock = WallClock::now();
        let session = snapshot.and_then(|bytes| {
            let decoded = SessionSnapshot::decode(&bytes).and_then(|s| s.into_session(&clock));
            match decoded {
                // The will and the expiry do not travel: the previous
                // owner dropped the will, and the client is connecting.
                Ok((session, _, _)) => Some(session),
                Err(e) => {
                    tracing::warn!(client_id = %client_id, "session from a peer refused, starting fresh: {e}");
                    None
                }
            }
        });
        self.bring_in(client_id, session).await
    }

    /// Makes `session` (from a peer) this shard's: its slot is `Importing`
    /// while its subscriptions are added and acknowledged cluster-wide,
    /// then what the previous owner held and what was buffered here are
    /// merged into it. `None` in, `None` out, once the takeover ended.
    pub(super) async fn bring_in(
        self: &Rc<Self>,
        client_id: &ByteStr,
        session: Option<Session>,
    ) -> Option<Session> {
        self.bring_in_from(client_id, session, true).await
    }

    /// `bring_in`; `from_peer` false: the session comes from the Redis
    /// backend, no peer holds anything for it (the driver is not told).
    pub(super) async fn bring_in_from(
        self: &Rc<Self>,
        client_id: &ByteStr,
        session: Option<Session>,
        from_peer: bool,
    ) -> Option<Session> {
        self.sessions
            .insert(client_id.as_str(), Slot::Importing(Box::default()));
        if let Some(s) = &session {
            self.subscribe_session(s).await;
            // Every peer applies the subscriptions before the previous
            // owner stops matching them (EMQX PR #6396's race).
            let mut released = Vec::new();
            for (filter, _, _) in s.subscriptions() {
                released.extend(self.number_subscribe(filter, None).1);
            }
            for r in released {
                let _ = r.await;
            }
        }
        let held = if from_peer {
            self.imported_in_cluster(client_id).await
        } else {
            Vec::new()
        };
        let here = self.sessions.end_import(client_id.as_str());
        let mut session = session?;
        tracing::debug!(
            shard = self.id,
            client_id = %client_id,
            held_there = held.len(),
            buffered_here = here.len(),
            "session moved in from a peer"
        );
        let clock = WallClock::now();
        merge_moved(&mut session, held, here, &clock, Instant::now());
        self.durable_put_session(&mut session, &clock);
        Some(session)
    }

    /// Tells the driver the imported session's routes are acknowledged;
    /// returns what the previous owner held.
    pub(super) async fn imported_in_cluster(&self, client_id: &ByteStr) -> Vec<DeliverySnapshot> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let (held, answer) = oneshot::channel();
        let imported = ToDriver::Imported {
            client_id: client_id.to_string(),
            held,
        };
        if cluster.driver().send(imported).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Kicks `client_id`'s connection (DISCONNECT 0x8E, no will) or takes
    /// its offline session, and exports it for `to`; its subscriptions
    /// keep matching and what they deliver is held (`Exported`) until
    /// `end_export`. `None`: no session here.
    async fn export_to_peer(self: &Rc<Self>, client_id: ByteStr, to: Location) -> Option<Bytes> {
        let out = Oneshot::new();
        let mut offline = None;
        match self.sessions.take(client_id.as_str()) {
            Some((key, Slot::Online(handle))) => {
                // Back in place until its task ends: deliveries go into the
                // closed connection's session meanwhile.
                self.sessions.put_back(key, Slot::Online(handle.clone()));
                self.sessions
                    .set_handover(&handle, Handover::Peer(to, out.clone()));
                handle.conn.borrow_mut().taken_over_by_peer();
                self.drain_sync_actions(&handle);
                handle.request_close();
                drop(handle);
            }
            Some((_, Slot::Offline(parked))) => {
                // The expiry and a delayed will travel with an offline
                // session: a push (`session_push`) keeps them on the new
                // node; a connect there drops them (the client is back).
                offline = Some((parked.expires_at, self.timers.take_will_due(&client_id)));
                let to = Handover::Peer(to, out.clone());
                self.hand_over(&client_id, to, Some(parked.session)).await;
            }
            other => {
                if let Some((key, slot)) = other {
                    tracing::warn!(shard = self.id, client_id = %client_id, "takeover by a peer of a session moving here");
                    self.sessions.put_back(key, slot);
                }
                return None;
            }
        }
        let mut snapshot = out.take().await?;
        if let Some((expires_at, will)) = offline {
            let clock = WallClock::now();
            snapshot.expires_at_unix_ms = expires_at.map(|t| clock.to_unix_ms(t));
            snapshot.will = will.map(|(message, due)| WillSnapshot {
                message: MessageSnapshot::of(&message, &clock),
                due_unix_ms: clock.to_unix_ms(due),
            });
        }
        match snapshot.encode() {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(e) => {
                tracing::warn!(client_id = %client_id, "session not sent to its new node: {e}");
                None
            }
        }
    }

    /// The exported session's new owner has its routes: stop matching its
    /// subscriptions here; returns what they delivered since the export.
    async fn end_export(self: &Rc<Self>, client_id: ByteStr) -> Vec<DeliverySnapshot> {
        // A publish another shard routed here before the new routes were
        // known may still be on its way: after the barrier it has arrived.
        self.barrier().await;
        let (deliveries, changes) = match self.sessions.take(client_id.as_str()) {
            Some((_, Slot::Exported(m))) => {
                let Moving {
                    deliveries,
                    filters,
                } = *m;
                (deliveries, self.unroute(&client_id, filters))
            }
            other => {
                if let Some((key, slot)) = other {
                    self.sessions.put_back(key, slot);
                }
                (Vec::new(), Vec::new())
            }
        };
        self.release_local(&client_id).await;
        let clock = WallClock::now();
        let held = deliveries
            .iter()
            .map(|d| DeliverySnapshot::of(d, &clock))
            .collect();
        self.announce_interest(changes).await;
        held
    }
}

/// Puts what the previous owner held and what this node buffered into the
/// moved session. A message that reached both nodes (both routes were in
/// place) is in both lists with the same cluster-wide id
/// (`session::message_id`): a held delivery whose id is among this node's
/// is dropped, once per copy here, so each message is delivered once and
/// two messages with the same topic and payload stay two. A delivery
/// without an id (rebuilt from bytes written before ids existed) is
/// recognised by its topic and payload among this node's deliveries
/// without an id, counted. Per publisher, what only the previous owner got
/// was published before the peers applied the new owner's routes, so it
/// comes first.
pub(super) fn merge_moved(
    session: &mut Session,
    held: Vec<DeliverySnapshot>,
    here: Vec<Delivery>,
    clock: &WallClock,
    now: Instant,
) {
    let mut both = Copies::default();
    for d in &here {
        both.add(&d.message);
    }
    for h in held {
        match h.into_delivery(clock) {
            Ok(d) => {
                if !both.take(&d.message) {
                    session.deliver_offline(d, now);
                }
            }
            Err(e) => tracing::warn!("a held delivery from a peer refused: {e}"),
        }
    }
    for d in here {
        session.deliver_offline(d, now);
    }
}

/// The messages this node buffered for a moving session, counted: by id,
/// and by topic and payload for those without one.
#[derive(Default)]
struct Copies {
    by_id: AHashMap<MessageId, usize>,
    by_content: AHashMap<(ByteStr, Bytes), usize>,
}

impl Copies {
    fn add(&mut self, m: &Message) {
        let n = match m.id {
            Some(id) => self.by_id.entry(id).or_default(),
            None => {
                let key = (m.topic.clone(), m.payload.clone());
                self.by_content.entry(key).or_default()
            }
        };
        *n += 1;
    }

    /// True if a copy of `m` is here (and counts it off).
    fn take(&mut self, m: &Message) -> bool {
        let n = match m.id {
            Some(id) => self.by_id.get_mut(&id),
            None => self
                .by_content
                .get_mut(&(m.topic.clone(), m.payload.clone())),
        };
        match n {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The driver's requests to the shard holding a session (`NodeHandle::call_async`).
impl ShardContext {
    pub fn export_to_peer(
        self,
        client_id: String,
        to: Location,
    ) -> impl Future<Output = Option<Bytes>> {
        let shard = self.shard().clone();
        async move { shard.export_to_peer(ByteStr::from(client_id), to).await }
    }

    pub fn end_export(self, client_id: String) -> impl Future<Output = Vec<DeliverySnapshot>> {
        let shard = self.shard().clone();
        async move { shard.end_export(ByteStr::from(client_id)).await }
    }

    /// A newer owner won (a partition healed): kick (0x8E, no will) and
    /// drop the session.
    pub fn evict(self, client_id: String) -> impl Future<Output = ()> {
        let shard = self.shard().clone();
        async move {
            let id = ByteStr::from(client_id);
            let here = shard.location();
            let _ = shard.export_to_peer(id.clone(), here).await;
            let _ = shard.end_export(id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::session::Message;
    use std::sync::Arc;

    fn delivery(payload: &str) -> Delivery {
        delivery_with_id(payload, None)
    }

    fn delivery_with_id(payload: &str, seq: Option<u64>) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: "t".into(),
                payload: Bytes::from(payload.to_owned()),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: None,
                origin: None,
                expires_at: None,
                id: seq.map(|seq| MessageId {
                    node: 3,
                    shard: 1,
                    seq,
                }),
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
        }
    }

    /// The previous owner held 1-4 (3 and 4 also reached this node, whose
    /// route was in place by then), this node buffered 3-5: the session
    /// gets 1-5, each once, in order.
    #[test]
    fn held_and_buffered_deliveries_merge_each_message_once_in_order() {
        let clock = WallClock::now();
        let held: Vec<DeliverySnapshot> = ["1", "2", "3", "4"]
            .iter()
            .map(|p| DeliverySnapshot::of(&delivery(p), &clock))
            .collect();
        let here = ["3", "4", "5"].iter().map(|p| delivery(p)).collect();
        let mut session = Session::new("c".into(), 60, 100);
        merge_moved(&mut session, held, here, &clock, Instant::now());
        let queued: Vec<Bytes> = SessionSnapshot::of(&session, None, None, &clock)
            .queue
            .into_iter()
            .map(|q| q.delivery.message.payload)
            .collect();
        assert_eq!(
            queued,
            ["1", "2", "3", "4", "5"].map(|p| Bytes::from(p.as_bytes()))
        );
    }

    fn queued(session: &Session, clock: &WallClock) -> Vec<(Option<u64>, Bytes)> {
        SessionSnapshot::of(session, None, None, clock)
            .queue
            .into_iter()
            .map(|q| (q.delivery.id.map(|id| id.seq), q.delivery.message.payload))
            .collect()
    }

    /// A sensor publishes "x" as messages 1, 2 and 3. The previous owner
    /// held 1 and 2 (the new owner's route was not in place for 1), this
    /// node buffered 2 and 3: the session gets 1, 2 and 3, each once. The
    /// merge by topic and payload it replaced took held 1 for the "x" that
    /// reached both nodes and dropped held 1 and 2, losing one message.
    #[test]
    fn distinct_messages_with_equal_bytes_each_survive_once() {
        let clock = WallClock::now();
        let held: Vec<DeliverySnapshot> = [1, 2]
            .into_iter()
            .map(|seq| DeliverySnapshot::of(&delivery_with_id("x", Some(seq)), &clock))
            .collect();
        let here = [2, 3]
            .into_iter()
            .map(|seq| delivery_with_id("x", Some(seq)))
            .collect();
        let mut session = Session::new("c".into(), 60, 100);
        merge_moved(&mut session, held, here, &clock, Instant::now());
        let x = Bytes::from_static(b"x");
        assert_eq!(
            queued(&session, &clock),
            [(Some(1), x.clone()), (Some(2), x.clone()), (Some(3), x)]
        );
    }

    /// Deliveries without an id (from bytes of an older version) fall back
    /// to topic and payload, and only among the others without an id: a
    /// held "a" with no id is not taken for a buffered "a" that has one.
    #[test]
    fn deliveries_without_an_id_merge_by_content_among_themselves() {
        let clock = WallClock::now();
        let held: Vec<DeliverySnapshot> = [("a", None), ("b", None), ("c", Some(7))]
            .into_iter()
            .map(|(p, seq)| DeliverySnapshot::of(&delivery_with_id(p, seq), &clock))
            .collect();
        let here = vec![
            delivery_with_id("a", Some(5)),
            delivery_with_id("b", None),
            delivery_with_id("c", Some(7)),
        ];
        let mut session = Session::new("c".into(), 60, 100);
        merge_moved(&mut session, held, here, &clock, Instant::now());
        let b = |p: &'static str| Bytes::from_static(p.as_bytes());
        assert_eq!(
            queued(&session, &clock),
            [
                (None, b("a")),
                (Some(5), b("a")),
                (None, b("b")),
                (Some(7), b("c"))
            ]
        );
    }
}
