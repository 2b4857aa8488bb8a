//! The cluster-wide clients API in the driver (`admin/cluster_clients.rs`
//! asks, docs/admin-api.md): the admin thread hands a question for some
//! running peers to the driver ([`ClientsPort`]); the driver sends each a
//! `ClientsQuery` on its control stream and answers the admin thread once
//! every peer answered, went down, or stayed silent for
//! `CLUSTER_CLIENTS_TIMEOUT_MS` ([`Asking`], sans-IO). A peer's question is
//! answered from this node's shards ([`serve`]), at most
//! `CLUSTER_CLIENTS_SERVING_MAX` at once.
//!
//! These frames bypass the driver's core (as load figures do): they carry
//! no routes or messages, and a lost one only leaves a node out of one
//! answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::cluster::logic::proto::{kind, PROTO_VERSION};
use crate::cluster::net::{ClusterHandle, NetEvent, Outgoing, StreamId};
use crate::limits::CLUSTER_CLIENTS_SERVING_MAX;
use crate::shard::NodeHandle;

use crate::admin::AskShards;
use crate::cluster::logic::proto::{
    ClientsAnswer, ClientsQuery, ClientsQuestion, ClientsReply, Message, WireClient,
};
use crate::limits::{
    CLUSTER_CLIENTS_ANSWER_MAX, CLUSTER_CLIENTS_ANSWER_MAX_BYTES, CLUSTER_CLIENTS_ASKS_MAX,
    CLUSTER_CLIENTS_TIMEOUT_MS,
};
use crate::metrics::ClientInfo;
use crate::router::location::NodeId;

/// Each asked peer's reply, `None` for no answer in time.
pub type PeerReplies = Vec<(NodeId, Option<ClientsReply>)>;

/// A question of the admin thread for `to` (running peers).
#[derive(Debug)]
pub struct ClientsAsk {
    pub to: Vec<NodeId>,
    pub question: ClientsQuestion,
    pub reply: oneshot::Sender<PeerReplies>,
}

/// The admin thread's end: hands questions to the driver.
#[derive(Clone, Debug)]
pub struct ClientsPort {
    tx: mpsc::Sender<ClientsAsk>,
}

impl ClientsPort {
    /// The peers' replies, or why the driver cannot take the question
    /// (too many in flight, or it stopped).
    pub async fn ask(
        &self,
        to: Vec<NodeId>,
        question: ClientsQuestion,
    ) -> Result<PeerReplies, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(ClientsAsk {
                to,
                question,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    "too many clients questions in flight".to_string()
                }
                mpsc::error::TrySendError::Closed(_) => "the cluster driver stopped".to_string(),
            })?;
        answer
            .await
            .map_err(|_| "the cluster driver stopped".to_string())
    }
}

/// The port and the driver's end of it, made before the driver starts
/// (the admin API starts first).
#[derive(Debug)]
pub struct ClientsChannel {
    pub port: ClientsPort,
    pub(super) inbox: mpsc::Receiver<ClientsAsk>,
}

pub fn channel() -> ClientsChannel {
    let (tx, inbox) = mpsc::channel(CLUSTER_CLIENTS_ASKS_MAX);
    ClientsChannel {
        port: ClientsPort { tx },
        inbox,
    }
}

/// One question in flight to several peers.
struct Pending {
    replies: PeerReplies,
    waiting: usize,
    deadline_ms: u64,
    reply: oneshot::Sender<PeerReplies>,
}

/// The asking side's state: questions in flight, each peer's by request
/// number. Sans-IO: fed with the time, answers and membership; gives
/// frames to send.
#[derive(Default)]
pub struct Asking {
    next_request: u64,
    next_ask: u64,
    /// request -> (ask, index of the peer in its replies).
    requests: BTreeMap<u64, (u64, usize)>,
    asks: BTreeMap<u64, Pending>,
}

impl Asking {
    /// Starts a question; returns the frames for the peers. A peer not
    /// in `running` is answered `None` at once.
    pub fn begin(
        &mut self,
        ask: ClientsAsk,
        running: impl Fn(NodeId) -> bool,
        now_ms: u64,
    ) -> Vec<(NodeId, Message)> {
        self.next_ask += 1;
        let id = self.next_ask;
        let mut frames = Vec::new();
        let mut pending = Pending {
            replies: Vec::with_capacity(ask.to.len()),
            waiting: 0,
            deadline_ms: now_ms + CLUSTER_CLIENTS_TIMEOUT_MS,
            reply: ask.reply,
        };
        for (i, node) in ask.to.into_iter().enumerate() {
            pending.replies.push((node, None));
            if !running(node) {
                continue;
            }
            self.next_request += 1;
            let request = self.next_request;
            self.requests.insert(request, (id, i));
            pending.waiting += 1;
            let query = ClientsQuery::new(request, ask.question.clone());
            frames.push((node, Message::ClientsQuery(query)));
        }
        self.asks.insert(id, pending);
        self.finish(id);
        frames
    }

