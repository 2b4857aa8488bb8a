//! The `Cluster` part of a shard: its end of the cluster driver
//! (`cluster::driver`), present only on a clustered node.
//!
//! * Interest: every change this shard numbers goes to the driver in the
//!   same order (`Shard::number_interest`); a SUBSCRIBE also gets the
//!   relay's release, which its SUBACK waits for (`number_subscribe`).
//! * Forwarding out: a publish whose walk found other nodes
//!   (`Route::nodes`, and shared groups whose pick is on another node) is
//!   handed to the driver once (`forward`); a QoS 1/2
//!   publisher's PUBACK/PUBREC waits for the receiving nodes (the reader
//!   awaits it, and nothing is transmitted meanwhile). A full channel or a
//!   full forwarding window (`ShardPort::paused`) makes the publisher wait,
//!   whatever the QoS: back-pressure, not drops.
//! * Forwarding in: the driver posts a peer's forwarded messages here, in
//!   the order of their data stream; one task routes them as a local
//!   publish would, never forwarding them again (one for a shared group
//!   goes to one member on this node: `cluster_shared.rs`), then reports
//!   them queued.
//!
//! A single node (singleton) has no such part: its publish path pays one
//! empty-vector check (`Route::nodes`).

use super::io::Signal;
use super::state::{ConnHandle, Shard};
use crate::cluster::driver::{ShardPort, ToDriver};
use crate::codec::ByteStr;
use crate::limits::{CLUSTER_SHARD_INTEREST_BACKLOG_MAX, FORWARD_BATCH_MESSAGES_MAX};
use crate::router::{InterestChange, NodeId, NumberedChange, ShardId, SharedKey};
use crate::session::Message;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

/// A peer's forwarded message waiting for this shard's routing.
struct Inbound {
    from: NodeId,
    stream: ShardId,
    seq: u64,
    message: Arc<Message>,
    /// For one member of this group on this node only.
    shared: Option<SharedKey>,
}

pub struct Cluster {
    port: ShardPort,
    /// Interest changes behind a full channel, in order; `draining` while
    /// a task empties it (everything goes behind it meanwhile).
    backlog: Rc<RefCell<VecDeque<ToDriver>>>,
    draining: Rc<Cell<bool>>,
    inbound: RefCell<VecDeque<Inbound>>,
    inbound_arrived: Signal,
    /// Interest changes dropped past the backlog's bound.
    interest_drops: Cell<u64>,
    /// Offline sessions of this shard being pushed to another node
    /// (`session_push`): not picked again meanwhile.
    pub(super) pushing: RefCell<ahash::AHashSet<String>>,
}

impl Cluster {
    pub fn new(port: ShardPort) -> Cluster {
        Cluster {
            port,
            backlog: Rc::default(),
            draining: Rc::default(),
            inbound: RefCell::default(),
            inbound_arrived: Signal::default(),
            interest_drops: Cell::new(0),
            pushing: RefCell::default(),
        }
    }

    /// The channel to the driver (`takeover_remote`'s claims).
    pub(super) fn driver(&self) -> &tokio::sync::mpsc::Sender<ToDriver> {
        &self.port.tx
    }

    /// Sends in order with the earlier requests; never waits.
    pub(super) fn tell(&self, request: ToDriver) {
        if !self.draining.get() {
            match self.port.tx.try_send(request) {
                Ok(()) => return,
                Err(TrySendError::Closed(_)) => return, // the node is stopping
                Err(TrySendError::Full(request)) => {
                    self.backlog.borrow_mut().push_back(request);
                    self.start_draining();
                    return;
                }
            }
        }
        let mut backlog = self.backlog.borrow_mut();
        if backlog.len() >= CLUSTER_SHARD_INTEREST_BACKLOG_MAX {
            self.interest_drops.set(self.interest_drops.get() + 1);
            tracing::error!(
                "cluster: an interest change was dropped (the driver does not keep up); \
                 peers may miss a route until their next route snapshot"
            );
            return;
        }
        backlog.push_back(request);
    }

    fn start_draining(&self) {
        self.draining.set(true);
        let (tx, backlog, draining) = (
            self.port.tx.clone(),
            self.backlog.clone(),
            self.draining.clone(),
        );
        glommio::spawn_local(async move {
            // A permit first, then the oldest request: nothing overtakes.
            while let Ok(permit) = tx.reserve().await {
                let Some(request) = backlog.borrow_mut().pop_front() else {
                    break;
                };
                permit.send(request);
            }
            backlog.borrow_mut().clear();
            draining.set(false);
        })
        .detach();
    }
}

