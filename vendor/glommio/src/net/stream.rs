// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
use crate::{
    reactor::Reactor,
    sys::{self, Source, SourceType},
};
use futures_lite::ready;
use nix::sys::socket::MsgFlags;
use std::{
    cell::Cell,
    io,
    net::Shutdown,
    os::unix::io::{AsRawFd, FromRawFd, RawFd},
    rc::{Rc, Weak},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

type Result<T> = crate::Result<T, ()>;

/// Root trait for socket stream receive buffer
pub trait RxBuf {
    fn read(&mut self, buf: &mut [u8]) -> usize;
    fn peek(&self, buf: &mut [u8]) -> usize;
    fn is_empty(&self) -> bool;
    fn as_bytes(&self) -> &[u8];
    fn consume(&mut self, amt: usize);
    fn buffer_size(&self) -> usize;
    fn handle_result(&mut self, result: usize);
    fn unfilled(&mut self) -> &mut [u8];
}

#[derive(Debug, Default)]
pub struct NonBuffered;

impl RxBuf for NonBuffered {
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    fn peek(&self, _buf: &mut [u8]) -> usize {
        0
    }

    fn is_empty(&self) -> bool {
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &[]
    }

    fn consume(&mut self, _amt: usize) {}

    fn buffer_size(&self) -> usize {
        0
    }

    fn handle_result(&mut self, _result: usize) {}

    fn unfilled(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Trait for receive buffer implementations
pub trait Buffered: RxBuf {}

/// Non-shared fixed sized receive buffer allocated
/// when buffered stream is created
#[derive(Debug)]
pub struct Preallocated {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl Preallocated {
    const DEFAULT_BUFFER_SIZE: usize = 8192;

    /// Creates a fixed sized receive buffer
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size],
            tail: 0,
            head: 0,
            cap: size,
        }
    }
}

impl Default for Preallocated {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BUFFER_SIZE)
    }
}

impl Preallocated {
    fn len(&self) -> usize {
        self.tail - self.head
    }
}

impl Buffered for Preallocated {}

impl RxBuf for Preallocated {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
            self.head += sz;
        }
        sz
    }

    fn peek(&self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
        }
        sz
    }

    fn is_empty(&self) -> bool {
        self.head >= self.tail
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn consume(&mut self, amt: usize) {
        self.head += std::cmp::min(self.len(), amt);
    }

    fn buffer_size(&self) -> usize {
        self.cap
    }

    fn handle_result(&mut self, result: usize) {
        self.tail += result;
    }

    fn unfilled(&mut self) -> &mut [u8] {
        if self.len() == 0 {
            self.head = 0;
            self.tail = 0;
        }
        &mut self.buf[self.tail..]
    }
}

// ringmq patch: a stream's read and write timeouts share one box,
// allocated only while either is set (or armed). Inline they were 80 bytes
// of every connection, including the many that never set one (or set one
// only while connecting); one box each took 16; this takes 8, which with
// `rx_done` moved into `NonBufferedStream` puts a `TcpStream` at 40 bytes
// (an `Rc<RefCell<TcpStream>>` in the 64-byte size class instead of 80).
// A timeout's timer id is taken from the reactor when its state is made,
// which is when the stream used to take it.
#[derive(Default)]
struct Timeouts {
    state: Cell<Option<Box<[Option<TimeoutState>; 2]>>>,
}

/// Which of a stream's timeouts.
#[derive(Clone, Copy, Debug)]
enum Dir {
    Read = 0,
    Write = 1,
}

impl std::fmt::Debug for Timeouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let read = self.with(Dir::Read, |s| format!("{s:?}"));
        let write = self.with(Dir::Write, |s| format!("{s:?}"));
        f.debug_struct("Timeouts")
            .field("read", &read)
            .field("write", &write)
            .finish()
    }
}

#[derive(Debug)]
struct TimeoutState {
    id: u64,
    timeout: Option<Duration>,
    timer: Option<Instant>,
}

impl Timeouts {
    fn with<R>(&self, dir: Dir, f: impl FnOnce(Option<&mut TimeoutState>) -> R) -> R {
        let mut state = self.state.take();
        let r = f(state.as_mut().and_then(|s| s[dir as usize].as_mut()));
        self.state.set(state);
        r
    }

    fn get(&self, dir: Dir) -> Option<Duration> {
        self.with(dir, |s| s.and_then(|s| s.timeout))
    }

