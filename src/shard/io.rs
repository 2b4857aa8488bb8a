//! Small single-threaded I/O helpers for one connection: split halves of a
//! glommio stream and a wake-up signal. Nothing here is `Send`: a connection
//! never leaves its shard.

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What a connection reads and writes: the TCP socket itself, or a
/// transport over it (`shard::transport::Secured`: TLS, WebSocket).
/// `shard::conn` is generic over it, so a plain TCP connection runs exactly
/// the code it ran before transports existed.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The socket under the transport (options, addresses, shutdown).
    fn tcp(&self) -> &TcpStream;
    /// The user name the transport vouches for (a client certificate's CN
    /// with `peer_cert_as_username = "cn"`): it replaces CONNECT's.
    fn peer_username(&self) -> Option<String> {
        None
    }
    /// Ends the transport (TLS close_notify, WebSocket Close frame) and
    /// writes what it still holds; before the socket is half-closed.
    fn poll_end(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Read or write half of a connection's stream, shared by its task and the
/// lingering close. glommio keeps separate rx and tx sources per stream, so a
/// pending read and a pending write do not disturb each other; the RefCell is
/// only borrowed inside a synchronous poll.
pub struct Half<S>(pub Rc<RefCell<S>>);

impl<S: Stream> AsyncRead for Half<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl<S: Stream> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_close(cx)
    }
}

/// A level-triggered wake-up for exactly one waiting task.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    /// A `Cell`: the waker is only ever moved in and out. (A connection's
    /// wake-up is the same pair inline in `ConnHandle`, where the flag
    /// shares the padding of the handle's other flags.)
    waker: Cell<Option<Waker>>,
}

impl Signal {
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.raised.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

/// A single-value hand-over between two tasks of one shard.
pub struct Oneshot<T> {
    value: RefCell<Option<T>>,
    signal: Signal,
}

impl<T> Oneshot<T> {
    pub fn new() -> Rc<Self> {
        Rc::new(Oneshot {
            value: RefCell::new(None),
            signal: Signal::default(),
        })
    }
    pub fn put(&self, v: T) {
        *self.value.borrow_mut() = Some(v);
        self.signal.raise();
    }
    pub async fn take(&self) -> T {
        loop {
            if let Some(v) = self.value.borrow_mut().take() {
                return v;
            }
            self.signal.wait().await;
        }
    }
}
