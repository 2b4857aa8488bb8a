//! A connection's actions carried out by its shard (`session::Action`:
//! publish, subscribe, unsubscribe, close), and the interest changes they
//! make, announced to the other shards. A publish goes through
//! `publish.rs`; the router change and its number are made in one step
//! (`Routes`, then `Interest::number`, with no await between).

use super::msg::ShardMsg;
use super::publish::RemoteSends;
use super::state::{ConnHandle, Shard};
use crate::codec::ByteStr;
use crate::metrics::ShardMetrics;
use crate::router::NumberedChange;
use crate::session::{Action, Delivery, Session};
use std::rc::Rc;
use std::time::Instant;

/// A connection action `Shard::run_actions_now` could not finish without
/// waiting.
pub enum Deferred {
    Remote(RemoteSends),
    Action(Action),
}

impl Shard {
    /// Actions that can follow a delivery or a kick are handled without
    /// awaiting; a publish (none is expected here) is routed in a task.
    pub fn drain_sync_actions(self: &Rc<Self>, handle: &Rc<ConnHandle>) {
        loop {
            let action = handle.conn.borrow_mut().poll_action();
            match action {
                None => break,
                Some(Action::Close { .. }) => handle.request_close(),
                Some(Action::Publish(m)) => {
                    ShardMetrics::add(&self.metrics.messages_received, 1);
                    let me = self.clone();
                    glommio::spawn_local(async move { me.publish(m).await }).detach();
                }
                Some(other) => {
                    let me = self.clone();
                    let h = handle.clone();
                    glommio::spawn_local(async move { me.apply_action(&h, other).await }).detach();
                }
            }
        }
    }

    /// Carry out one action of a connection.
    pub async fn apply_action(self: &Rc<Self>, handle: &Rc<ConnHandle>, action: Action) {
        match action {
            Action::Publish(m) => {
                ShardMetrics::add(&self.metrics.messages_received, 1);
                self.publish(m).await
            }
            Action::Subscribe {
                filter,
                options,
                identifier,
                existed,
            } => {
                let client = handle.conn.borrow().client_id().clone();
                let outcome = self.routes.subscribe(&client, &filter, options, identifier);
                let (update, relay) = self.number_subscribe(&filter, outcome.interest);
                let send_retained = match options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
                let shared = crate::router::topic::parse_shared(&filter)
                    .ok()
                    .flatten()
                    .is_some();
                let barrier = update.is_none() && send_retained && !shared;
                if update.is_some() || barrier || relay.is_some() {
                    handle.tx_hold.set(handle.tx_hold.get() + 1);
                    if let Some(update) = update {
                        self.broadcast_interest_acked(update).await;
                    } else if barrier {
                        // No interest change to wait for, but a retained
                        // message another shard acknowledged may still be
                        // on its way here: wait until every shard's
                        // earlier messages (its `Retain`s) have arrived.
                        self.barrier().await;
                    }
                    // Clustered: the peers applied this node's routes
                    // (or the relay's acknowledgement timeout passed).
                    if let Some(relay) = relay {
                        let _ = relay.await;
                    }
                    handle.tx_hold.set(handle.tx_hold.get() - 1);
                }
                // `sync = "always"`: the SUBACK waits for the session's
                // meta record (its new subscription) to be synced.
                if let Some(ticket) = self.durable.ack_ticket() {
                    handle.tx_hold.set(handle.tx_hold.get() + 1);
                    self.durable.wait_synced(ticket).await;
                    handle.tx_hold.set(handle.tx_hold.get() - 1);
                }
                if send_retained && !shared {
                    let now = Instant::now();
                    let found = self.routes.retained_matching(&filter);
                    let mut conn = handle.conn.borrow_mut();
                    for m in found {
                        if m.expires_at.is_some_and(|t| t <= now) {
                            continue;
                        }
                        let qos = options.qos.min(m.qos);
                        conn.handle_delivery(
                            Delivery {
                                message: m,
                                qos,
                                retain: true,
                                subscription_ids: crate::router::SubscriptionIds::one(identifier),
                                shared: None,
                            },
                            now,
                        );
                    }
                }
                handle.raise_wake();
            }
            Action::Unsubscribe { filter } => {
                let client = handle.conn.borrow().client_id().clone();
                let update = self
                    .routes
                    .unsubscribe(&client, &filter)
                    .map(|c| self.number_interest(c));
                if let Some(update) = update {
                    self.broadcast_interest(update).await;
                }
            }
            Action::Close { .. } => {
                handle.request_close();
            }
        }
    }

    /// Drain and carry out every pending action of a connection.
    pub async fn run_actions(self: &Rc<Self>, handle: &Rc<ConnHandle>) {
        if let Some(deferred) = self.run_actions_now(handle) {
            self.run_actions_from(handle, deferred).await;
        }
    }

