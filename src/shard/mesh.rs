//! The shard mesh as a service protocol (seastar's `sharded<>` model): a
//! shard sends to a peer, calls one peer (`call`) or every peer
//! (`call_all`) and awaits the replies, all through one reply table
//! (`reply.rs`); and it stops in order (`mark`, `Mark::Stop`).
//!
//! - A failed send hands the message back (`Err(msg)`): a peer that stopped
//!   does not swallow it silently; a call whose request could not go out
//!   ends with that peer counted lost.
//! - A peer's `Mark::Stop` is the last message it sends: when it arrives,
//!   every earlier message of that peer has been handled (channels are FIFO
//!   per pair of shards, and the receive loop handles them in order), and
//!   every call still waiting for it has lost it.
//! - Handlers of peer messages never wait for room in a channel (see
//!   `dispatch` in mod.rs): `reply` sends at once when it can and from a
//!   task of its own when the channel is full.

use super::io::Signal;
use super::msg::{Mark, Reply, ShardMsg};
use super::reply::{Outcome, Protocol};
use super::state::{Shard, ShardId};
use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use std::cell::RefCell;
use std::rc::Rc;

/// A message `Mesh::try_send` could not send, handed back.
pub enum TrySendError {
    /// The channel is full: `Mesh::send` would wait for room.
    Full(ShardMsg),
    /// The peer stopped.
    Stopped(ShardMsg),
}

impl TrySendError {
    pub fn into_message(self) -> ShardMsg {
        match self {
            TrySendError::Full(msg) | TrySendError::Stopped(msg) => msg,
        }
    }
}

pub struct Mesh {
    id: ShardId,
    count: u16,
    senders: Senders<ShardMsg>,
    /// Calls waiting for replies, stop state and marks (sans-IO).
    protocol: RefCell<Protocol<Reply, Rc<Signal>>>,
    /// Raised whenever a mark arrives, for `wait_marks`.
    mark_arrived: Signal,
}

impl Mesh {
    pub fn new(id: ShardId, count: u16, senders: Senders<ShardMsg>) -> Mesh {
        Mesh {
            id,
            count,
            senders,
            protocol: RefCell::new(Protocol::new(id, count)),
            mark_arrived: Signal::default(),
        }
    }

    fn peers(&self) -> impl Iterator<Item = ShardId> {
        let peers = self.protocol.borrow().peers();
        peers
    }