impl Shard {
    /// Numbers an interest change this shard's router just made
    /// (`Interest::number`) and tells the cluster driver, in the same step.
    pub fn number_interest(&self, change: InterestChange) -> NumberedChange {
        if let Some(cluster) = &self.cluster {
            cluster.tell(ToDriver::Interest {
                shard: self.id,
                change: change.clone(),
                done: None,
            });
        }
        self.interest.number(change)
    }

    /// A SUBSCRIBE's interest change (if it made one), numbered; on a
    /// clustered node also the relay's release its SUBACK waits for. Every
    /// ordinary SUBSCRIBE asks the relay, changed or not: the first
    /// subscriber's change may still be on its way to the peers (ADR 0001,
    /// deviations). A shared one that changed nothing had its SUBACK.
    pub fn number_subscribe(
        &self,
        filter: &ByteStr,
        change: Option<InterestChange>,
    ) -> (Option<NumberedChange>, Option<oneshot::Receiver<()>>) {
        let Some(cluster) = &self.cluster else {
            return (change.map(|c| self.interest.number(c)), None);
        };
        let ordinary = || matches!(crate::router::topic::parse_shared(filter), Ok(None));
        let told = match &change {
            Some(c) => Some(c.clone()),
            None if ordinary() => Some(InterestChange {
                filter: filter.clone(),
                group: None,
                // This shard has subscribers of it (ordinary: any count).
                members: 1,
            }),
            None => None,
        };
        let released = told.map(|change| {
            let (done, released) = oneshot::channel();
            cluster.tell(ToDriver::Interest {
                shard: self.id,
                change,
                done: Some(done),
            });
            released
        });
        (change.map(|c| self.interest.number(c)), released)
    }

    /// Hands a message published here to the driver for `nodes`. For QoS
    /// 1/2, returns the answer: `true` once every node has it queued,
    /// `false` if one never will (down, link lost, timeout); the
    /// publisher's PUBACK/PUBREC waits for it (`hold_forward_ack`).
    /// `shared`: groups whose member was picked on another node, each
    /// forwarded for one member there (`Forward::shared`).
    pub async fn forward_start(
        &self,
        message: Arc<Message>,
        nodes: Vec<NodeId>,
        shared: Vec<(NodeId, SharedKey)>,
    ) -> Option<oneshot::Receiver<bool>> {
        let Some(cluster) = &self.cluster else {
            debug_assert!(false, "a route to another node on a single node");
            return None;
        };
        let confirmed = message.qos as u8 > 0;
        let (done, answer) = if confirmed {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if *cluster.port.paused.borrow() {
            // A window towards a peer is full: this publisher waits (its
            // reads stop) until it drains, as for a congested local
            // subscriber (ADR 0002), rather than its message being dropped.
            let mut paused = cluster.port.paused.clone();
            let _ = paused.wait_for(|p| !*p).await;
        }
        let request = ToDriver::Forward {
            shard: self.id,
            nodes,
            shared,
            message,
            done,
        };
        match cluster.port.tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return None,
            Err(TrySendError::Full(request)) => {
                // The driver is behind: the publisher waits for room,
                // whatever the QoS (back-pressure, not a drop).
                if cluster.port.tx.send(request).await.is_err() {
                    return None;
                }
            }
        }
        answer
    }

