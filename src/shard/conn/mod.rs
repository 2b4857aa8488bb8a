//! One client connection, one task: the CONNECT phase (`admit.rs`:
//! admission, then the session acquired and CONNACK queued), then a loop
//! that reads and decodes what the client sent and hands the packets to the
//! session (`read.rs`), carries out their actions (the shard's
//! `actions.rs`) and transmits what the session wants sent (`transmit.rs`),
//! then the end (`close.rs`: flush, close, the session goes offline, moves
//! or ends). The session logic itself is the sans-IO `session::Connection`;
//! this module only moves bytes and events. Generic over the stream: the
//! TCP socket, or a `transport::Secured` one.

mod admit;
mod authn;
mod close;
mod read;
mod transmit;

use super::io::Stream;
use super::state::{ConnHandle, Shard};
use super::ListenerCount;
use crate::codec::Protocol;
use crate::metrics::ShardMetrics;
use admit::{admit, establish};
use close::{closed, finish};
use read::{handle_buffered, poll_fill_partial, release_partial_packet, PartialPacket};
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use transmit::{poll_transmit, Backlog};

/// What ended a wait of an established connection.
enum Woken {
    /// The read finished: Ok(false) on EOF.
    Read(io::Result<bool>),
    /// The connection must close (requested, or the socket failed on write).
    Close,
    /// The last pause of this publisher ended with packets still undecoded
    /// in its buffer (`shard::pressure`).
    Resumed,
}

/// What an established connection's task keeps while it waits for its
/// client: this, the listener's count and a few flags are the whole state
/// of the wait, so the task's future (allocated once at its full size and
/// paid by every idle connection) stays small. The shard and the `release`
/// flag are here, not beside it, so the wait (`Live::poll_wait`) borrows
/// one thing: a closure holding three references took 24 bytes of the
/// future. The stream is inline (40 bytes): behind the `Rc<RefCell<_>>`
/// the CONNECT phase shares it through, it was an allocation of its own
/// in the 64-byte size class, where inline it takes the task from the
/// 128-byte class to the 160-byte one (docs/performance.md, idle
/// connections round 5).
pub(super) struct Live<S> {
    pub(super) shard: Rc<Shard>,
    pub(super) handle: Rc<ConnHandle>,
    pub(super) stream: S,
    /// Bytes of a partial packet (see `PartialPacket`).
    pub(super) buf: PartialPacket,
    /// What the socket did not take yet (see `poll_transmit`).
    pub(super) backlog: Backlog,
    pub(super) protocol: Protocol,
    /// Give the session's emptied queues back once what the last read
    /// caused went out (see `poll_wait`).
    pub(super) release: bool,
    /// Decoding stopped because the connection was paused: resume it when
    /// the pause ends (`shard::pressure`). In the padding after `protocol`.
    pub(super) held: bool,
    /// The last read carried PUBLISH traffic: yield once before
    /// transmitting what it caused (see `poll_wait`). In the padding too.
    pub(super) defer: bool,
}

/// The task of one accepted connection.
pub fn serve<S: Stream>(
    shard: Rc<Shard>,
    stream: S,
    listener: Arc<ListenerCount>,
) -> impl std::future::Future<Output = ()> {
    // The stream goes behind its Rc before the task exists: an async fn
    // keeps its arguments for its whole life, so the 120-byte stream passed
    // by value would stay in the task's future beside the Rc.
    serve_shared(shard, Rc::new(RefCell::new(stream)), listener)
}

async fn serve_shared<S: Stream>(
    shard: Rc<Shard>,
    io: Rc<RefCell<S>>,
    listener: Arc<ListenerCount>,
) {
    // The CONNECT phase runs boxed: its packets and refusals take far more
    // room than the rest of the connection. (Each boxed future is bound by
    // a `let` before it is awaited: a temporary in the awaiting statement
    // keeps its room in this future.)
    let mut admitted = None;
    let connecting = Box::pin(admit(&shard, io, &listener, &mut admitted));
    connecting.await;
    let Some(admitted) = admitted else {
        return;
    };
    shard.sessions.connection_opened();
    let establishing = Box::pin(establish(&shard, admitted));
    match establishing.await {
        // The established connection runs as a task of its own: glommio
        // allocates a task's future once, at its full size, and this one
        // is sized for the CONNECT phase; the new one holds only what
        // waiting for the client needs, for as long as the client stays.
        Some(live) => {
            glommio::spawn_local(serve_established(live, listener)).detach();
        }
        // Refused before the session was acquired (its CONNACK cannot fit).
        None => closed(&shard, &listener),
    }
}

