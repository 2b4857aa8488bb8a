//! One client connection, one task: the CONNECT handshake, then a loop that
//! decodes what the client sent, hands the packets to the session, carries
//! out their actions and transmits what the session wants sent. The session
//! logic itself is the sans-IO `session::Connection`; this file only moves
//! bytes and events.

use super::client_key::ClientKey;
use super::inspect::unix_ms;
use super::io::{Half, Stream};
use super::state::{ConnHandle, Parked, Shard, Slot};
use super::ListenerCount;
use crate::admission::{self, Decision, Request};
use crate::codec::{self, ByteStr, ConnAck, ConnAckProperties, Packet, Protocol, ReasonCode};
use crate::limits;
use crate::metrics::ShardMetrics;
use crate::session::lifecycle::WillPlan;
use crate::session::{Connection, WallClock};
use bytes::{Buf, BytesMut};
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use crate::limits::{CLOSE_LINGER, CONNECT_TIMEOUT};

static ASSIGNED_IDS: AtomicU64 = AtomicU64::new(0);

fn assign_client_id(shard: u16) -> ByteStr {
    let n = ASSIGNED_IDS.fetch_add(1, Ordering::Relaxed);
    ByteStr::from(format!("ringmq-{shard}-{n:x}-{:08x}", fastrand::u32(..)))
}

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
async fn fill<S: Stream>(
    scratch: &RefCell<Box<[u8]>>,
    io: &RefCell<S>,
    buf: &mut BytesMut,
) -> io::Result<bool> {
    std::future::poll_fn(|cx| poll_fill(cx, scratch, &mut *io.borrow_mut(), buf)).await
}

/// `fill` as a poll, for a wait on several things at once.
fn poll_fill<S: Stream>(
    cx: &mut Context<'_>,
    scratch: &RefCell<Box<[u8]>>,
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
    let mut scratch = scratch.borrow_mut();
    let n = ready!(Pin::new(&mut *rd).poll_read(cx, &mut scratch))?;
    buf.extend_from_slice(&scratch[..n]);
    Poll::Ready(Ok(n > 0))
}

/// `poll_fill` into a `PartialPacket`: without a box, the read goes to the
/// scratch buffer and a box is made only when bytes arrived.
fn poll_fill_partial<S: Stream>(
    cx: &mut Context<'_>,
    scratch: &RefCell<Box<[u8]>>,
    rd: &mut S,
    buf: &mut PartialPacket,
) -> Poll<io::Result<bool>> {
    if let Some(b) = buf {
        return poll_fill(cx, scratch, rd, b);
    }
    let mut scratch = scratch.borrow_mut();
    let n = ready!(Pin::new(&mut *rd).poll_read(cx, &mut scratch))?;
    if n > 0 {
        *buf = Some(Box::new(BytesMut::from(&scratch[..n])));
    }
    Poll::Ready(Ok(n > 0))
}

/// Transmits what the session has to send without waiting: encodes it into
/// the shard's write scratch buffer and writes as much as the socket takes.
/// Only what the socket did not take is copied into `backlog`, the
/// connection's own buffer, which goes out first next time; so an idle
/// connection (and one whose client keeps up) holds no write buffer.
/// `Ready(Ok)` once everything went out, `Pending` while the socket is full
/// (its readiness wakes the task).
fn poll_transmit<S: Stream>(
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
        let mut out = shard.write_scratch.borrow_mut();
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
async fn flush<S: Stream>(
    shard: &Shard,
    handle: &ConnHandle,
    stream: &mut S,
    backlog: &mut Backlog,
) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_transmit(cx, shard, handle, stream, backlog)).await?;
    std::future::poll_fn(|cx| stream.poll_end(cx)).await
}

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

/// Gives `buf`'s memory back when it holds no partial packet: called before
/// waiting for the client, so an idle connection holds no read buffer.
/// Whatever its capacity: the empty rest of a buffer that frames were split
/// off (capacity 0 when they took all of it) still holds a reference to the
/// whole buffer, which would stay allocated.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

/// `release_if_empty` for an established connection's buffer; after a read
/// of control packets only (`quiet`) the box goes too (see
/// `PartialPacket`).
fn release_partial_packet(buf: &mut PartialPacket, quiet: bool) {
    if let Some(b) = buf {
        if b.is_empty() && quiet {
            *buf = None;
        } else {
            release_if_empty(b);
        }
    }
}

