//! A shard's stop, in steps every shard takes together, each ended by the
//! event that ends it (bounded by `SHUTDOWN_GRACE`), never by a fixed sleep:
//!
//! 1. Wills: the wills of this shard's clients and its delayed wills are
//!    published (the node's stop ends every session, MQTT-3.1.3-9), then
//!    `Mark::WillsPublished` goes to every peer; the shard waits for every
//!    peer's. When it has them, every will of the node was delivered to the
//!    connections here (a peer's mark follows its wills on the same FIFO
//!    channel).
//! 2. Clients: each gets what is queued for it (the wills among it), then
//!    DISCONNECT 0x8B (v5) and a close; the shard waits for its last
//!    connection to end.
//! 3. Drain: `Mark::Stop` to every peer (the last message it sends them),
//!    then the shard waits for every peer's: everything they sent before
//!    has been handled here, and nothing more will come.
//!
//! What starts it: the node's stop request (`NodeHandle::request_stop`,
//! from the signal thread or a failed shard) arrives through the shard's
//! inbox, which sets the shard's [`StopLatch`]; the latch wakes the
//! acceptors and the ticker, which end, and the shard runs the steps above.
//! An idle shard wakes for it like for any message from another thread,
//! not at its next tick.

use super::msg::Mark;
use super::state::Shard;
use crate::codec::ReasonCode;
use crate::limits::SHUTDOWN_GRACE;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

/// A shard's stop request as its own tasks see it: set once, and every
/// task waiting on it (the ticker, each acceptor) is woken. Waiters are
/// kept once per task (`Waker::will_wake`), so a task that waits on it
/// again and again (an acceptor, between connections) holds one entry.
#[derive(Default)]
pub(super) struct StopLatch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl StopLatch {
    pub(super) fn set(&self) {
        if !self.set.replace(true) {
            for w in self.waiters.take() {
                w.wake();
            }
        }
    }

    /// Returns once the latch is set.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

impl Shard {
    /// One admitted connection ended: counted, and a stop waiting for the
    /// last one is woken.
    pub(super) fn connection_closed(&self) {
        if self.sessions.connection_closed() == 0 {
            self.no_connections.raise();
        }
    }

    /// Returns once no admitted connection is left.
    async fn no_connections_left(&self) {
        while self.sessions.connections() > 0 {
            self.no_connections.wait().await;
        }
    }

    /// Stops this shard (see the module's steps). Called once its
    /// acceptors and ticker ended.
    pub(super) async fn stop(self: &Rc<Self>) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let online = self.sessions.online_handles();
        tracing::info!(shard = self.id, clients = online.len(), "shard stopping");

        let mut wills: Vec<_> = online
            .iter()
            .filter_map(|h| h.conn.borrow_mut().take_will_at_stop())
            .collect();
        // A connection's end waits until it holds the last reference to
        // its handle.
        drop(online);
        wills.extend(self.timers.take_all());
        let published = wills.len();
        for will in wills {
            self.publish(will).await;
        }
        self.mesh.mark(Mark::WillsPublished).await;
        if !within(deadline, self.mesh.wait_marks(Mark::WillsPublished)).await {
            tracing::warn!(shard = self.id, "a shard did not publish its wills in time");
        }

        // Again: a connect that was being established may be online now.
        for h in self.sessions.online_handles() {
            h.conn
                .borrow_mut()
                .kick_after_queued(ReasonCode::SERVER_SHUTTING_DOWN);
            self.drain_sync_actions(&h);
            h.request_close();
        }
        if !within(deadline, self.no_connections_left()).await {
            let connections = self.sessions.connections();
            tracing::warn!(
                shard = self.id,
                connections,
                "connections still open at the end of the shutdown grace"
            );
        }

        self.mesh.mark(Mark::Stop).await;
        if !within(deadline, self.mesh.wait_marks(Mark::Stop)).await {
            tracing::warn!(shard = self.id, "a shard did not stop in time");
        }
        let (open_calls, stray_replies, handed_back) = self.mesh.leftovers();
        tracing::info!(
            shard = self.id,
            wills = published,
            open_calls,
            stray_replies,
            handed_back,
            "shard stopped"
        );
    }
}

/// Whether `work` finished before `deadline`.
async fn within(deadline: Instant, work: impl Future<Output = ()>) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    futures_lite::future::or(
        async {
            work.await;
            true
        },
        async {
            glommio::timer::sleep(left).await;
            false
        },
    )
    .await
}