    /// A peer's answer (from `from`: an answer naming another peer's
    /// request is ignored).
    pub fn handle_answer(&mut self, from: NodeId, answer: ClientsAnswer) {
        let Some(&(id, i)) = self.requests.get(&answer.request) else {
            return;
        };
        let Some(pending) = self.asks.get_mut(&id) else {
            return;
        };
        if pending.replies[i].0 != from {
            return;
        }
        self.requests.remove(&answer.request);
        pending.replies[i].1 = Some(answer.reply);
        pending.waiting -= 1;
        self.finish(id);
    }

    /// A peer went down: it will not answer.
    pub fn handle_member_down(&mut self, node: NodeId) {
        let gone: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, &(id, i))| self.asks.get(&id).is_some_and(|p| p.replies[i].0 == node))
            .map(|(&r, _)| r)
            .collect();
        for request in gone {
            if let Some((id, _)) = self.requests.remove(&request) {
                if let Some(p) = self.asks.get_mut(&id) {
                    p.waiting -= 1;
                }
                self.finish(id);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.asks.values().map(|p| p.deadline_ms).min()
    }

    /// Questions past their deadline are answered with what came.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let late: Vec<u64> = self
            .asks
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.requests.retain(|_, (a, _)| *a != id);
            if let Some(p) = self.asks.remove(&id) {
                let _ = p.reply.send(p.replies);
            }
        }
    }

    fn finish(&mut self, id: u64) {
        if self.asks.get(&id).is_some_and(|p| p.waiting == 0) {
            let p = self.asks.remove(&id).expect("present");
            let _ = p.reply.send(p.replies);
        }
    }
}

/// A peer's question answered from this node's shards.
pub async fn serve(shards: &dyn AskShards, question: ClientsQuestion) -> ClientsReply {
    let answered = match question {
        ClientsQuestion::Count => crate::admin::node_count(shards)
            .await
            .map(|n| ClientsReply::Count(n as u64)),
        ClientsQuestion::List { skip, take } => {
            let take = (take as usize).min(CLUSTER_CLIENTS_ANSWER_MAX);
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            crate::admin::node_list(shards, skip, take)
                .await
                .map(|(rows, _)| ClientsReply::Clients(bounded(rows)))
        }
        ClientsQuestion::Get { client_id } => crate::admin::node_get(shards, client_id)
            .await
            .map(|c| ClientsReply::Client(c.map(to_wire))),
        ClientsQuestion::Kick { client_id } => crate::admin::node_kick(shards, client_id)
            .await
            .map(ClientsReply::Kicked),
    };
    answered.unwrap_or_else(|e| ClientsReply::Unavailable(e.0))
}

/// The rows that fit one answer (`CLUSTER_CLIENTS_ANSWER_MAX_BYTES` of
/// ids and names; at least one): the asker asks again for the rest.
fn bounded(rows: Vec<ClientInfo>) -> Vec<WireClient> {
    let mut bytes = 0;
    let mut out = Vec::with_capacity(rows.len());
    for c in rows {
        bytes += c.client_id.len() + c.username.as_ref().map_or(0, String::len) + 128;
        if bytes > CLUSTER_CLIENTS_ANSWER_MAX_BYTES && !out.is_empty() {
            break;
        }
        out.push(to_wire(c));
    }
    out
}

pub fn to_wire(c: ClientInfo) -> WireClient {
    WireClient {
        client_id: c.client_id,
        shard: c.shard,
        connected: c.connected,
        username: c.username,
        proto_ver: c.proto_ver,
        peer: c.peer.map(|p| p.to_string()),
        keepalive_s: c.keepalive_s,
        clean_start: c.clean_start,
        expiry_interval_s: c.expiry_interval_s,
        subscriptions: c.subscriptions,
        mqueue_len: c.mqueue_len,
        mqueue_max: c.mqueue_max,
        mqueue_dropped: c.mqueue_dropped,
        inflight_cnt: c.inflight_cnt,
        connected_at_ms: c.connected_at_ms,
        disconnected_at_ms: c.disconnected_at_ms,
    }
}