async fn send_packet<S: Stream>(wr: &mut Half<S>, packet: &Packet, protocol: Protocol) {
    let mut out = BytesMut::with_capacity(64);
    if codec::encode(packet, protocol, &mut out).is_ok() {
        let _ = wr.write_all(&out).await;
    }
}

/// Sends a refusal CONNACK made to fit the client's Maximum Packet Size;
/// nothing when not even its reason code fits (the caller closes).
async fn send_refusal<S: Stream>(wr: &mut Half<S>, connack: ConnAck, connect: &codec::Connect) {
    if let Some(connack) = Connection::fit_refusal(connack, connect) {
        let packet = Packet::ConnAck(Box::new(connack));
        send_packet(wr, &packet, connect.protocol).await;
    }
}

fn refusal(protocol: Protocol, v5: ReasonCode, v3: ReasonCode) -> Packet {
    Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: if protocol.is_v5() { v5 } else { v3 },
        properties: Default::default(),
    }))
}

/// The bytes of a partial packet. The box exists only while the client
/// sends more than control packets (its storage is released whenever it
/// holds no partial packet, the box after a read of control packets only):
/// an idle connection keeps `None`, 8 bytes of its task's future where the
/// `BytesMut` took 32 (a task in the 160-byte allocator class instead of
/// 192; docs/performance.md, idle connections round 4). A busy connection
/// keeps the box, so reading costs no allocation more than before.
type PartialPacket = Option<Box<BytesMut>>;

/// What the socket did not take yet, `None` when nothing: boxed, since a
/// connection whose client keeps up never has any, and inline it took 24
/// bytes more of every idle connection's task.
type Backlog = Option<Box<BytesMut>>;

