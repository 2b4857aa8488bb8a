//! The socket side of TLS and WebSocket listeners: runs a new connection's
//! handshakes (`crate::transport::Stack`, sans-IO) under the listener's
//! `handshake_timeout`, then hands it to `conn::serve` as a [`Secured`]
//! stream. Plain TCP connections never come here.

use super::conn;
use super::io::Stream;
use super::state::Shard;
use super::ListenerCount;
use crate::limits;
use crate::transport::{Stack, TransportSpec};
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// A TCP socket with its transport stack: what `conn` reads and writes are
/// MQTT bytes, what goes over the socket are records and frames. The stack
/// is boxed: it is large, and the stream sits inline in the connection's
/// task.
pub struct Secured {
    tcp: TcpStream,
    stack: Box<Stack>,
}

impl Secured {
    /// Writes what the stack has for the socket; `Ready(Ok)` once nothing
    /// is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.stack.wire_out().is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.stack.wire_out()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.stack.consume_wire_out(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the socket into `buf` and feeds the stack: `Ok(false)` on EOF.
    fn poll_feed(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<bool>> {
        let n = ready!(Pin::new(&mut self.tcp).poll_read(cx, buf))?;
        if n == 0 {
            return Poll::Ready(Ok(false));
        }
        let fed = self.stack.handle_wire(&buf[..n]);
        // Answers (handshake, pong, alert, close) go out now if the socket
        // takes them; the rest with the next write or read.
        let drained = self.poll_drain(cx);
        if let Err(e) = fed {
            // The peer's fault: this connection closes, with the reason in
            // the log (the connection task sees only a failed read).
            tracing::debug!(peer = ?self.tcp.peer_addr().ok(), error = %e, "transport error: closing");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        if let Poll::Ready(Err(e)) = drained {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(true))
    }
}

impl AsyncRead for Secured {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Records a write left behind go out with the next read: the
        // connection's wait polls its read whenever it is woken.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if this.stack.has_app() {
                return Poll::Ready(Ok(this.stack.read_app(buf)));
            }
            if this.stack.peer_closed() {
                return Poll::Ready(Ok(0));
            }
            // `buf` holds the socket's bytes only until the stack took them.
            if !ready!(this.poll_feed(cx, buf))? {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl AsyncWrite for Secured {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.stack.wire_out().len() >= limits::TRANSPORT_WIRE_OUT_BYTES_MAX {
            // The drain above is pending: the socket's readiness wakes us.
            return Poll::Pending;
        }
        this.stack
            .write_app(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_end(cx)
    }
}

impl Stream for Secured {
    fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn peer_username(&self) -> Option<String> {
        self.stack.peer_username()
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stack.close();
        self.poll_drain(cx)
    }
}

/// The task of a connection accepted on a TLS or WebSocket listener: its
/// handshakes, bounded by `handshake_timeout`, then the MQTT connection.
pub async fn serve(
    shard: Rc<Shard>,
    tcp: TcpStream,
    listener: Arc<ListenerCount>,
    spec: Arc<TransportSpec>,
) {
    let peer = tcp.peer_addr().ok();
    let Some(handshaking_slot) = HandshakeSlot::take() else {
        tracing::debug!(
            shard = shard.id,
            ?peer,
            max = limits::TRANSPORT_HANDSHAKES_PER_SHARD_MAX,
            "too many transport handshakes at once: closed"
        );
        shutdown(&tcp);
        return;
    };
    let stack = match Stack::new(&spec) {
        Ok(stack) => Box::new(stack),
        Err(e) => {
            tracing::warn!(shard = shard.id, ?peer, error = %e, "cannot start the transport");
            return;
        }
    };
    let mut secured = Secured { tcp, stack };
    let _ = secured.tcp.set_nodelay(true);
    let handshaking = Box::pin(handshake(&shard, &mut secured));
    let done = futures_lite::future::or(handshaking, async {
        glommio::timer::sleep(spec.handshake_timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "handshake_timeout passed",
        ))
    })
    .await;
    drop(handshaking_slot);
    if let Err(e) = done {
        tracing::debug!(shard = shard.id, ?peer, error = %e, "transport handshake failed");
        // What the stack answered (a TLS alert, an HTTP error response)
        // goes out if the socket takes it now; then the socket closes.
        let _ = futures_lite::future::poll_once(std::future::poll_fn(|cx| secured.poll_drain(cx)))
            .await;
        shutdown(&secured.tcp);
        return;
    }
    let serving = Box::pin(conn::serve(shard, secured, listener));
    serving.await;
}

thread_local! {
    /// Handshakes this shard runs (one shard per thread).
    static HANDSHAKING: Cell<usize> = const { Cell::new(0) };
}

/// One of `limits::TRANSPORT_HANDSHAKES_PER_SHARD_MAX` handshake slots,
/// given back when dropped.
struct HandshakeSlot;

impl HandshakeSlot {
    fn take() -> Option<HandshakeSlot> {
        HANDSHAKING.with(|n| {
            (n.get() < limits::TRANSPORT_HANDSHAKES_PER_SHARD_MAX).then(|| {
                n.set(n.get() + 1);
                HandshakeSlot
            })
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        HANDSHAKING.with(|n| n.set(n.get() - 1));
    }
}

/// Reads and answers until every handshake of the stack is done.
async fn handshake(shard: &Shard, secured: &mut Secured) -> io::Result<()> {
    loop {
        std::future::poll_fn(|cx| secured.poll_drain(cx)).await?;
        if secured.stack.is_established() {
            return Ok(());
        }
        // The shard's read buffer, borrowed only inside the poll.
        let fed = std::future::poll_fn(|cx| {
            let mut scratch = shard.scratch.read();
            secured.poll_feed(cx, &mut scratch)
        })
        .await?;
        if !fed {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn shutdown(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is owned by `tcp`, which outlives this call.
    unsafe {
        libc::shutdown(tcp.as_raw_fd(), libc::SHUT_RDWR);
    }
}