    /// Sends to another shard, waiting for room: a full channel slows the
    /// sender (back-pressure on the publisher) rather than dropping. A peer
    /// that stopped hands the message back.
    pub async fn send(&self, to: ShardId, msg: ShardMsg) -> Result<(), ShardMsg> {
        match self.try_send(to, msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Stopped(msg)) => Err(msg),
            Err(TrySendError::Full(msg)) => {
                // Boxed: waiting for room is rare, and glommio's send
                // future inline would grow every future that sends, each
                // connection's reader (which lives as long as the
                // connection) among them.
                match Box::pin(self.senders.send_to(to as usize, msg)).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.hand_back(Self::message_of(e))),
                }
            }
        }
    }

    /// Sends only if there is room now (for handlers of peer messages,
    /// which must not wait).
    pub fn try_send(&self, to: ShardId, msg: ShardMsg) -> Result<(), TrySendError> {
        debug_assert_ne!(to, self.id);
        if !self.protocol.borrow().may_send(to) {
            return Err(TrySendError::Stopped(self.hand_back(msg)));
        }
        match self.senders.try_send_to(to as usize, msg) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => {
                Err(TrySendError::Full(msg))
            }
            Err(e) => Err(TrySendError::Stopped(self.hand_back(Self::message_of(e)))),
        }
    }

    fn message_of(e: GlommioError<ShardMsg>) -> ShardMsg {
        match e {
            GlommioError::Closed(ResourceType::Channel(msg))
            | GlommioError::WouldBlock(ResourceType::Channel(msg)) => msg,
            other => unreachable!("a mesh send fails only for a closed channel: {other}"),
        }
    }

    fn hand_back(&self, msg: ShardMsg) -> ShardMsg {
        self.protocol.borrow_mut().handle_handed_back();
        msg
    }

    /// Opens a call to `peers`: the token for the requests and what
    /// `wait` waits on. Send each request with `request`.
    pub fn open(&self, peers: impl IntoIterator<Item = ShardId>) -> (u64, Rc<Signal>) {
        let done = Rc::new(Signal::default());
        let token = self.protocol.borrow_mut().calls.open(peers, done.clone());
        (token, done)
    }

    /// Sends the request of call `token` to `to`; a request that cannot go
    /// out (the peer stopped) counts that peer lost.
    pub async fn request(&self, to: ShardId, token: u64, msg: ShardMsg) {
        let sent = if self.protocol.borrow().may_request(to) {
            self.send(to, msg).await
        } else {
            // Nobody would answer it.
            Err(self.hand_back(msg))
        };
        if sent.is_err() {
            let done = self.protocol.borrow_mut().calls.handle_lost(token, to);
            if let Some(done) = done {
                done.raise();
            }
        }
    }

    /// Waits for call `token` to finish.
    pub async fn wait(&self, token: u64, done: Rc<Signal>) -> Outcome<Reply> {
        loop {
            if let Some(outcome) = self.protocol.borrow_mut().calls.take(token) {
                return outcome;
            }
            done.wait().await;
        }
    }

    /// Asks `to` and returns its reply; `None` if it cannot answer (it
    /// stopped, or stops first).
    pub async fn call(&self, to: ShardId, request: impl FnOnce(u64) -> ShardMsg) -> Option<Reply> {
        let (token, done) = self.open([to]);
        self.request(to, token, request(token)).await;
        self.wait(token, done).await.into_single()
    }

    /// Asks every other shard; returns once each replied or was lost.
    pub async fn call_all(&self, request: impl Fn(u64) -> ShardMsg) -> Outcome<Reply> {
        if self.count == 1 {
            return Outcome {
                replies: Vec::new(),
                lost: Vec::new(),
            };
        }
        let (token, done) = self.open(self.peers());
        for s in self.peers() {
            self.request(s, token, request(token)).await;
        }
        self.wait(token, done).await
    }

    /// A reply to one of this shard's calls, from `from` (which may be this
    /// shard itself, for a call it answers locally).
    pub fn handle_reply(&self, from: ShardId, token: u64, reply: Reply) {
        let done = self
            .protocol
            .borrow_mut()
            .calls
            .handle_reply(token, from, reply);
        if let Some(done) = done {
            done.raise();
        }
    }

    /// `from`'s mark arrived; everything it sent before has been handled.
    pub fn handle_mark(&self, from: ShardId, mark: Mark) {
        let woken = self.protocol.borrow_mut().handle_mark(from, mark);
        for done in woken {
            done.raise();
        }
        self.mark_arrived.raise();
    }

    /// `peer`'s channel closed without its stop (it failed): calls waiting
    /// for it end.
    pub fn handle_peer_gone(&self, peer: ShardId) {
        let woken = self.protocol.borrow_mut().handle_peer_gone(peer);
        for done in woken {
            done.raise();
        }
        // A stop waiting for its marks does not wait for this peer's.
        self.mark_arrived.raise();
    }

    /// Sends `mark` to every peer, after everything this shard sent before.
    /// After `Mark::Stop` nothing more goes out.
    pub async fn mark(&self, mark: Mark) {
        for s in self.peers() {
            // A peer gone without its own stop (it failed) cannot be told.
            let _ = self.send(s, ShardMsg::Mark(mark)).await;
            self.protocol.borrow_mut().handle_mark_sent(s, mark);
        }
    }

    /// Returns once every peer's `mark` arrived.
    pub async fn wait_marks(&self, mark: Mark) {
        while !self.protocol.borrow().all_marked(mark) {
            self.mark_arrived.wait().await;
        }
    }

    /// Calls still open, stray replies and messages handed back, for the
    /// stop's log line.
    pub fn leftovers(&self) -> (usize, u64, u64) {
        let p = self.protocol.borrow();
        (
            p.calls.open_calls(),
            p.calls.stray_replies(),
            p.handed_back(),
        )
    }
}

impl Shard {
    /// Answers call `token` of shard `to` (this shard included). Never
    /// waits: a full channel sends from a task of its own, so a handler of
    /// peer messages calling this does not stall its receive loop (two
    /// shards waiting on each other's full channels would deadlock).
    pub fn reply(self: &Rc<Self>, to: ShardId, token: u64, reply: Reply) {
        if to == self.id {
            return self.mesh.handle_reply(to, token, reply);
        }
        let msg = ShardMsg::Reply { token, reply };
        if let Err(TrySendError::Full(msg)) = self.mesh.try_send(to, msg) {
            let me = self.clone();
            glommio::spawn_local(async move { me.send(to, msg).await }).detach();
        }
    }

    /// Sends without a reply; a message handed back because its peer
    /// stopped is dropped here (what it asked is moot once the peer
    /// stopped), and counted in the stop's log line.
    pub async fn send(&self, to: ShardId, msg: ShardMsg) {
        let _ = self.mesh.send(to, msg).await;
    }
}
