//! How threads that are not shards (the admin thread today; cluster, store
//! and evacuation threads next) ask a shard something and await its answer,
//! without a lock and without ever blocking the shard.
//!
//! ```text
//!   admin thread (tokio)                         shard N (glommio)
//!   NodeHandle::call(N, f) ──push──▶ Inbox N ──▶ inbox task: f(&ShardContext)
//!        ▲     (bounded, lock-free;   │  wake: the task's glommio waker,
//!        │      full: CallError::Full)│  woken from the foreign thread
//!        └──── tokio oneshot ◀────────┘  (glommio's own eventfd path)
//! ```
//!
//! A request is a closure run on the shard (`FnOnce(&ShardContext) -> R`),
//! not an enum variant: a new question needs no new message type, reply
//! type and dispatch arm, only a method on [`ShardContext`] (which keeps
//! the shard's state private to `src/shard`); docs/adr/0003-shard-services.md
//! has the reasons and the alternatives.
//!
//! Bounded: each shard's inbox holds [`INBOX_CAPACITY`] requests; a full one
//! answers `CallError::Full` at once (the admin API says 503), and a shard
//! runs at most [`INBOX_JOBS_PER_TURN`] requests before it lets its other
//! tasks run. A shard that stops drops what is left in its inbox, and each
//! dropped request's caller gets `CallError::Stopped`: nothing waits for an
//! answer that cannot come.

use super::service::ShardContext;
use super::state::Shard;
use crate::limits::{INBOX_CAPACITY, INBOX_JOBS_PER_TURN};
use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The shard's inbox is full: try again later (HTTP 503).
    Full,
    /// The shard stopped (or is stopping) before it ran the request.
    Stopped,
    /// There is no shard with that id.
    NoSuchShard,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallError::Full => "the shard's inbox is full",
            CallError::Stopped => "the shard stopped",
            CallError::NoSuchShard => "no such shard",
        })
    }
}

impl std::error::Error for CallError {}

/// A request as it waits in an inbox: the caller's closure with the sender
/// of its reply inside. Dropped unrun, it drops that sender, and the caller
/// learns `Stopped`.
type Job = Box<dyn FnOnce(&ShardContext) + Send>;

/// The handle other threads use to reach the node's shards. Cheap to clone,
/// `Send + Sync`; one per process, made before the shards start (requests
/// sent before a shard runs wait in its inbox).
#[derive(Clone)]
pub struct NodeHandle {
    inboxes: Arc<[Inbox]>,
}

impl NodeHandle {
    /// One inbox per shard, `shards` of them.
    pub fn new(shards: usize) -> NodeHandle {
        assert!(shards >= 1);
        NodeHandle {
            inboxes: (0..shards).map(|_| Inbox::new(INBOX_CAPACITY)).collect(),
        }
    }

    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Runs `f` on shard `shard` and returns what it returned. Does not
    /// wait for room: a full inbox is `Err(CallError::Full)` at once.
    /// The returned future works on any executor (the reply comes on a
    /// tokio oneshot channel, which needs no runtime); bound it with a
    /// timeout where the caller must answer in time.
    pub fn call<R, F>(
        &self,
        shard: usize,
        f: F,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&ShardContext) -> R + Send + 'static,
    {
        self.request(shard, move |ctx, reply| {
            // The caller may have gone (timed out): nobody to tell.
            let _ = reply.send(f(ctx));
        })
    }

    /// Like [`NodeHandle::call`], for work that must await on the shard
    /// (asking other shards, closing a connection): `f` makes the future
    /// on the shard, where it runs as a task of its own.
    pub fn call_async<R, F, Fut>(
        &self,
        shard: usize,
        f: F,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(ShardContext) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.request(shard, move |ctx, reply| {
            let work = f(ctx.clone());
            ctx.spawn(async move {
                let _ = reply.send(work.await);
            });
        })
    }

    /// Runs `f` on shard `shard` with no answer: for a thread that hands a
    /// shard work in order and learns its outcome another way (the cluster
    /// driver). A full inbox is `Err(CallError::Full)` at once; the caller
    /// keeps what it wanted to send and tries again.
    pub fn post<F>(&self, shard: usize, f: F) -> Result<(), CallError>
    where
        F: FnOnce(&ShardContext) + Send + 'static,
    {
        match self.inboxes.get(shard) {
            Some(inbox) => inbox.push(Box::new(f)),
            None => Err(CallError::NoSuchShard),
        }
    }

