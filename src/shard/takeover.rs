//! The client-id registry and session takeover: claims at an id's home
//! shard, one at a time; taking a session from this shard or another one
//! without a moment in which a delivery for it finds nothing
//! (docs/ARCHITECTURE.md, "Connect and session takeover").

use super::io::Oneshot;
use super::msg::{Reply, ShardMsg};
use super::registry::Answer;
use super::sessions::{Handover, Moving, Parked, Slot};
use super::state::{Shard, ShardId};
use super::takeover_remote::Unavailable;
use crate::cluster::driver::takeover::ClaimOutcome;
use crate::codec::ByteStr;
use crate::router::Location;
use crate::session::{Session, WallClock};
use std::rc::Rc;
use std::time::Instant;

impl Shard {
    /// Make this shard the owner of `client_id` and bring its session here,
    /// from wherever it lives; its subscriptions are then in this shard's
    /// router. The caller must send `claim_done` once its connection is in
    /// `slots`: until then no other connect of the id gets its claim
    /// answered. Returns at once after the session became reachable here
    /// (no await in between), and the caller makes the connection reachable
    /// without awaiting either, so no delivery finds the session nowhere.
    pub async fn acquire_session(
        self: &Rc<Self>,
        client_id: &ByteStr,
        clean_start: bool,
    ) -> Result<Option<Session>, Unavailable> {
        let prev = self.claim(client_id).await;
        // A single node asks nobody else (`None` at once).
        match self.claim_in_cluster(client_id).await {
            None | Some(ClaimOutcome::Local) => {
                let local = self.acquire_local(prev, client_id, clean_start).await;
                if local.is_some() {
                    return Ok(local);
                }
                // No live owner: the Redis backend may hold it
                // (`durable_resume`).
                match self.load_from_store(client_id, clean_start).await? {
                    Some(loaded) => Ok(self.bring_in_from(client_id, Some(loaded), false).await),
                    None => Ok(None),
                }
            }
            Some(ClaimOutcome::Refused) => Err(Unavailable),
            Some(ClaimOutcome::Import { snapshot }) => {
                // A session of the id on this node as well (two owners
                // after a partition): the moving one has the newer claim.
                if let Some(stale) = self.acquire_local(prev, client_id, true).await {
                    self.unsubscribe_session(&stale).await;
                }
                if snapshot.is_none() {
                    // The peer had none (or is gone): Redis may hold it.
                    let loaded = match self.load_from_store(client_id, clean_start).await {
                        Ok(loaded) => loaded,
                        Err(unavailable) => {
                            // The driver waits for the import's end.
                            self.bring_in(client_id, None).await;
                            return Err(unavailable);
                        }
                    };
                    return Ok(self.bring_in(client_id, loaded).await);
                }
                Ok(self.import_from_peer(client_id, snapshot).await)
            }
        }
    }

    /// The session of `client_id` from this node's shards: `prev` (the
    /// node-local registry's answer) names one of them or none.
    pub(super) async fn acquire_local(
        self: &Rc<Self>,
        prev: Option<Location>,
        client_id: &ByteStr,
        clean_start: bool,
    ) -> Option<Session> {
        match prev {
            Some(prev) if prev != self.location() => {
                // The node-local registry names this node's shards only;
                // sessions on other nodes come through the cluster claim.
                debug_assert!(prev.is_on(self.settings.node), "{prev}");
                self.import_session(prev.shard, client_id, clean_start)
                    .await
            }
            _ => self.take_local(client_id, clean_start).await,
        }
    }

    /// Takes the session of `client_id` over from shard `prev`, without a
    /// moment in which neither shard's router would deliver to it: `prev`
    /// keeps matching its subscriptions, keeping what they deliver, until
    /// they are in this shard's router and every shard knows; this shard
    /// keeps what they deliver here meanwhile; then `prev` stops and sends
    /// what it kept (`TakeoverEnd`, `TakeoverPendings`), and both go into
    /// the session, each message once (`Session::deliver_moved`).
    async fn import_session(
        self: &Rc<Self>,
        prev: ShardId,
        client_id: &ByteStr,
        clean_start: bool,
    ) -> Option<Session> {
        let moved = self
            .mesh
            .call(prev, |token| ShardMsg::Takeover {
                client_id: client_id.clone(),
                token,
                clean_start,
            })
            .await;
        let snapshot = match moved {
            Some(Reply::Session(snapshot)) => *snapshot?,
            // `prev` stopped first (the node is stopping).
            None => return None,
            Some(_) => unreachable!("a takeover is answered with a session"),
        };
        let mut session = self.with_lifecycle(|l| l.handle_import(snapshot, &WallClock::now()));
        // Nothing else holds the id here: this connect holds its claim,
        // and the previous owner was `prev`.
        debug_assert!(!self.sessions.contains(client_id.as_str()));
        self.sessions
            .insert(client_id.as_str(), Slot::Importing(Box::default()));
        self.subscribe_session(&session).await;
        let ended = self
            .mesh
            .call(prev, |token| ShardMsg::TakeoverEnd {
                client_id: client_id.clone(),
                token,
            })
            .await;
        let old_shard = match ended {
            Some(Reply::Pendings(deliveries)) => deliveries,
            // `prev` stopped first: what it kept is lost with it.
            None => Vec::new(),
            Some(_) => unreachable!("a takeover's end is answered with deliveries"),
        };
        let here = self.sessions.end_import(client_id.as_str());
        tracing::debug!(
            shard = self.id,
            client_id = %client_id,
            from = prev,
            delivered_there = old_shard.len(),
            delivered_here = here.len(),
            "session moved in"
        );
        session.deliver_moved(old_shard, here, Instant::now());
        // In this shard's store from now on, under a new epoch (the old
        // shard removed it from its own).
        self.durable_put_session(&mut session, &WallClock::now());
        Some(session)
    }