/// What an admitted CONNECT hands to the rest of the connection.
struct Admitted<S> {
    connect: Box<codec::Connect>,
    io: Rc<RefCell<S>>,
    /// Whatever the client sent after its CONNECT.
    buf: BytesMut,
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
struct Live<S> {
    shard: Rc<Shard>,
    handle: Rc<ConnHandle>,
    stream: S,
    /// Bytes of a partial packet (see `PartialPacket`).
    buf: PartialPacket,
    /// What the socket did not take yet (see `poll_transmit`).
    backlog: Backlog,
    protocol: Protocol,
    /// Give the session's emptied queues back once what the last read
    /// caused went out (see `poll_wait`).
    release: bool,
    /// Decoding stopped because the connection was paused: resume it when
    /// the pause ends (`shard::pressure`). In the padding after `protocol`.
    held: bool,
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
    shard.state.borrow_mut().connections += 1;
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

/// The accounting at the end of an admitted connection.
fn closed(shard: &Shard, listener: &ListenerCount) {
    shard.connection_closed();
    listener.open.release();
    shard.admission.connections.release();
}

/// Reads and checks CONNECT and decides admission (node and listener caps,
/// server redirection); redirects or refuses with CONNACK and closes, or
/// fills `admitted`.
async fn admit<S: Stream>(
    shard: &Rc<Shard>,
    io: Rc<RefCell<S>>,
    listener: &ListenerCount,
    admitted: &mut Option<Admitted<S>>,
) {
    let peer = {
        let stream = io.borrow();
        let stream = stream.tcp();
        let _ = stream.set_nodelay(true);
        stream.peer_addr().ok()
    };
    let mut wr = Half(io.clone());
    let cfg = &shard.settings.session;
    let mut buf = BytesMut::new();

    // ---- CONNECT ----
    let _ = io.borrow().tcp().set_read_timeout(Some(CONNECT_TIMEOUT));
    let connect = loop {
        match codec::decode(&mut buf, None, cfg.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => break c,
            Ok(Some(_)) => return close(&io).await,
            Ok(None) => {
                let before = buf.len();
                match fill(&shard.read_scratch, &io, &mut buf).await {
                    Ok(true) => {
                        let read = (buf.len() - before) as u64;
                        ShardMetrics::add(&shard.metrics.bytes_received, read);
                    }
                    _ => return close(&io).await,
                }
            }
            Err(e) => {
                tracing::debug!(shard = shard.id, ?peer, error = %e, "bad CONNECT");
                match e.protocol_hint() {
                    Some(Protocol::V5) => {
                        let p = refusal(Protocol::V5, e.reason_code(), e.reason_code());
                        send_packet(&mut wr, &p, Protocol::V5).await;
                    }
                    Some(p) => {
                        if let Some(rc) = e.connack_v3() {
                            send_packet(&mut wr, &refusal(p, rc, rc), p).await;
                        }
                    }
                    None => {}
                }
                return close(&io).await;
            }
        }
    };
    let mut connect = connect;
    // The client certificate's CN is the user name when the listener says
    // so (`peer_cert_as_username = "cn"`), whatever CONNECT claimed; always
    // `None` on plain TCP.
    if let Some(name) = io.borrow().peer_username() {
        connect.username = Some(ByteStr::from(name));
    }
    let protocol = connect.protocol;
    if let Err(connack) = Connection::check_connect(&connect, cfg) {
        send_refusal(&mut wr, connack, &connect).await;
        return close(&io).await;
    }
    match decide_admission(shard, listener, protocol.is_v5()) {
        Decision::Admit => {}
        Decision::Redirect {
            reason,
            server_reference,
        } => {
            tracing::debug!(
                shard = shard.id,
                ?peer,
                reason = format_args!("0x{:02X}", reason.0),
                server_reference = %server_reference,
                "client redirected"
            );
            let connack = ConnAck {
                session_present: false,
                reason_code: reason,
                properties: ConnAckProperties {
                    server_reference: Some(ByteStr::from(server_reference)),
                    ..Default::default()
                },
            };
            send_refusal(&mut wr, connack, &connect).await;
            return close(&io).await;
        }
        Decision::Refuse { reason, cause } => {
            tracing::debug!(shard = shard.id, ?peer, ?cause, "client refused");
            let connack = ConnAck {
                session_present: false,
                reason_code: reason,
                properties: ConnAckProperties::default(),
            };
            send_refusal(&mut wr, connack, &connect).await;
            return close(&io).await;
        }
    }
    *admitted = Some(Admitted { connect, io, buf });
}

/// Decides a CONNECT (`admission::decide`) and, for an admission, takes a
/// slot in the node-wide and the listener's counts by compare-and-swap. A
/// count another shard changed meanwhile means deciding again with the new
/// counts: no lock, and the caps stay exact.
fn decide_admission(shard: &Shard, listener: &ListenerCount, v5: bool) -> Decision {
    let node = &shard.admission;
    // One load per CONNECT: a config replaced meanwhile applies to the next.
    let config = node.config();
    let decision = loop {
        let node_seen = node.connections.load();
        let listener_seen = listener.open.load();
        let request = Request {
            v5,
            node_connections: node_seen,
            listener_connections: listener_seen,
            listener_max: listener.max,
            evacuating: node.is_evacuating(),
            shutting_down: shard.is_shutting_down(),
        };
        let decision = admission::decide(&request, &config, &mut |n| node.pick(config.strategy, n));
        if decision != Decision::Admit {
            break decision;
        }
        if !node.connections.try_take(node_seen) {
            continue;
        }
        if !listener.open.try_take(listener_seen) {
            node.connections.release();
            continue;
        }
        break decision;
    };
    shard.counters.record(&decision);
    decision
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
                poll_fill_partial(cx, &shard.read_scratch, &mut self.stream, &mut self.buf)
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

/// Decodes the packets in `buf` and carries out what they cause; `false`
/// when the connection is closing (requested, or a protocol violation).
/// Clears `quiet` when a PUBLISH or an acknowledgement was among them.
async fn handle_buffered(
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
            // A congested subscriber paused this publisher: the rest of
            // the buffer waits (`Live::held`).
            return true;
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

/// From an admitted CONNECT to a running connection: acquires the session
/// (claiming the client id, taking over an older connection), registers the
/// connection and queues CONNACK.
async fn establish<S: Stream>(shard: &Rc<Shard>, admitted: Admitted<S>) -> Option<Live<S>> {
    let Admitted { connect, io, buf } = admitted;
    let cfg = &shard.settings.session;
    let protocol = connect.protocol;
    let (client_id, assigned) = if connect.client_id.is_empty() {
        (assign_client_id(shard.id), true)
    } else {
        // A copy of its own: the decoded id shares the buffer of the whole
        // CONNECT read (and a larger reference count), which the session,
        // the registry keys and the subscriptions would keep alive for as
        // long as the client stays.
        (ByteStr::from(connect.client_id.to_string()), false)
    };
    // Before the session is acquired: a CONNECT that cannot be accepted
    // must not take over (and kick) the connection that holds it.
    let assigned_id = assigned.then_some(&client_id);
    if let Err(refusal) = Connection::check_connack_fits(&connect, cfg, assigned_id) {
        tracing::debug!(
            shard = shard.id,
            client_id = %client_id,
            "CONNACK larger than the client's Maximum Packet Size: refused"
        );
        if let Some(connack) = refusal {
            let packet = Packet::ConnAck(Box::new(connack));
            send_packet(&mut Half(io.clone()), &packet, protocol).await;
        }
        close(&io).await;
        return None;
    }
    // From here to the slot's insertion nothing awaits unless the session is
    // discarded: a delivery for it finds it wherever it is.
    let existing = shard.acquire_session(&client_id, connect.clean_start).await;
    shard.cancel_will(&client_id);
    let clock = WallClock::now();
    let connected = shard
        .with_lifecycle(|l| l.handle_connect(&client_id, existing, connect.clean_start, &clock));
    if let Some(mut s) = connected.discard {
        shard.metrics.session_ended(s.drop_counts());
        shard.unsubscribe_session(&s).await;
        shard.redispatch_shared(s.take_shared_undelivered()).await;
    }
    let existing = connected.resume;
    let resumed = existing.is_some();
    let connected_at_ms = unix_ms(std::time::SystemTime::now());
    let now = Instant::now();
    // The session gets a copy of its own, never cloned while the client is
    // idle: `client_id` was cloned for the connects in progress
    // (`State::pending`), and a cloned `Bytes` keeps a 24-byte shared header
    // for as long as any copy lives.
    let session_id = ByteStr::from(client_id.as_str());
    let mut conn = Connection::accept(*connect, session_id, assigned, existing, cfg, now);
    conn.set_socket_fd(io.borrow().tcp().as_raw_fd());
    shard.with_lifecycle(|l| l.handle_online(conn.session(), resumed, &clock));
    let handle = Rc::new(ConnHandle::new(conn, connected_at_ms));
    {
        let st = &mut *shard.state.borrow_mut();
        let key = ClientKey::new(client_id.as_str());
        st.slots.insert(key, Slot::Online(handle.clone()));
    }
    tracing::debug!(shard = shard.id, client_id = %client_id, "client connected");
    // The next connect of this id may now take over from this one.
    shard.claim_done(&client_id).await;

    shard.run_actions(&handle).await;
    // The CONNECT phase's other references to the stream (its write half)
    // are gone: the connection owns it from here on.
    let stream = Rc::try_unwrap(io)
        .unwrap_or_else(|_| unreachable!("the stream is shared after CONNECT"))
        .into_inner();
    Some(Live {
        shard: shard.clone(),
        handle,
        stream,
        buf: (!buf.is_empty()).then(|| Box::new(buf)),
        backlog: None,
        protocol,
        release: false,
        held: false,
    })
}

/// The end of a connection: flush and close the socket, then the session
/// goes offline, moves to the connection that took it over, or ends; then
/// the connection is no longer counted.
async fn finish<S: Stream>(live: Live<S>, eof: bool, listener: Arc<ListenerCount>) {
    let Live {
        shard,
        handle,
        mut stream,
        buf,
        mut backlog,
        protocol: _,
        release: _,
        held: _,
    } = live;
    let shard = &shard;
    let mut buf = buf.map(|b| *b).unwrap_or_default();
    let client_id = handle.conn.borrow().client_id().clone();
    handle.request_close();
    // Flush what is left (DISCONNECT included) and half-close; a client
    // that stopped reading gets CLOSE_LINGER before the socket is shut.
    let flushed = futures_lite::future::or(
        async {
            if flush(shard, &handle, &mut stream, &mut backlog)
                .await
                .is_ok()
            {
                // The client reads EOF after our last packet.
                half_close_fd(stream.tcp());
            }
            true
        },
        async {
            glommio::timer::sleep(CLOSE_LINGER).await;
            false
        },
    )
    .await;
    if !flushed {
        shutdown_fd(stream.tcp());
    }
    if eof {
        shutdown_fd(stream.tcp());
    } else {
        // Lingering close, off the session's path: keep reading and
        // discarding so the client can read our last packets instead of
        // getting a reset for data it sent that we never read. Ends at the
        // client's FIN or after CLOSE_LINGER.
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let _ = stream.tcp().set_read_timeout(Some(CLOSE_LINGER));
            let io = RefCell::new(stream);
            let started = Instant::now();
            loop {
                buf.clear();
                match fill(&shard.read_scratch, &io, &mut buf).await {
                    Ok(true) if started.elapsed() < CLOSE_LINGER => {}
                    _ => break,
                }
            }
            shutdown_fd(io.borrow().tcp());
        })
        .detach();
    }

    // ---- end of connection: the session goes offline, moves or ends ----
    // The slot keeps the closed connection reachable until its session has
    // its next place: deliveries meanwhile go into that session
    // (`Connection::handle_delivery` after the close), and a takeover
    // arriving meanwhile still finds it. Action tasks spawned for this
    // connection may hold the handle for a moment; they finish without
    // waiting on anything.
    let in_slot = |shard: &Shard| {
        matches!(shard.state.borrow().slots.get(client_id.as_str()),
            Some(Slot::Online(h)) if Rc::ptr_eq(h, &handle))
    };
    while Rc::strong_count(&handle) > 1 + usize::from(in_slot(shard)) {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // From here until the session is in its next place nothing awaits.
    if in_slot(shard) {
        shard.state.borrow_mut().slots.remove(client_id.as_str());
    }
    // A congested subscriber that leaves holds nobody back.
    shard.relieve(&handle);
    let handover = shard.take_handover(&handle);
    let Ok(handle) = Rc::try_unwrap(handle) else {
        unreachable!("the handle's other holders are gone and nothing awaited since");
    };
    let mut conn = handle.conn.into_inner();
    let drops = conn.drop_counts();
    let will = conn.take_will();
    let filters: Vec<ByteStr> = conn
        .session()
        .subscriptions()
        .map(|(f, _, _)| f.clone())
        .collect();
    // A session ending now hands its undelivered shared messages back to
    // their groups (MQTT 5.0 section 4.8.2), once it has left them.
    let undelivered_shared = conn.take_shared_undelivered();
    let session = conn.into_session();
    let clock = WallClock::now();
    if session.is_none() {
        shard.metrics.session_ended(drops);
    }
    // A session ending with its connection takes its subscriptions with it,
    // now: before a taker here could subscribe anew.
    let unrouted = session
        .is_none()
        .then(|| shard.unroute(&client_id, filters));
    match handover {
        Some(to) => {
            shard.hand_over(&client_id, to, session).await;
            // Taken over: `Connection::takeover` already applied the will
            // rules; what is left goes out now.
            if let Some((w, _)) = will {
                shard.publish(w).await;
            }
        }
        None => match session {
            Some(s) => {
                let offline = shard.with_lifecycle(|l| l.handle_offline(s, will, &clock));
                {
                    let st = &mut *shard.state.borrow_mut();
                    let key = ClientKey::new(client_id.as_str());
                    st.slots.insert(
                        key,
                        Slot::Offline(Box::new(Parked {
                            session: offline.session,
                            expires_at: offline.expires_at,
                        })),
                    );
                }
                match offline.will {
                    WillPlan::None => {}
                    WillPlan::PublishNow(w) => shard.publish(w).await,
                    WillPlan::At(w, due) => shard.schedule_will(&client_id, w, due),
                }
            }
            None => {
                shard.with_lifecycle(|l| l.handle_ended(&client_id, &clock));
                // First: a connect of this shard claiming the id after this
                // point must not have its ownership released by this.
                shard.release(&client_id).await;
                if let Some((w, _)) = will {
                    shard.publish(w).await;
                }
            }
        },
    }
    shard.redispatch_shared(undelivered_shared).await;
    if let Some(changes) = unrouted {
        shard.announce_interest(changes).await;
    }
    tracing::debug!(
        shard = shard.id,
        client_id = %client_id,
        dropped_queue_full = drops.queue_full,
        dropped_expired = drops.expired,
        dropped_too_large = drops.too_large,
        "client disconnected"
    );
    closed(shard, &listener);
}

async fn close<S: Stream>(io: &Rc<RefCell<S>>) {
    shutdown_fd(io.borrow().tcp());
}

/// shutdown(2) the write direction: the client reads EOF after our last bytes.
fn half_close_fd(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // SAFETY: fd is owned by the stream, which outlives this call.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// shutdown(2) both directions: a reader blocked on this socket wakes with EOF.
fn shutdown_fd(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // SAFETY: fd is owned by the stream, which outlives this call.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