    /// Pushes `job` to shard `shard`'s inbox with the sender of its reply;
    /// the future waits for that reply. `Stopped` when the job is dropped
    /// unrun (the shard stopped) or its reply sender is.
    fn request<R: Send + 'static>(
        &self,
        shard: usize,
        job: impl FnOnce(&ShardContext, tokio::sync::oneshot::Sender<R>) + Send + 'static,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ctx| job(ctx, tx));
        let pushed = match self.inboxes.get(shard) {
            Some(inbox) => inbox.push(job),
            None => Err(CallError::NoSuchShard),
        };
        async move {
            pushed?;
            rx.await.map_err(|_| CallError::Stopped)
        }
    }

    /// Runs `f` on every shard; the answers in shard id order. Fails with
    /// the first shard's error (the shards that did get the request still
    /// run it; their answers are dropped).
    pub fn call_all<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<Vec<R>, CallError>> + Send + 'static
    where
        R: Send + 'static,
        F: Fn(&ShardContext) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let calls: Vec<_> = (0..self.shards())
            .map(|s| {
                let f = f.clone();
                self.call(s, move |ctx| f(ctx))
            })
            .collect();
        async move {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                replies.push(call.await?);
            }
            Ok(replies)
        }
    }

    /// Asks every shard to stop (the node's graceful shutdown). Not a queued
    /// request: a flag in each inbox and a wake-up of the shard's task that
    /// waits for it (`Inbox::stop_requested`), so a full inbox cannot refuse
    /// it and a shard asleep with nothing to do wakes for it at once instead
    /// of noticing a flag at its next tick. Idempotent; a shard not started
    /// yet sees it when it starts. Not async-signal-safe (the wake-up may
    /// allocate): call it from a thread, not from a signal handler.
    pub fn request_stop(&self) {
        for inbox in self.inboxes.iter() {
            inbox.stop.store(true, Ordering::SeqCst);
            inbox.stop_waker.wake();
        }
    }

    /// Shard `shard` ran a tick; called on its thread, which it also
    /// records for the watchdog. One relaxed store and load per tick.
    pub(super) fn note_tick(&self, shard: usize) {
        let inbox = &self.inboxes[shard];
        inbox.ticks.fetch_add(1, Ordering::Relaxed);
        if inbox.thread_id.load(Ordering::Relaxed) == 0 {
            // SAFETY: gettid has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            inbox.thread_id.store(tid, Ordering::Relaxed);
        }
    }

    /// Ticks shard `shard` ran, and its thread's id (0: not known yet).
    pub(super) fn ticks(&self, shard: usize) -> (u64, i32) {
        let inbox = &self.inboxes[shard];
        (
            inbox.ticks.load(Ordering::Relaxed),
            inbox.thread_id.load(Ordering::Relaxed),
        )
    }

    /// Wakes shard `shard`'s inbox task from another thread, with nothing
    /// queued: the executor runs, fires its due timers and goes back to
    /// sleep. The watchdog's remedy for a shard asleep past its tick.
    pub(super) fn poke(&self, shard: usize) {
        self.inboxes[shard].waker.wake();
    }

    /// Shard `id`'s inbox, for the shard to serve.
    pub(super) fn inbox(&self, id: usize) -> &Inbox {
        &self.inboxes[id]
    }
}

/// `Inbox::gate`: the low bit says closed; the rest counts senders inside
/// `push` (in steps of 2), which `close` waits out.
const CLOSED: usize = 1;
const SENDER: usize = 2;

/// One shard's inbox: a bounded lock-free queue that any thread pushes to
/// and only the shard pops, and the waker of the shard's inbox task.
///
/// The wake-up is the task's own glommio `Waker`, woken from the foreign
/// thread: glommio queues it to the shard's executor and writes the
/// executor's eventfd if it sleeps (the path its shared channels use; the
/// executor arms `should_notify`, issues a process-wide `membarrier` and
/// checks its queues once more before it sleeps, so no wake-up is lost).
/// A glommio `shared_channel` was not usable: its sender must be connected
/// inside a glommio executor, and the admin thread runs tokio.
pub(super) struct Inbox {
    jobs: ArrayQueue<Job>,
    waker: AtomicWaker,
    gate: AtomicUsize,
    /// The node asked this shard to stop (`NodeHandle::request_stop`).
    stop: AtomicBool,
    /// The shard's task waiting for `stop` (woken the same way as `waker`).
    stop_waker: AtomicWaker,
    /// Ticks the shard has run (`NodeHandle::note_tick`), read by the
    /// watchdog (`watchdog.rs`).
    ticks: AtomicU64,
    /// The shard thread's kernel id, 0 until it runs: the watchdog reads
    /// its state (asleep or waiting for a CPU) from procfs.
    thread_id: AtomicI32,
}

impl Inbox {
    fn new(capacity: usize) -> Inbox {
        Inbox {
            jobs: ArrayQueue::new(capacity),
            waker: AtomicWaker::new(),
            gate: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stop_waker: AtomicWaker::new(),
            ticks: AtomicU64::new(0),
            thread_id: AtomicI32::new(0),
        }
    }

    fn push(&self, job: Job) -> Result<(), CallError> {
        let gate = self.gate.fetch_add(SENDER, Ordering::SeqCst);
        let pushed = if gate & CLOSED != 0 {
            Err(CallError::Stopped)
        } else {
            // A full queue hands the job back; dropping it here drops the
            // reply sender too (the caller returns `Full` without waiting).
            self.jobs.push(job).map_err(|_| CallError::Full)
        };
        self.gate.fetch_sub(SENDER, Ordering::SeqCst);
        if pushed.is_ok() {
            self.waker.wake();
        }
        pushed
    }

