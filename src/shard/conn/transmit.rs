//! Transmitting: the session's packets encoded into the shard's write
//! buffer (`Scratch`) and written without waiting; only what the socket did
//! not take stays with the connection (`Backlog`).

use super::super::io::Stream;
use super::super::state::{ConnHandle, Shard};
use crate::limits;
use crate::metrics::ShardMetrics;
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

/// Transmits what the session has to send without waiting: encodes it into
/// the shard's write scratch buffer and writes as much as the socket takes.
/// Only what the socket did not take is copied into `backlog`, the
/// connection's own buffer, which goes out first next time; so an idle
/// connection (and one whose client keeps up) holds no write buffer.
/// `Ready(Ok)` once everything went out, `Pending` while the socket is full
/// (its readiness wakes the task).
pub(super) fn poll_transmit<S: Stream>(
    cx: &mut Context<'_>,
    shard: &Shard,
    handle: &ConnHandle,
    stream: &mut S,
    backlog: &mut Backlog,
) -> Poll<io::Result<()>> {
    let mut write = |cx: &mut Context<'_>, bytes: &[u8]| -> Poll<io::Result<usize>> {
        match ready!(Pin::new(&mut *stream).poll_write(cx, bytes)) {
            Ok(0) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                ShardMetrics::add(&shard.metrics.bytes_sent, n as u64);
                Poll::Ready(Ok(n))
            }
            other => Poll::Ready(other),
        }
    };
    if let Some(pending) = backlog {
        while !pending.is_empty() {
            let n = ready!(write(cx, pending))?;
            pending.advance(n);
        }
        // The backlog's memory goes back as soon as it is empty.
        *backlog = None;
    }
    loop {
        if handle.tx_hold.get() > 0 && !handle.closing.get() {
            return Poll::Ready(Ok(()));
        }
        let mut out = shard.scratch.write();
        out.clear();
        {
            let now = Instant::now();
            let mut conn = handle.conn.borrow_mut();
            let mut publishes = 0u64;
            loop {
                let at = out.len();
                if at >= limits::WRITE_BATCH_BYTES_MAX || !conn.poll_transmit(now, &mut out) {
                    break;
                }
                // The packet's type is the high nibble of its first byte
                // (3: PUBLISH): counted from what was encoded, so the
                // session needs no counter of its own.
                publishes += u64::from(out[at] >> 4 == 3);
            }
            ShardMetrics::add(&shard.metrics.messages_sent, publishes);
            // A packet too large for the client closes the connection from
            // within `poll_transmit`; its `Action::Close` is not run by
            // anything here, so the close is requested now (the connection
            // would otherwise wait for its client's next byte).
            if conn.is_closed() && !handle.closing.get() {
                handle.request_close();
            }
        }
        if out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut written = 0;
        while written < out.len() {
            match write(cx, &out[written..]) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    backlog
                        .get_or_insert_with(Default::default)
                        .extend_from_slice(&out[written..]);
                    return Poll::Pending;
                }
            }
        }
        if out.capacity() > limits::WRITE_SCRATCH_BYTES_KEPT_MAX {
            // One large packet grew the shared buffer: give the memory back.
            *out = BytesMut::new();
        }
    }
}

/// Transmits everything the session has left (at the end of a connection),
/// then ends the transport (nothing for plain TCP).
pub(super) async fn flush<S: Stream>(
    shard: &Shard,
    handle: &ConnHandle,
    stream: &mut S,
    backlog: &mut Backlog,
) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_transmit(cx, shard, handle, stream, backlog)).await?;
    std::future::poll_fn(|cx| stream.poll_end(cx)).await
}

/// What the socket did not take yet, `None` when nothing: boxed, since a
/// connection whose client keeps up never has any, and inline it took 24
/// bytes more of every idle connection's task.
pub(super) type Backlog = Option<Box<BytesMut>>;