    /// Carries out a connection's pending actions as long as none needs to
    /// wait (a publish whose subscribers are all on this shard, a close),
    /// and returns the first one that does, for `run_actions_from`. The
    /// reader calls this on every packet: the common case then never
    /// builds (and copies) the large future of `apply_action`.
    pub fn run_actions_now(self: &Rc<Self>, handle: &Rc<ConnHandle>) -> Option<Deferred> {
        loop {
            let action = handle.conn.borrow_mut().poll_action();
            match action {
                None => {
                    handle.raise_wake();
                    return None;
                }
                Some(Action::Publish(m)) => {
                    ShardMetrics::add(&self.metrics.messages_received, 1);
                    let qos = m.qos;
                    if let Some(remote) = self.publish_here(m) {
                        return Some(Deferred::Remote(remote));
                    }
                    // `sync = "always"`: the ack waits for this shard's store.
                    if qos != crate::codec::QoS::AtMostOnce {
                        if let Some(ticket) = self.durable.ack_ticket() {
                            self.hold_durable_ack(handle, Some(ticket), Vec::new(), None);
                        }
                    }
                }
                Some(Action::Close { .. }) => handle.request_close(),
                Some(other) => return Some(Deferred::Action(other)),
            }
        }
    }

    /// Finishes what `run_actions_now` returned, then the rest of the
    /// connection's actions.
    pub async fn run_actions_from(self: &Rc<Self>, handle: &Rc<ConnHandle>, first: Deferred) {
        let mut next = Some(first);
        while let Some(deferred) = next {
            match deferred {
                Deferred::Remote(remote) => {
                    // `sync = "always"`: a QoS 1/2 ack also waits for the
                    // stores of this shard and the shards it went to.
                    let durable = (self.durable.is_always()
                        && remote.qos() != crate::codec::QoS::AtMostOnce)
                        .then(|| {
                            let mut shards = remote.local_shards(self.settings.node, self.id);
                            // A retained update is written by its topic's owner.
                            if let Some(topic) = remote.retained_topic() {
                                let owner = self.home_of(topic);
                                if owner != self.id && !shards.contains(&owner) {
                                    shards.push(owner);
                                }
                            }
                            (self.durable.ack_ticket(), shards)
                        });
                    // A QoS 1/2 forward: the connection holds its ack and
                    // reads on (`hold_forward_ack`).
                    let answer = self.publish_remote_start(remote).await;
                    match (durable, answer) {
                        (Some((ticket, shards)), answer) => {
                            self.hold_durable_ack(handle, ticket, shards, answer)
                        }
                        (None, Some(answer)) => self.hold_forward_ack(handle, answer),
                        (None, None) => {}
                    }
                }
                Deferred::Action(action) => self.apply_action(handle, action).await,
            }
            next = self.run_actions_now(handle);
        }
    }

    // ---- subscriptions of a whole session -----------------------------

    /// Add a moved-in session's subscriptions to this shard's router; returns
    /// once every shard knows the interest (the client's CONNACK follows).
    /// Meanwhile publishes on other shards also come here (the additions
    /// are marked, `router::interest`).
    pub async fn subscribe_session(&self, session: &Session) {
        let client = session.client_id().clone();
        let mut updates = Vec::new();
        for (filter, options, id) in session.subscriptions() {
            if let Some(c) = self
                .routes
                .subscribe(&client, filter, *options, id)
                .interest
            {
                updates.push(self.number_interest(c));
            }
        }
        for u in updates {
            self.broadcast_interest_acked(u).await;
        }
    }

    pub async fn unsubscribe_session(&self, session: &Session) {
        let filters: Vec<ByteStr> = session.subscriptions().map(|(f, _, _)| f.clone()).collect();
        self.remove_subscriptions(session.client_id(), filters)
            .await;
    }

    pub async fn remove_subscriptions(&self, client: &ByteStr, filters: Vec<ByteStr>) {
        let changes = self.unroute(client, filters);
        self.announce_interest(changes).await;
    }

    /// Removes `client`'s subscriptions from this shard's router at once;
    /// the interest changes to announce (`announce_interest`) are returned,
    /// numbered.
    pub fn unroute(&self, client: &ByteStr, filters: Vec<ByteStr>) -> Vec<NumberedChange> {
        self.routes
            .remove_client(client, filters)
            .into_iter()
            .map(|c| self.number_interest(c))
            .collect()
    }

    pub async fn announce_interest(&self, updates: Vec<NumberedChange>) {
        for u in updates {
            self.broadcast_interest(u).await;
        }
    }

    // ---- interest changes to the other shards --------------------------

    async fn broadcast_interest(&self, update: NumberedChange) {
        for s in 0..self.count {
            if s != self.id {
                self.send(
                    s,
                    ShardMsg::Interest {
                        update: update.clone(),
                        ack: None,
                    },
                )
                .await;
            }
        }
    }

    /// Broadcast an interest change and wait until every other shard has
    /// applied it. A SUBACK is held until then, so a client that saw its
    /// SUBACK gets every message published afterwards on any shard.
    async fn broadcast_interest_acked(&self, update: NumberedChange) {
        self.mesh
            .call_all(|token| ShardMsg::Interest {
                update: update.clone(),
                ack: Some(token),
            })
            .await;
    }

    /// Returns once every other shard has handled everything it sent to
    /// this shard before it saw the barrier (channels are FIFO, so its
    /// reply comes after its earlier `Retain`s).
    pub(super) async fn barrier(&self) {
        self.mesh
            .call_all(|token| ShardMsg::Barrier { token })
            .await;
    }
}