    fn is_closed(&self) -> bool {
        self.gate.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Serves the inbox on its shard until [`Inbox::close`]. Never blocks
    /// on anything but the inbox itself: a request that must wait runs as
    /// its own task (`NodeHandle::call_async`).
    pub(super) async fn serve(&self, shard: &Rc<Shard>) {
        let ctx = ShardContext::new(shard.clone());
        loop {
            let mut ran = 0;
            let more = std::future::poll_fn(|cx| {
                if self.is_closed() {
                    return Poll::Ready(false);
                }
                if !self.jobs.is_empty() {
                    return Poll::Ready(true);
                }
                self.waker.register(cx.waker());
                // A job pushed between the check and the registration
                // found no waker to wake: look again.
                if self.jobs.is_empty() && !self.is_closed() {
                    Poll::Pending
                } else {
                    Poll::Ready(!self.is_closed())
                }
            })
            .await;
            if !more {
                return;
            }
            while ran < INBOX_JOBS_PER_TURN {
                let Some(job) = self.jobs.pop() else { break };
                job(&ctx);
                ran += 1;
            }
            if ran == INBOX_JOBS_PER_TURN {
                // Let the shard's clients run before the next batch.
                futures_lite::future::yield_now().await;
            }
        }
    }

    /// Returns once the node asked this shard to stop
    /// (`NodeHandle::request_stop`), at once if it already did. One task
    /// of the shard waits on it.
    pub(super) async fn stop_requested(&self) {
        std::future::poll_fn(|cx| {
            if self.stop.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            self.stop_waker.register(cx.waker());
            // Asked between the check and the registration: no waker was
            // there to wake.
            if self.stop.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Stops taking requests and drops those still queued (their callers
    /// get `Stopped`). Called by the shard as it stops, after which the
    /// serving task ends. Waits out senders inside `push` (a few
    /// instructions each) so that no request lands after the drain.
    pub(super) async fn close(&self) {
        self.gate.fetch_or(CLOSED, Ordering::SeqCst);
        // Wake the serving task so it sees the flag and ends.
        self.waker.wake();
        while self.gate.load(Ordering::SeqCst) >= SENDER {
            futures_lite::future::yield_now().await;
        }
        while let Some(job) = self.jobs.pop() {
            drop(job);
        }
        // No glommio waker of this shard outlives it in another thread's
        // hands.
        drop(self.waker.take());
        drop(self.stop_waker.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_inbox_refuses_at_once_and_a_closed_one_says_stopped() {
        let inbox = Inbox::new(2);
        let job = || -> Job { Box::new(|_| {}) };
        assert_eq!(inbox.push(job()), Ok(()));
        assert_eq!(inbox.push(job()), Ok(()));
        assert_eq!(inbox.push(job()), Err(CallError::Full));
        futures_lite::future::block_on(inbox.close());
        assert!(inbox.jobs.is_empty(), "close drops what was queued");
        assert_eq!(inbox.push(job()), Err(CallError::Stopped));
    }

    /// The node's stop reaches a shard parked with nothing to do and no
    /// timer at all, by its wake-up alone (the stop used to be a flag
    /// that only the shard's tick, a timer, looked at). Bounded by a
    /// generous deadline only so that a lost wake-up fails instead of
    /// hanging.
    #[test]
    fn a_stop_request_wakes_a_parked_shard() {
        use std::time::{Duration, Instant};
        let node = NodeHandle::new(2);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shard = {
            let node = node.clone();
            std::thread::spawn(move || {
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .io_memory(crate::limits::IO_MEMORY_BYTES_PER_SHARD)
                    .spin_before_park(Duration::from_micros(20))
                    .make()
                    .expect("executor")
                    .run(async move { node.inbox(1).stop_requested().await });
                let _ = done_tx.send(Instant::now());
            })
        };
        // Long enough for the executor to be asleep in the kernel.
        std::thread::sleep(Duration::from_millis(100));
        let asked = Instant::now();
        node.request_stop();
        let stopped = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the parked shard never woke for the stop request");
        shard.join().unwrap();
        assert!(stopped >= asked);
        // Asked before it waits: returns at once.
        futures_lite::future::block_on(node.inbox(0).stop_requested());
    }

    #[test]
    fn a_request_dropped_unrun_tells_its_caller_stopped() {
        let node = NodeHandle::new(1);
        let call = node.call(0, |_| 7u32);
        futures_lite::future::block_on(node.inbox(0).close());
        assert_eq!(
            futures_lite::future::block_on(call),
            Err(CallError::Stopped)
        );
        let late = node.call(0, |_| 7u32);
        assert_eq!(
            futures_lite::future::block_on(late),
            Err(CallError::Stopped)
        );
        let nowhere = node.call(3, |_| 7u32);
        assert_eq!(
            futures_lite::future::block_on(nowhere),
            Err(CallError::NoSuchShard)
        );
    }
}
