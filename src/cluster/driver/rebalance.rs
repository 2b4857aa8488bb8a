//! Cross-node evacuation and rebalance commands (`src/rebalance`): the
//! admin thread asks a peer through [`RebalancePort::ask`], which sends a
//! `RebalanceRequest` on the control stream and waits at most
//! `REBALANCE_PEER_TIMEOUT_MS` for the `RebalanceAnswer`; a peer's command
//! is handed to this node's admin thread ([`Incoming`]), whose answer goes
//! back on the control stream.
//!
//! The driver only relays ([`Relay::handle_net`]): commands and answers
//! are opaque JSON text here (`rebalance::peer` gives them meaning), and
//! the executors live on the admin thread, whose runtime owns their
//! timers. Like the clients frames they bypass the core: they carry no
//! routes or messages, and a lost one is a command that timed out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::cluster::logic::proto::{
    kind, Message, RebalanceAnswer, RebalanceRequest, PROTO_VERSION,
};
use crate::cluster::net::{ClusterHandle, NetEvent, Outgoing, StreamId};
use crate::limits::{
    REBALANCE_PEER_ASKS_MAX, REBALANCE_PEER_INCOMING_MAX, REBALANCE_PEER_TIMEOUT_MS,
};
use crate::router::location::NodeId;

/// A peer's command for this node's admin thread; `reply` takes the
/// answer (JSON text).
#[derive(Debug)]
pub struct Incoming {
    pub from: NodeId,
    pub command: String,
    pub reply: oneshot::Sender<String>,
}

/// Commands in flight: request number -> (asked peer, waiting asker).
type Pending = Arc<Mutex<HashMap<u64, (NodeId, oneshot::Sender<String>)>>>;

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, (NodeId, oneshot::Sender<String>)>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The admin thread's end: commands to peers.
#[derive(Clone)]
pub struct RebalancePort {
    handle: ClusterHandle,
    pending: Pending,
    next_request: Arc<AtomicU64>,
}

impl std::fmt::Debug for RebalancePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebalancePort").finish_non_exhaustive()
    }
}

impl RebalancePort {
    /// Sends `command` to `to` and waits for its answer; `Err` says why
    /// there is none (queue full, no answer in time, the peer went down
    /// or was too busy to take it).
    pub async fn ask(&self, to: NodeId, command: String) -> Result<String, String> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= REBALANCE_PEER_ASKS_MAX {
                return Err("too many rebalance commands in flight".into());
            }
            pending.insert(request, (to, reply));
        }
        let m = Message::RebalanceRequest(RebalanceRequest::new(request, command));
        let sent = m.encode().map_err(|e| e.to_string()).and_then(|body| {
            self.handle
                .try_send(Outgoing {
                    node: to,
                    stream: StreamId::Control,
                    kind: kind::RebalanceRequest,
                    body: body.into(),
                })
                .map_err(|_| "the cluster thread's queue is full".to_string())
        });
        if let Err(e) = sent {
            lock(&self.pending).remove(&request);
            return Err(e);
        }
        let waited =
            tokio::time::timeout(Duration::from_millis(REBALANCE_PEER_TIMEOUT_MS), answer).await;
        lock(&self.pending).remove(&request);
        match waited {
            Ok(Ok(a)) if a.is_empty() => Err("the node is too busy to take the command".into()),
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err("the node went down".into()),
            Err(_) => Err(format!("no answer within {REBALANCE_PEER_TIMEOUT_MS} ms")),
        }
    }
}

/// The driver's end: relays frames both ways.
pub struct Relay {
    pending: Pending,
    incoming: mpsc::Sender<Incoming>,
}

/// The port, the admin thread's inbox of peers' commands, and the
/// driver's relay; made with the cluster thread, before the admin API.
pub struct RebalanceChannel {
    pub port: RebalancePort,
    /// Taken by the admin thread (`Rebalancer::with_cluster`).
    pub incoming: Option<mpsc::Receiver<Incoming>>,
    pub(crate) relay: Relay,
}

pub fn channel(handle: ClusterHandle) -> RebalanceChannel {
    let pending = Pending::default();
    let (tx, rx) = mpsc::channel(REBALANCE_PEER_INCOMING_MAX);
    RebalanceChannel {
        port: RebalancePort {
            handle,
            pending: pending.clone(),
            next_request: Arc::default(),
        },
        incoming: Some(rx),
        relay: Relay {
            pending,
            incoming: tx,
        },
    }
}

impl Relay {
    /// Takes the rebalance frames out of the cluster thread's events (the
    /// rest is returned for the others); a peer going down fails the
    /// commands waiting for it.
    pub(super) fn handle_net(&self, e: NetEvent, handle: &ClusterHandle) -> Option<NetEvent> {
        match e {
            NetEvent::PeerFrame {
                from, kind, body, ..
            } if kind == kind::RebalanceRequest || kind == kind::RebalanceAnswer => {
                match Message::decode(PROTO_VERSION, kind, &body) {
                    Ok(Message::RebalanceRequest(r)) => self.serve(from, r, handle),
                    Ok(Message::RebalanceAnswer(a)) => {
                        let mut pending = lock(&self.pending);
                        if pending.get(&a.request).is_some_and(|(to, _)| *to == from) {
                            let (_, reply) = pending.remove(&a.request).expect("present");
                            let _ = reply.send(a.answer);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(%from, "cluster driver: rebalance frame refused: {e}"),
                }
                None
            }
            NetEvent::MemberDown { node } => {
                // Dropping the senders answers the askers at once.
                lock(&self.pending).retain(|_, (to, _)| *to != node);
                Some(e)
            }
            e => Some(e),
        }
    }

    fn serve(&self, from: NodeId, r: RebalanceRequest, handle: &ClusterHandle) {
        let (reply, answer) = oneshot::channel();
        let incoming = Incoming {
            from,
            command: r.command,
            reply,
        };
        let handle = handle.clone();
        if self.incoming.try_send(incoming).is_err() {
            // Full or no admin thread: an empty answer says "busy".
            send_answer(
                &handle,
                from,
                RebalanceAnswer::new(r.request, String::new()),
            );
            return;
        }
        tokio::spawn(async move {
            let text = answer.await.unwrap_or_default();
            send_answer(&handle, from, RebalanceAnswer::new(r.request, text));
        });
    }
}

fn send_answer(handle: &ClusterHandle, to: NodeId, a: RebalanceAnswer) {
    match Message::RebalanceAnswer(a).encode() {
        Ok(body) => {
            let out = Outgoing {
                node: to,
                stream: StreamId::Control,
                kind: kind::RebalanceAnswer,
                body: body.into(),
            };
            if handle.try_send(out).is_err() {
                debug!(%to, "cluster driver: rebalance answer dropped, the cluster thread's queue is full");
            }
        }
        Err(e) => warn!(%to, "cluster driver: rebalance answer not sent: {e}"),
    }
}