/// The task of an established connection, until it ends: reads, handles,
/// transmits, then `finish`. Its future is paid by every idle connection:
/// what it keeps across the wait is `live`, the listener and a few flags
/// (104 bytes; the task with glommio's header fits the 160-byte size
/// class); the work of a read and the end of the connection run boxed.
// Not an async fn: one binds a `mut` argument to a second local, and both
// copies of `live` would stay in the future (152 bytes instead of 256).
#[allow(clippy::manual_async_fn)]
fn serve_established<S: Stream>(
    mut live: Live<S>,
    listener: Arc<ListenerCount>,
) -> impl std::future::Future<Output = ()> {
    async move {
        // Keep Alive is enforced by the shard's tick (`Shard::tick`), not by a
        // read timeout: a reactor timer per idle connection cost its memory.
        let _ = live.stream.tcp().set_read_timeout(None);
        // Whether the connection ended with the client's EOF (or a failed read).
        let eof = loop {
            // Whether this turn's read carried control packets only (or none):
            // then the session's emptied queues are released before waiting.
            let mut quiet = true;
            let paused = live.handle.pauses.get() > 0;
            if (!paused && live.buf.as_ref().is_some_and(|b| !b.is_empty()))
                || live.handle.closing.get()
            {
                // One clock read per socket read: every packet of a read
                // arrived together. Read here, not kept across the wait: the
                // 16 bytes would be paid by every idle connection.
                let now = Instant::now();
                // Boxed, once per read: the packets of a read and their actions
                // (routing may wait for a full shard channel) need far more
                // state than waiting for the socket, and inline that state would
                // be part of this future, which lives as long as the connection.
                let handling = Box::pin(handle_buffered(
                    &live.shard,
                    &live.handle,
                    live.buf.get_or_insert_default(),
                    live.protocol,
                    now,
                    &mut quiet,
                ));
                if !handling.await {
                    break false;
                }
                live.defer = !quiet;
            }
            // Paused by a congested subscriber (here or after the read
            // above): what is left in the buffer waits for the resume.
            live.held = live.handle.pauses.get() > 0;
            release_partial_packet(&mut live.buf, quiet);
            live.release = quiet;
            // What woke the wait is reduced to a flag before anything else
            // is awaited: a `Woken` kept across the await below took 16
            // bytes of the future.
            let lost = match std::future::poll_fn(|cx| live.poll_wait(cx)).await {
                Woken::Close => break false,
                Woken::Read(Ok(true)) | Woken::Resumed => false,
                Woken::Read(Ok(false) | Err(_)) => true,
            };
            if lost {
                if !live.handle.closing.get() {
                    live.handle
                        .conn
                        .borrow_mut()
                        .handle_connection_lost(Instant::now());
                    let acting = Box::pin(live.shard.run_actions(&live.handle));
                    acting.await;
                }
                break true;
            }
        };
        let finishing = Box::pin(finish(live, eof, listener));
        finishing.await;
    }
}

impl<S: Stream> Live<S> {
    /// One wait for three things: the client's bytes, something to
    /// transmit (or room in the socket for what is waiting), and a close
    /// requested elsewhere (takeover, shutdown, keepalive), which must not
    /// wait for the client to send something. One task doing both
    /// directions is one task header and future less per connection than a
    /// separate writer; a full socket does not stop the reading. With
    /// `self.release`, gives the session's emptied queues back once what
    /// the last read caused went out.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Woken> {
        let shard = &*self.shard;
        let handle = &*self.handle;
        if handle.closing.get() {
            return Poll::Ready(Woken::Close);
        }
        // Sends in a burst: after a read of PUBLISH traffic the task goes
        // to the back of the run queue once, so the connections that became
        // readable in the same reactor pass are read first and the sends
        // they all caused follow one another. A client on this machine that
        // sleeps between reads is then woken once per burst rather than
        // once per send, and on loopback each wake-up is paid by this CPU
        // inside `send` (an inter-processor interrupt to an idle vCPU):
        // fan-in's load generator woke 10,000 times a second instead of
        // 2,600 (docs/performance.md, "Fan-in: sends in bursts"). With
        // nothing else ready the task runs again at once.
        if self.defer {
            self.defer = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        while handle.take_raised() || self.backlog.is_some() {
            match poll_transmit(cx, shard, handle, &mut self.stream, &mut self.backlog) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => {
                    handle.request_close();
                    return Poll::Ready(Woken::Close);
                }
                Poll::Pending => break,
            }
        }
        if handle.closing.get() {
            // Requested by the transmit above (see `poll_transmit`).
            return Poll::Ready(Woken::Close);
        }
        // Transmitting drains the session queue: a congested subscriber
        // back at half its bound resumes the publishers it paused.
        if handle.conn.borrow_mut().poll_relieved() {
            self.shard.relieve(handle);
        }
        if self.release && self.backlog.is_none() {
            // Once what the read caused went out; not after deliveries,
            // nor after a read of PUBLISH traffic, so a busy connection
            // keeps its queues' buffers instead of reallocating them.
            handle.conn.borrow_mut().release_idle_memory();
            self.release = false;
        }
        // A paused publisher is not read: TCP's flow control stops the
        // client. Its resume raises `wake`.
        if handle.pauses.get() == 0 {
            if self.held {
                self.held = false;
                return Poll::Ready(Woken::Resumed);
            }
            let before = self.buf.as_ref().map_or(0, |b| b.len());
            if let Poll::Ready(r) =
                poll_fill_partial(cx, &shard.scratch, &mut self.stream, &mut self.buf)
            {
                let read = self.buf.as_ref().map_or(0, |b| b.len()) - before;
                ShardMetrics::add(&shard.metrics.bytes_received, read as u64);
                return Poll::Ready(Woken::Read(r));
            }
        }
        handle.set_waker(cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::net::TcpStream;

    /// `Live` is most of the established connection's task future, which
    /// every idle connection keeps (see `PartialPacket`, `Live`).
    #[test]
    fn live_state_is_ten_words() {
        assert_eq!(std::mem::size_of::<Live<TcpStream>>(), 80);
    }

    /// The established connection's task: glommio's header (40 bytes) and
    /// its schedule function (8) before the future, in one allocation that
    /// every idle connection keeps; mimalloc's classes around it are 128,
    /// 160 and 192 bytes. A local kept across an await, or a wider borrow
    /// in the wait, moves it a class up.
    #[test]
    fn established_task_fits_its_size_class() {
        fn future_size<A, B, F: std::future::Future>(_: fn(A, B) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(serve_established::<TcpStream>);
        assert!(48 + size <= 160, "established connection future {size} B");
    }
}
