//! [`Synced`]: how a store's writer (another thread) tells a shard which
//! tickets are on disk (or in Redis): the highest synced ticket and the
//! waker of the shard task that waits for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use super::Ticket;

#[derive(Default)]
pub struct Synced {
    ticket: AtomicU64,
    waker: AtomicWaker,
}

impl Synced {
    /// The highest ticket synced so far (0: none).
    pub fn ticket(&self) -> Ticket {
        self.ticket.load(Ordering::Acquire)
    }

    /// Writer side: every batch up to `ticket` is synced.
    pub fn publish(&self, ticket: Ticket) {
        self.ticket.fetch_max(ticket, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Shard side: ready once the synced ticket is above `seen`.
    pub fn poll_above(&self, seen: Ticket, cx: &mut Context<'_>) -> Poll<Ticket> {
        let now = self.ticket();
        if now > seen {
            return Poll::Ready(now);
        }
        self.waker.register(cx.waker());
        let now = self.ticket();
        if now > seen {
            Poll::Ready(now)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_published_ticket_wakes_the_waiting_task_and_never_goes_back() {
        let synced = Arc::new(Synced::default());
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(synced.poll_above(0, &mut cx), Poll::Pending);
        let writer = synced.clone();
        std::thread::spawn(move || writer.publish(3))
            .join()
            .unwrap();
        assert_eq!(synced.poll_above(0, &mut cx), Poll::Ready(3));
        synced.publish(2);
        assert_eq!(synced.ticket(), 3);
        assert_eq!(synced.poll_above(3, &mut cx), Poll::Pending);
    }
}
