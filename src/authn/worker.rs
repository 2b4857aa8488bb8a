//! The password workers: [`AUTHN_WORKERS`] OS threads that run password
//! checks (PBKDF2 is slow by design) off the shards, fed by one bounded
//! queue of [`AUTHN_QUEUE_LEN_MAX`] jobs. A shard submits without
//! blocking (a full queue is refused at once, `Busy`) and awaits the
//! answer on a oneshot channel whose waker the worker wakes; its other
//! clients run meanwhile.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::limits::{AUTHN_QUEUE_LEN_MAX, AUTHN_WORKERS};

type Job = Box<dyn FnOnce() + Send>;

/// The queue is full: the caller refuses instead of waiting.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

pub struct Workers {
    queue: SyncSender<Job>,
}

impl Workers {
    /// Starts the threads (`ringmq-authn-N`).
    pub fn start() -> std::io::Result<Workers> {
        let (queue, jobs) = sync_channel::<Job>(AUTHN_QUEUE_LEN_MAX);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..AUTHN_WORKERS {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("ringmq-authn-{n}"))
                .spawn(move || run(&jobs))?;
        }
        Ok(Workers { queue })
    }

    /// Queues `job`, or `Busy` when the queue is full.
    pub fn try_submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        match self.queue.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn run(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, never while running it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// One answer from a worker to the task awaiting it: a slot and the
/// waiting task's waker (woken from the worker's thread; glommio's wakers
/// accept that). No tokio on a shard.
struct Slot<T> {
    value: Mutex<Option<T>>,
    waker: atomic_waker::AtomicWaker,
    /// The sender is gone (sent or dropped).
    closed: std::sync::atomic::AtomicBool,
}

/// The worker's end: [`Reply::send`] once; dropped without sending, the
/// waiting end gets `None`.
pub struct Reply<T>(Arc<Slot<T>>);

/// The awaiting end: a future of the answer (`None`: none will come).
pub struct Answer<T>(Arc<Slot<T>>);

/// A new reply channel.
pub fn reply<T>() -> (Reply<T>, Answer<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        waker: atomic_waker::AtomicWaker::new(),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    (Reply(Arc::clone(&slot)), Answer(slot))
}

impl<T> Reply<T> {
    pub fn send(self, value: T) {
        *self.0.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        // `Drop` closes and wakes.
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        self.0
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.waker.wake();
    }
}

impl<T> std::future::Future for Answer<T> {
    type Output = Option<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.waker.register(cx.waker());
        if self.0.closed.load(std::sync::atomic::Ordering::Acquire) {
            let value = self
                .0
                .value
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            return std::task::Poll::Ready(value);
        }
        std::task::Poll::Pending
    }
}