    /// Asks the home of `client_id` to make this shard its owner; returns
    /// the previous owner once every earlier connect of the id is in place.
    pub(super) async fn claim(self: &Rc<Self>, client_id: &ByteStr) -> Option<Location> {
        let home = self.home_of(client_id);
        let (token, done) = self.mesh.open([home]);
        if home == self.id {
            self.on_claim(self.id, client_id.clone(), token);
        } else {
            let client_id = client_id.clone();
            let claim = ShardMsg::Claim { client_id, token };
            self.mesh.request(home, token, claim).await;
        }
        match self.mesh.wait(token, done).await.into_single() {
            Some(Reply::Claimed { previous }) => previous,
            // The home stopped first (the node is stopping): no previous
            // owner to take a session from.
            None => None,
            Some(_) => unreachable!("a claim is answered with its previous owner"),
        }
    }

    /// The connect that claimed `client_id` has its connection in `slots`:
    /// the home may answer the next claim.
    pub async fn claim_done(self: &Rc<Self>, client_id: &ByteStr) {
        let home = self.home_of(client_id);
        if home == self.id {
            self.on_claim_done(client_id);
        } else {
            let client_id = client_id.clone();
            self.send(home, ShardMsg::ClaimDone { client_id }).await;
        }
    }

    /// At the home shard: a claim of `client_id` by shard `from`.
    pub(super) fn on_claim(self: &Rc<Self>, from: ShardId, client_id: ByteStr, token: u64) {
        let answer = self.sessions.claim(self.at(from), &client_id, token);
        self.answer_claim(answer);
    }

    /// At the home shard: the connect in progress for `client_id` is in
    /// place.
    pub(super) fn on_claim_done(self: &Rc<Self>, client_id: &ByteStr) {
        let answer = self.sessions.claim_done(client_id);
        self.answer_claim(answer);
    }

    /// At the home shard: shard `from` no longer holds a session for
    /// `client_id`.
    pub(super) fn on_release(&self, from: ShardId, client_id: &ByteStr) {
        let from = self.at(from);
        self.sessions.release(from, client_id);
    }

    fn answer_claim(self: &Rc<Self>, answer: Option<Answer>) {
        let Some(Answer {
            to,
            token,
            previous,
        }) = answer
        else {
            return;
        };
        assert!(
            to.is_on(self.settings.node),
            "claim from another node ({to})"
        );
        // Never waits: the handler of a shard message must not wait for a
        // full channel (see `dispatch`).
        self.reply(to.shard, token, Reply::Claimed { previous });
    }

    /// Take the local session of `client_id`, kicking its connection if
    /// online: the connection's end parks the session in `slots` (where
    /// deliveries keep reaching it) and signals; it is taken from there.
    async fn take_local(
        self: &Rc<Self>,
        client_id: &ByteStr,
        clean_start: bool,
    ) -> Option<Session> {
        loop {
            let slot = self.sessions.take(client_id.as_str());
            match slot {
                None => return None,
                Some((_, Slot::Offline(parked))) => {
                    self.cancel_will(client_id);
                    return Some(parked.session);
                }
                Some((key, Slot::Online(handle))) => {
                    // Put it back until its task ends: deliveries go into the
                    // closed connection's session meanwhile.
                    self.sessions.put_back(key, Slot::Online(handle.clone()));
                    let parked = Oneshot::new();
                    self.sessions
                        .set_handover(&handle, Handover::Local(parked.clone()));
                    handle.conn.borrow_mut().takeover(clean_start);
                    self.drain_sync_actions(&handle);
                    handle.request_close();
                    // The connection's own tasks must be the last holders of the
                    // handle when they finish.
                    drop(handle);
                    parked.take().await;
                }
                Some((key, moving)) => {
                    // A move between shards: only a connect holding the claim
                    // starts one, and this one holds it now.
                    tracing::warn!(shard = self.id, client_id = %client_id, "session moving while claimed");
                    self.sessions.put_back(key, moving);
                    return None;
                }
            }
        }
    }