    fn set(&self, dir: Dir, reactor: &Weak<Reactor>, dur: Option<Duration>) -> Result<()> {
        if let Some(dur) = dur.as_ref() {
            if dur.as_nanos() == 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL).into());
            }
        }
        let mut state = self.state.take();
        if state.is_none() && dur.is_some() {
            state = Some(Box::new([None, None]));
        }
        if let Some(both) = state.as_mut() {
            let slot = &mut both[dir as usize];
            match slot {
                Some(s) => s.timeout = dur,
                None if dur.is_some() => {
                    *slot = Some(TimeoutState {
                        id: reactor.upgrade().unwrap().register_timer(),
                        timeout: dur,
                        timer: None,
                    })
                }
                None => {}
            }
            // Nothing armed and nothing set: the slot is cleared...
            if slot
                .as_ref()
                .is_some_and(|s| s.timeout.is_none() && s.timer.is_none())
            {
                *slot = None;
            }
        }
        // ... and the memory goes back with both slots clear.
        if state
            .as_ref()
            .is_some_and(|both| both.iter().all(Option::is_none))
        {
            state = None;
        }
        self.state.set(state);
        Ok(())
    }

    fn maybe_set_timer(&self, dir: Dir, reactor: &Reactor, waker: &Waker) {
        self.with(dir, |s| {
            if let Some(s) = s {
                if let Some(timeout) = s.timeout {
                    if s.timer.is_none() {
                        let deadline = Instant::now() + timeout;
                        reactor.insert_timer(s.id, deadline, waker.clone());
                        s.timer = Some(deadline);
                    }
                }
            }
        })
    }

    fn cancel_timer(&self, dir: Dir, reactor: &Reactor) {
        self.with(dir, |s| {
            if let Some(s) = s {
                if s.timer.take().is_some() {
                    reactor.remove_timer(s.id);
                }
            }
        })
    }

    fn check(&self, dir: Dir, reactor: &Reactor) -> io::Result<()> {
        self.with(dir, |s| {
            if let Some(s) = s {
                if let Some(deadline) = s.timer {
                    if !reactor.timer_exists(&(deadline, s.id)) {
                        reactor.remove_timer(s.id);
                        s.timer.take();
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "Operation timed out",
                        ));
                    }
                }
            }
            Ok(())
        })
    }
}

#[derive(Debug)]
pub(crate) struct NonBufferedStream<S> {
    reactor: Weak<Reactor>,
    stream: S,
    source_tx: Option<Source>,
    source_rx: Option<Source>,
    timeouts: Timeouts,
    /// ringmq patch: `source_rx` is a multishot poll (see `poll_read`).
    rx_multishot: bool,
    /// ringmq patch: the last read filled the buffer, so more may be
    /// waiting without a new readiness completion to say so.
    rx_more: bool,
    /// ringmq patch: `GlommioStream`'s end-of-stream flag, here beside the
    /// other flags (in `GlommioStream` it took 8 bytes of padding).
    rx_done: Cell<bool>,
}

impl<S: AsRawFd> NonBufferedStream<S> {
    fn init(&mut self) {
        let reactor = self.reactor.upgrade().unwrap();
        let stream_fd = self.stream.as_raw_fd();
        // ringmq patch: one readability poll for the stream's life where the
        // kernel has multishot polls.
        if let Some(source) = reactor.poll_read_ready_multishot(stream_fd) {
            self.source_rx = Some(source);
            self.rx_multishot = true;
            return;
        }
        self.source_rx = Some(reactor.poll_read_ready(stream_fd));
    }