/// A peer's record; an address that does not parse is left out.
pub fn from_wire(c: WireClient) -> ClientInfo {
    ClientInfo {
        client_id: c.client_id,
        shard: c.shard,
        connected: c.connected,
        username: c.username,
        proto_ver: c.proto_ver,
        peer: c.peer.and_then(|p| p.parse().ok()),
        keepalive_s: c.keepalive_s,
        clean_start: c.clean_start,
        expiry_interval_s: c.expiry_interval_s,
        subscriptions: c.subscriptions,
        mqueue_len: c.mqueue_len,
        mqueue_max: c.mqueue_max,
        mqueue_dropped: c.mqueue_dropped,
        inflight_cnt: c.inflight_cnt,
        connected_at_ms: c.connected_at_ms,
        disconnected_at_ms: c.disconnected_at_ms,
    }
}

/// The driver loop's part for clients questions: the asking state, the
/// count of peers' questions being served, and the I/O around both.
pub(super) struct ClientsQueries {
    asking: Asking,
    serving: Arc<AtomicUsize>,
}

impl ClientsQueries {
    pub(super) fn new() -> ClientsQueries {
        ClientsQueries {
            asking: Asking::default(),
            serving: Arc::default(),
        }
    }

    /// Takes the clients frames out of the cluster thread's events (the
    /// rest is returned for the core), and a peer's going down.
    pub(super) fn handle_net(
        &mut self,
        e: NetEvent,
        handle: &ClusterHandle,
        node: &NodeHandle,
        inputs: &mpsc::Sender<super::Input>,
    ) -> Option<NetEvent> {
        match e {
            NetEvent::PeerFrame {
                from, kind, body, ..
            } if kind == kind::ClientsQuery || kind == kind::ClientsAnswer => {
                match Message::decode(PROTO_VERSION, kind, &body) {
                    Ok(Message::ClientsQuery(q)) => self.serve_peer(from, q, handle, node, inputs),
                    Ok(Message::ClientsAnswer(a)) => self.asking.handle_answer(from, a),
                    Ok(_) => {}
                    Err(e) => warn!(%from, "cluster driver: clients frame refused: {e}"),
                }
                None
            }
            NetEvent::MemberDown { node: down } => {
                self.asking.handle_member_down(down);
                Some(e)
            }
            e => Some(e),
        }
    }

    fn serve_peer(
        &mut self,
        from: NodeId,
        q: ClientsQuery,
        handle: &ClusterHandle,
        node: &NodeHandle,
        inputs: &mpsc::Sender<super::Input>,
    ) {
        if self.serving.load(Ordering::Relaxed) >= CLUSTER_CLIENTS_SERVING_MAX {
            let busy = ClientsReply::Unavailable("too many clients questions at once".into());
            let answer = ClientsAnswer::new(q.request, busy);
            send(handle, from, Message::ClientsAnswer(answer));
            return;
        }
        self.serving.fetch_add(1, Ordering::Relaxed);
        let (serving, node, inputs) = (self.serving.clone(), node.clone(), inputs.clone());
        tokio::spawn(async move {
            let reply = serve(&node, q.question).await;
            serving.fetch_sub(1, Ordering::Relaxed);
            let answer = ClientsAnswer::new(q.request, reply);
            let _ = inputs.send(super::Input::ClientsServed(from, answer)).await;
        });
    }

    /// A question of the admin thread: sent to the running peers.
    pub(super) fn handle_ask(
        &mut self,
        ask: ClientsAsk,
        running: impl Fn(NodeId) -> bool,
        handle: &ClusterHandle,
        now_ms: u64,
    ) {
        for (to, m) in self.asking.begin(ask, running, now_ms) {
            send(handle, to, m);
        }
    }

    /// This node's answer to a peer's question, ready.
    pub(super) fn handle_served(
        &mut self,
        to: NodeId,
        answer: ClientsAnswer,
        handle: &ClusterHandle,
    ) {
        send(handle, to, Message::ClientsAnswer(answer));
    }

    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.asking.poll_timeout()
    }

    pub(super) fn handle_timeout(&mut self, now_ms: u64) {
        self.asking.handle_timeout(now_ms);
    }
}

/// A clients frame to the cluster thread; a full queue drops it (the
/// asker leaves this node out of that one answer).
fn send(handle: &ClusterHandle, to: NodeId, m: Message) {
    let kind = m.kind();
    match m.encode() {
        Ok(body) => {
            let out = Outgoing {
                node: to,
                stream: StreamId::Control,
                kind,
                body: body.into(),
            };
            if handle.try_send(out).is_err() {
                debug!(%to, "cluster driver: clients frame dropped, the cluster thread's queue is full");
            }
        }
        Err(e) => warn!(%to, "cluster driver: clients frame not sent: {e}"),
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