    /// The publisher's connection holds the ack of the PUBLISH it just
    /// routed until `answer` says the other nodes have it queued, and reads
    /// on meanwhile: a window of `PUBLISH_ACKS_HELD_MAX` per connection
    /// (`session::connection::held`), the acks in the order of the
    /// PUBLISHes. Without an answer (the node stopping) the connection
    /// closes without them.
    pub(super) fn hold_forward_ack(
        self: &Rc<Self>,
        handle: &Rc<ConnHandle>,
        answer: oneshot::Receiver<bool>,
    ) {
        let gate = handle.conn.borrow().acks_gate();
        let Some(packet_id) = handle.conn.borrow_mut().hold_last_ack() else {
            return; // closed meanwhile: nothing to acknowledge
        };
        update_acks_gate(handle, gate);
        let (me, handle) = (self.clone(), handle.clone());
        glommio::spawn_local(async move {
            // `Ok(false)`: some node will never queue it (it died, the link
            // broke, it was silent for `FORWARD_ACK_TIMEOUT_MS`): released
            // all the same, as before the window (docs/clustering.md, "What
            // is lost when a node dies"; the driver counts it). No answer
            // at all: the node is stopping.
            let answered = answer.await.is_ok();
            let gate = handle.conn.borrow().acks_gate();
            {
                let mut conn = handle.conn.borrow_mut();
                if answered {
                    conn.release_held_ack(packet_id);
                } else if conn.held_acks() > 0 {
                    tracing::debug!(
                        client_id = %conn.client_id(),
                        packet_id,
                        "no answer for a forwarded PUBLISH (the node is stopping): \
                         the connection closes without its acknowledgement"
                    );
                    conn.fail_held_acks();
                }
            }
            update_acks_gate(&handle, gate);
            // The close of a failed window, if any; else the released acks
            // go out.
            me.drain_sync_actions(&handle);
            handle.raise_wake();
        })
        .detach();
    }
}

/// Pauses or resumes the connection's reading (`ConnHandle::pauses`) as
/// its held acks' gate (`Connection::acks_gate`) changed from `before`.
pub(super) fn update_acks_gate(handle: &ConnHandle, before: u16) {
    let after = handle.conn.borrow().acks_gate();
    if after > before {
        handle
            .pauses
            .set(handle.pauses.get().saturating_add(after - before));
    } else if after < before {
        handle
            .pauses
            .set(handle.pauses.get().saturating_sub(before - after));
        if handle.pauses.get() == 0 {
            handle.raise_wake();
        }
    }
}

impl Shard {
    /// A retained message set or cleared by a client of this node: the
    /// driver replicates it to every peer (in order with this shard's
    /// other requests).
    pub fn replicate_retained(&self, topic: &ByteStr, message: Option<Arc<Message>>) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(ToDriver::Retain {
                topic: topic.clone(),
                message,
            });
        }
    }

    /// The driver posts a peer's forwarded message (`ShardContext`).
    pub(super) fn receive_forwarded(
        &self,
        from: NodeId,
        stream: ShardId,
        seq: u64,
        message: Arc<Message>,
        shared: Option<SharedKey>,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        cluster.inbound.borrow_mut().push_back(Inbound {
            from,
            stream,
            seq,
            message,
            shared,
        });
        cluster.inbound_arrived.raise();
    }

    /// Routes peers' forwarded messages in their arrival order, on this
    /// node only, and reports each data stream's progress to the driver
    /// (cumulative: once per run of one stream). Runs for the shard's life.
    pub(super) async fn serve_forwarded(self: Rc<Self>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut last: Option<(NodeId, ShardId, u64)> = None;
        let mut untold = 0;
        loop {
            let next = cluster.inbound.borrow_mut().pop_front();
            let Some(m) = next else {
                if let Some((from, stream, seq)) = last.take() {
                    untold = 0;
                    let _ = cluster
                        .port
                        .tx
                        .send(ToDriver::Queued { from, stream, seq })
                        .await;
                    continue;
                }
                cluster.inbound_arrived.wait().await;
                continue;
            };
            if let Some((from, stream, seq)) = last {
                // Also every batch's worth within one long run: the
                // sender's frames in flight wait for it.
                if (from, stream) != (m.from, m.stream) || untold >= FORWARD_BATCH_MESSAGES_MAX {
                    untold = 0;
                    let _ = cluster
                        .port
                        .tx
                        .send(ToDriver::Queued { from, stream, seq })
                        .await;
                }
            }
            match m.shared {
                Some(key) => self.deliver_forwarded_shared(m.message, key).await,
                None => {
                    if let Some(remote) = self.publish_here_from_peer(m.message) {
                        self.publish_remote(remote).await;
                    }
                }
            }
            last = Some((m.from, m.stream, m.seq));
            untold += 1;
        }
    }

    /// Waits until the node may accept MQTT clients (it has its peers'
    /// routes); at once on a single node.
    pub(super) async fn cluster_ready(&self) {
        if let Some(cluster) = &self.cluster {
            let mut ready = cluster.port.ready.clone();
            let _ = ready.wait_for(|r| *r).await;
        }
    }
}