    /// ringmq patch: `poll_read` over a multishot readability poll. Upstream
    /// submits a new single-shot poll (a source allocation, a submission
    /// and often an `io_uring_enter`) after every read that did not fill
    /// the buffer; here one poll stays armed and each of its completions
    /// only marks the stream readable. A recv(2) is made when a completion
    /// came since the last look, when the last read filled the buffer, or
    /// when the poll ended (then a new one is armed, and the recv covers
    /// what arrived in between); otherwise the task waits for the next
    /// completion. Completions that arrive after their data was already
    /// read only cost a recv that finds nothing.
    fn poll_read_multishot(
        &mut self,
        cx: &Context<'_>,
        reactor: &Reactor,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let fd = self.stream.as_raw_fd();
        let armed = self.source_rx.as_ref().is_some_and(|src| src.is_armed());
        let fired = self
            .source_rx
            .as_ref()
            .is_some_and(|src| src.take_result().is_some());
        if !armed {
            match reactor.poll_read_ready_multishot(fd) {
                Some(source) => self.source_rx = Some(source),
                None => {
                    self.rx_multishot = false;
                    self.source_rx = None;
                }
            }
        }
        if fired || !armed || std::mem::take(&mut self.rx_more) {
            if let Some(result) = super::yolo_recv(fd, buf) {
                self.timeouts.cancel_timer(Dir::Read, reactor);
                let result = poll_err!(result);
                self.rx_more = result > 0 && result == buf.len();
                return Poll::Ready(Ok(result));
            }
        }
        poll_err!(self.timeouts.check(Dir::Read, reactor));
        match self.source_rx.as_ref() {
            Some(source) => source.add_waiter_single(cx.waker()),
            // The kernel refused a multishot poll: single-shot from now on.
            None => {
                self.source_rx = Some(reactor.poll_read_ready(fd));
                self.source_rx.as_ref().unwrap().add_waiter_single(cx.waker());
            }
        }
        self.timeouts.maybe_set_timer(Dir::Read, reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn try_peek(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        super::yolo_peek(self.stream.as_raw_fd(), buf)
    }

    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let source = self.reactor.upgrade().unwrap().recv(
            self.stream.as_raw_fd(),
            buf.len(),
            MsgFlags::MSG_PEEK,
        );

        let sz = source.collect_rw().await?;
        match source.extract_source_type() {
            SourceType::SockRecv(mut src) => {
                buf[0..sz].copy_from_slice(&src.take().unwrap().as_bytes()[0..sz]);
            }
            _ => unreachable!(),
        }
        Ok(sz)
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        if self.rx_multishot {
            return self.poll_read_multishot(cx, reactor, buf);
        }

        let no_pending_poll = self
            .source_rx
            .as_ref()
            .map(|src| src.result().is_some())
            .unwrap_or(true);

        if no_pending_poll {
            if let Some(result) = super::yolo_recv(self.stream.as_raw_fd(), buf) {
                self.source_rx.take();
                self.timeouts.cancel_timer(Dir::Read, reactor);
                let result = poll_err!(result);
                // Start an early poll if the buffer is not fully filled. So when
                // the next time `poll_read` is called, it will be known immediately
                // whether the underlying stream is ready for reading.
                if result > 0 && result < buf.len() {
                    self.source_rx = Some(reactor.poll_read_ready(self.stream.as_raw_fd()));
                    // The `rush_dispatch`s here and after could be removed to
                    // improve performance if #458 is handled appropriately.
                    // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
                }
                return Poll::Ready(Ok(result));
            }
        }

        poll_err!(self.timeouts.check(Dir::Read, reactor));

        if no_pending_poll {
            self.source_rx = Some(reactor.poll_read_ready(self.stream.as_raw_fd()));
            // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
        }

        let source = self.source_rx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.timeouts.maybe_set_timer(Dir::Read, reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // On the write path, we always start with calling `yolo_send`, because
        // it is very likely to success. It could be a waste if it already timed
        // out since the last `poll_write`, but it would not cost much more to
        // give it one last chance in this case.
        if let Some(result) = super::yolo_send(self.stream.as_raw_fd(), buf) {
            let reactor = self.reactor.upgrade().unwrap();
            self.timeouts.cancel_timer(Dir::Write, reactor.as_ref());
            self.source_tx.take();
            return Poll::Ready(result);
        }

        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        poll_err!(self.timeouts.check(Dir::Write, reactor));

        let no_pending_poll = self
            .source_tx
            .as_ref()
            .map(|src| src.result().is_some())
            .unwrap_or(true);

        if no_pending_poll {
            self.source_tx = Some(reactor.poll_write_ready(self.stream.as_raw_fd()));
        }

        let source = self.source_tx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.timeouts.maybe_set_timer(Dir::Write, reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_close(&mut self, _: &Context<'_>) -> Poll<io::Result<()>> {
        self.source_tx.take();
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), Shutdown::Write))
    }

    /// io_uring has support for shutdown now, but it is not in any released
    /// kernel. Even with my "let's use latest" policy it would be crazy to
    /// mandate a kernel that doesn't even exist. So in preparation for that
    /// we'll sync-emulate this but already on an async wrapper
    pub(crate) fn poll_shutdown(
        &self,
        _cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), how))
    }
}

