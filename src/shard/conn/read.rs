//! Reading and decoding: the socket's bytes into the shard's read buffer
//! (`Scratch`), a connection keeping only a partial packet, and the
//! decoded packets handed to the session, their actions carried out.

use super::super::io::Stream;
use super::super::scratch::Scratch;
use super::super::state::{ConnHandle, Shard};
use crate::codec::{self, Packet, Protocol};
use crate::limits;
use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

/// Read what the socket has into `buf`; Ok(false) on EOF.
///
/// glommio's stream waits for readability with a poll on the descriptor and
/// passes no buffer to the kernel until data is there, so the buffer is only
/// needed for the moment of the recv(2): the kernel writes into the shard's
/// one scratch buffer and just the bytes read are copied into `buf`. A
/// connection waiting for its client thus holds no read buffer (an idle
/// connection used to hold a 16 KiB reservation), and the frames split off
/// `buf` share an allocation sized to what was read instead of a whole chunk.
/// Only while a packet larger than the scratch buffer is being assembled
/// (`buf` already grown for it) does the kernel write into `buf` directly,
/// which saves copying large payloads twice.
pub(super) async fn fill<S: Stream>(
    scratch: &Scratch,
    io: &RefCell<S>,
    buf: &mut BytesMut,
) -> io::Result<bool> {
    std::future::poll_fn(|cx| poll_fill(cx, scratch, &mut *io.borrow_mut(), buf)).await
}

/// `fill` as a poll, for a wait on several things at once.
pub(super) fn poll_fill<S: Stream>(
    cx: &mut Context<'_>,
    scratch: &Scratch,
    rd: &mut S,
    buf: &mut BytesMut,
) -> Poll<io::Result<bool>> {
    if buf.capacity() - buf.len() >= limits::READ_CHUNK_BYTES {
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv(2) only writes into this memory and nothing reads
        // it before `set_len` below covers exactly the bytes the kernel
        // wrote.
        let window = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        let n = ready!(Pin::new(&mut *rd).poll_read(cx, window))?;
        // SAFETY: `n` bytes were written by the read above (n <= window.len()).
        unsafe { buf.set_len(buf.len() + n) };
        return Poll::Ready(Ok(n > 0));
    }
    let mut scratch = scratch.read();
    let n = ready!(Pin::new(&mut *rd).poll_read(cx, &mut scratch))?;
    buf.extend_from_slice(&scratch[..n]);
    Poll::Ready(Ok(n > 0))
}

/// `poll_fill` into a `PartialPacket`: without a box, the read goes to the
/// scratch buffer and a box is made only when bytes arrived.
pub(super) fn poll_fill_partial<S: Stream>(
    cx: &mut Context<'_>,
    scratch: &Scratch,
    rd: &mut S,
    buf: &mut PartialPacket,
) -> Poll<io::Result<bool>> {
    if let Some(b) = buf {
        return poll_fill(cx, scratch, rd, b);
    }
    let mut scratch = scratch.read();
    let n = ready!(Pin::new(&mut *rd).poll_read(cx, &mut scratch))?;
    if n > 0 {
        *buf = Some(Box::new(BytesMut::from(&scratch[..n])));
    }
    Poll::Ready(Ok(n > 0))
}

/// Gives `buf`'s memory back when it holds no partial packet: called before
/// waiting for the client, so an idle connection holds no read buffer.
/// Whatever its capacity: the empty rest of a buffer that frames were split
/// off (capacity 0 when they took all of it) still holds a reference to the
/// whole buffer, which would stay allocated.
pub(super) fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

/// `release_if_empty` for an established connection's buffer; after a read
/// of control packets only (`quiet`) the box goes too (see
/// `PartialPacket`).
pub(super) fn release_partial_packet(buf: &mut PartialPacket, quiet: bool) {
    if let Some(b) = buf {
        if b.is_empty() && quiet {
            *buf = None;
        } else {
            release_if_empty(b);
        }
    }
}

/// The bytes of a partial packet. The box exists only while the client
/// sends more than control packets (its storage is released whenever it
/// holds no partial packet, the box after a read of control packets only):
/// an idle connection keeps `None`, 8 bytes of its task's future where the
/// `BytesMut` took 32 (a task in the 160-byte allocator class instead of
/// 192; docs/performance.md, idle connections round 4). A busy connection
/// keeps the box, so reading costs no allocation more than before.
pub(super) type PartialPacket = Option<Box<BytesMut>>;

/// Decodes the packets in `buf` and carries out what they cause; `false`
/// when the connection is closing (requested, or a protocol violation).
/// Clears `quiet` when a PUBLISH or an acknowledgement was among them.
pub(super) async fn handle_buffered(
    shard: &Rc<Shard>,
    handle: &Rc<ConnHandle>,
    buf: &mut BytesMut,
    protocol: Protocol,
    now: Instant,
    quiet: &mut bool,
) -> bool {
    let packet_size_max = shard.settings.session.max_packet_size;
    loop {
        if handle.closing.get() {
            return false;
        }
        if handle.pauses.get() > 0 {
            // A congested subscriber paused this publisher, or its held
            // acks are at their bound: the rest of the buffer waits
            // (`Live::held`).
            return true;
        }
        // A DISCONNECT (type 14) is read once the held acks of forwarded
        // PUBLISHes went out (`session::connection::held`).
        if buf.first().is_some_and(|b| b >> 4 == 14) {
            // Each release raises the connection's wake (`hold_forward_ack`).
            std::future::poll_fn(|cx| {
                if handle.conn.borrow().held_acks() == 0 || handle.closing.get() {
                    return std::task::Poll::Ready(());
                }
                handle.set_waker(cx.waker());
                std::task::Poll::Pending
            })
            .await;
        }
        // The durable store's writer is behind by more than
        // `DURABLE_PENDING_BYTES_MAX`: no more is read until it catches up.
        if shard.durable.is_over_pending() {
            shard.durable.wait_pending_room().await;
        }
        match codec::decode(buf, Some(protocol), packet_size_max) {
            Ok(Some(packet)) => {
                // Other shards route to this one while the SUBSCRIBE is
                // carried out (`Shard::subscribe_pending`).
                let _pending = matches!(packet, Packet::Subscribe(_))
                    .then(|| shard.subscribe_pending())
                    .flatten();
                if matches!(
                    packet,
                    Packet::Publish(_)
                        | Packet::PubAck(_)
                        | Packet::PubRec(_)
                        | Packet::PubRel(_)
                        | Packet::PubComp(_)
                ) {
                    *quiet = false;
                }
                handle.conn.borrow_mut().handle_packet(packet, now);
                if let Some(deferred) = shard.run_actions_now(handle) {
                    shard.run_actions_from(handle, deferred).await;
                }
            }
            Ok(None) => return true,
            Err(e) => {
                tracing::debug!(shard = shard.id, client_id = %handle.conn.borrow().client_id(), error = %e, "protocol violation");
                handle.conn.borrow_mut().kick(e.reason_code());
                shard.run_actions(handle).await;
                return false;
            }
        }
    }
}