    /// Give a session to whoever asked for it. What places it runs before
    /// the first await: called right where the session left its connection
    /// or its parked slot, it leaves no moment in which a delivery for it
    /// would find nothing. A local taker finds it parked; a remote one gets
    /// it while this shard keeps matching its subscriptions (`Exported`)
    /// until `TakeoverEnd`.
    pub async fn hand_over(
        self: &Rc<Self>,
        client_id: &ByteStr,
        to: Handover,
        session: Option<Session>,
    ) {
        match to {
            Handover::Local(parked) => {
                if let Some(session) = session {
                    self.sessions.insert(
                        client_id.as_str(),
                        Slot::Offline(Box::new(Parked {
                            session,
                            expires_at: None,
                        })),
                    );
                }
                parked.put(());
            }
            Handover::Peer(to, out) => {
                if let Some(s) = &session {
                    let filters = s.subscriptions().map(|(f, _, _)| f.clone()).collect();
                    self.sessions.insert(
                        client_id.as_str(),
                        Slot::Exported(Box::new(Moving {
                            deliveries: Vec::new(),
                            filters,
                        })),
                    );
                }
                let clock = WallClock::now();
                out.put(session.map(|mut s| {
                    self.durable_forget(&mut s);
                    self.with_lifecycle(|l| l.handle_export(s, to.shard, &clock))
                }));
            }
            Handover::Remote(shard, token) => {
                if let Some(s) = &session {
                    let filters = s.subscriptions().map(|(f, _, _)| f.clone()).collect();
                    self.sessions.insert(
                        client_id.as_str(),
                        Slot::Exported(Box::new(Moving {
                            deliveries: Vec::new(),
                            filters,
                        })),
                    );
                }
                // What moves is the session's snapshot, by value: the shape
                // a move to another node or to disk will take.
                let session = session.map(|mut s| {
                    self.durable_forget(&mut s);
                    self.with_lifecycle(|l| l.handle_export(s, shard, &WallClock::now()))
                });
                self.reply(shard, token, Reply::Session(session));
            }
        }
    }

    /// Another shard asks for the session of `client_id`. The home answered
    /// its claim after the connect that made this shard the owner was in
    /// place, so the session is online, offline, or gone (never being
    /// acquired here).
    pub(super) async fn on_takeover(
        self: &Rc<Self>,
        from: ShardId,
        client_id: ByteStr,
        token: u64,
        clean_start: bool,
    ) {
        let slot = self.sessions.take(client_id.as_str());
        match slot {
            Some((key, Slot::Online(handle))) => {
                self.sessions.put_back(key, Slot::Online(handle.clone()));
                self.sessions
                    .set_handover(&handle, Handover::Remote(from, token));
                handle.conn.borrow_mut().takeover(clean_start);
                self.drain_sync_actions(&handle);
                handle.request_close();
            }
            Some((_, Slot::Offline(parked))) => {
                self.cancel_will(&client_id);
                self.hand_over(
                    &client_id,
                    Handover::Remote(from, token),
                    Some(parked.session),
                )
                .await;
            }
            other => {
                if let Some((key, moving)) = other {
                    tracing::warn!(shard = self.id, client_id = %client_id, "takeover of a session still moving");
                    self.sessions.put_back(key, moving);
                }
                self.hand_over(&client_id, Handover::Remote(from, token), None)
                    .await;
            }
        }
    }

    /// The shard that took the session of `client_id` over has its
    /// subscriptions in place, and every shard knows: stop matching them
    /// here and send what they delivered since the session left.
    pub(super) async fn on_takeover_end(
        self: &Rc<Self>,
        from: ShardId,
        client_id: ByteStr,
        token: u64,
    ) {
        // A publish routed here by a shard that had not yet learned of the
        // new owner's subscriptions may still be on its way (channels are
        // FIFO only per pair of shards): once every shard answered a
        // barrier, it has arrived.
        self.barrier().await;
        let slot = self.sessions.take(client_id.as_str());
        let (deliveries, changes) = match slot {
            Some((_, Slot::Exported(m))) => {
                let Moving {
                    deliveries,
                    filters,
                } = *m;
                // In the same step as the slot goes: from here on, this
                // shard's router no longer delivers to the session.
                (deliveries, self.unroute(&client_id, filters))
            }
            other => {
                if let Some((key, slot)) = other {
                    self.sessions.put_back(key, slot);
                }
                (Vec::new(), Vec::new())
            }
        };
        self.reply(from, token, Reply::Pendings(deliveries));
        self.announce_interest(changes).await;
    }

    /// The session of `client_id` ended on this shard: tell its home, and
    /// the cluster's (through the driver).
    pub async fn release(&self, client_id: &ByteStr) {
        self.release_local(client_id).await;
        self.cluster_session_ended(client_id);
    }

    /// Tells the id's home shard only (the session left this node).
    pub async fn release_local(&self, client_id: &ByteStr) {
        let home = self.home_of(client_id);
        if home == self.id {
            self.on_release(self.id, client_id);
        } else {
            self.send(
                home,
                ShardMsg::Release {
                    client_id: client_id.clone(),
                },
            )
            .await;
        }
    }
}