#[derive(Debug)]
pub(crate) struct GlommioStream<S, B> {
    stream: NonBufferedStream<S>,
    rx_buf: B,
}

impl<S> From<socket2::Socket> for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + From<socket2::Socket> + Unpin,
{
    fn from(socket: socket2::Socket) -> Self {
        let reactor = crate::executor().reactor();
        let mut stream = NonBufferedStream {
            reactor: Rc::downgrade(&reactor),
            stream: socket.into(),
            source_tx: None,
            source_rx: None,
            timeouts: Timeouts::default(),
            rx_multishot: false,
            rx_more: false,
            rx_done: Cell::new(false),
        };
        stream.init();
        GlommioStream {
            stream,
            rx_buf: NonBuffered,
        }
    }
}

// ringmq patch: see `Timeouts`; a field that takes a stream past 40 bytes
// costs every connection the next size class.
const _: () = assert!(std::mem::size_of::<GlommioStream<std::net::TcpStream, NonBuffered>>() <= 40);

impl<S: AsRawFd> AsRawFd for GlommioStream<S, NonBuffered> {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.stream.as_raw_fd()
    }
}

impl<S> FromRawFd for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + FromRawFd + From<socket2::Socket> + Unpin,
{
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        let socket = socket2::Socket::from_raw_fd(fd);
        GlommioStream::from(socket)
    }
}

impl<S> GlommioStream<S, NonBuffered> {
    pub(crate) fn buffered_with<B: Buffered>(self, rx_buf: B) -> GlommioStream<S, B> {
        GlommioStream {
            stream: self.stream,
            rx_buf,
        }
    }
}

impl<S: AsRawFd, B: RxBuf> GlommioStream<S, B> {
    /// Receives data on the socket from the remote address to which it is
    /// connected, without removing that data from the queue.
    ///
    /// On success, returns the number of bytes peeked.
    /// Successive calls return the same data. This is accomplished by passing
    /// `MSG_PEEK` as a flag to the underlying `recv` system call.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pos = self.rx_buf.peek(buf);
        if pos < buf.len() && !self.stream.rx_done.get() {
            if let Some(result) = self.stream.try_peek(&mut buf[pos..]) {
                match result {
                    Err(e) => return Err(e),
                    Ok(len) => {
                        pos += len;
                        if len == 0 {
                            self.stream.rx_done.set(true);
                        }
                    }
                }
            }
        }
        if pos > 0 || self.stream.rx_done.get() {
            return Ok(pos);
        }
        self.stream.peek(buf).await
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.rx_buf.is_empty() {
            if buf.len() >= self.rx_buf.buffer_size() {
                return self.stream.poll_read(cx, buf);
            }
            if !self.stream.rx_done.get() {
                poll_err!(ready!(self.poll_replenish_buffer(cx)));
            }
        }
        Poll::Ready(Ok(self.rx_buf.read(buf)))
    }

    fn poll_replenish_buffer(&mut self, cx: &Context<'_>) -> Poll<io::Result<usize>> {
        let result = poll_err!(ready!(self.stream.poll_read(cx, self.rx_buf.unfilled())));
        self.rx_buf.handle_result(result);
        if result == 0 {
            self.stream.rx_done.set(true);
        }
        Poll::Ready(Ok(result))
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, buf)
    }

    pub(crate) fn poll_flush(&self, _cx: &Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_close(cx)
    }

    pub(crate) fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        self.stream.poll_shutdown(cx, how)
    }

    pub(crate) fn set_write_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.timeouts.set(Dir::Write, &self.stream.reactor, dur)
    }

    pub(crate) fn set_read_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.timeouts.set(Dir::Read, &self.stream.reactor, dur)
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.stream.timeouts.get(Dir::Write)
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.stream.timeouts.get(Dir::Read)
    }

    pub(crate) fn stream(&self) -> &S {
        &self.stream.stream
    }
}

impl<S: AsRawFd, B: Buffered> GlommioStream<S, B> {
    pub(crate) fn poll_fill_buf(&mut self, cx: &Context<'_>) -> Poll<io::Result<&[u8]>> {
        if self.rx_buf.is_empty() {
            poll_err!(ready!(self.poll_replenish_buffer(cx)));
        }
        Poll::Ready(Ok(self.rx_buf.as_bytes()))
    }

    pub(crate) fn consume(&mut self, amt: usize) {
        self.rx_buf.consume(amt);
    }
}
