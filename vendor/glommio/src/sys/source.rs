// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2021 Datadog, Inc.
//
use crate::{
    iou::sqe::SockAddrStorage,
    sys::{
        DmaBuffer, IoBuffer, Latencies, PollableStatus, ReactorQueue, SourceId, Statx,
        TimeSpec64, Wakers,
    },
    GlommioError, IoRequirements, ReactorErrorKind, RingIoStats, TaskQueueHandle,
};
use futures_lite::{future, io};
use std::{
    cell::{Ref, RefCell, RefMut},
    convert::TryFrom,
    ffi::CString,
    fmt,
    mem::MaybeUninit,
    os::unix::io::RawFd,
    path::PathBuf,
    pin::Pin,
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

#[derive(Debug)]
#[allow(dead_code)] // Clippy is unhappy with some of the fields on these enums never being read,
                    // but they are certainly used, and read by debug
pub(crate) enum SourceType {
    // ringmq patch: the buffers of file I/O and socket send/receive
    // operations, and the two paths of a rename, are boxed too (see the
    // message variants below): inline they made every source 64 bytes
    // where the other variants need 32, among them the readiness poll
    // each idle connection keeps pending (its allocation drops from the
    // 192-byte to the 160-byte size class). One small allocation more per
    // file read or write; sockets use readiness polls, not these.
    Write(PollableStatus, Box<IoBuffer>),
    Read(PollableStatus, Option<Box<IoBuffer>>),
    PollAdd,
    SockSend(Box<DmaBuffer>),
    SockRecv(Option<Box<DmaBuffer>>),
    // ringmq patch: the message and address variants are boxed. A source
    // is as large as its largest variant, and these (a msghdr and a
    // sockaddr_storage, over 200 bytes) made every source that large,
    // among them the readability poll each idle connection keeps pending.
    #[allow(clippy::type_complexity)]
    SockRecvMsg(
        Box<(
            Option<DmaBuffer>,
            libc::iovec,
            libc::msghdr,
            MaybeUninit<nix::sys::socket::sockaddr_storage>,
        )>,
    ),
    SockSendMsg(
        Box<(
            DmaBuffer,
            libc::iovec,
            libc::msghdr,
            nix::sys::socket::SockaddrStorage,
        )>,
    ),
    Open(CString),
    FdataSync,
    Fallocate,
    Truncate,
    Close,
    LinkRings,
    ForeignNotifier(u64, bool),
    Statx(CString, Box<RefCell<Statx>>),
    Timeout(TimeSpec64, u32),
    Connect(Box<nix::sys::socket::SockaddrStorage>),
    Accept(Box<SockAddrStorage>),
    Rename(Box<(PathBuf, PathBuf)>),
    CreateDir(PathBuf),
    Remove(PathBuf),
    BlockingFn,
    Invalid,
    CopyFileRange(RawFd, u64, usize),
    #[cfg(feature = "bench")]
    Noop,
}

impl TryFrom<SourceType> for Statx {
    type Error = GlommioError<()>;

    fn try_from(value: SourceType) -> Result<Self, Self::Error> {
        match value {
            SourceType::Statx(_, buf) => Ok(buf.into_inner()),
            src => Err(GlommioError::ReactorError(
                ReactorErrorKind::IncorrectSourceType(format!("{src:?}")),
            )),
        }
    }
}

#[derive(PartialEq, Clone, Copy)]
pub(crate) enum EnqueuedStatus {
    Enqueued,
    Canceled,
    Dispatched,
}

// ringmq patch: the source's index in the source map as a `u32` (see
// `id`): with the status beside it, 16 bytes instead of 24 of every
// submitted source, among them the readiness poll each idle connection
// keeps pending (see `InnerSource`).
#[derive(Clone)]
pub struct EnqueuedSource {
    pub(crate) id: u32,
    pub(crate) queue: ReactorQueue,
    pub(crate) status: EnqueuedStatus,
}

impl EnqueuedSource {
    pub(crate) fn new(id: SourceId, queue: ReactorQueue, status: EnqueuedStatus) -> Self {
        EnqueuedSource {
            id: u32::try_from(id.to_raw()).expect("fewer than 2^32 sources in flight"),
            queue,
            status,
        }
    }

    pub(crate) fn id(&self) -> SourceId {
        SourceId::from_raw(self.id as usize)
    }
}

pub(crate) type StatsCollectionFn = fn(&io::Result<usize>, &mut RingIoStats, waiters: u64) -> ();
pub(crate) type LatencyCollectionFn =
    fn(std::time::Duration, std::time::Duration, std::time::Duration, &mut RingIoStats) -> ();

#[derive(Copy, Clone)]
pub(crate) struct StatsCollection {
    /// fulfilled runs when the source exits the reactor
    pub(crate) fulfilled: Option<StatsCollectionFn>,

    /// reused runs when a fulfilled source is reused by another consumer
    pub(crate) reused: Option<StatsCollectionFn>,

    /// Called when a result is first consumed. It collects the time
    /// it took for user code to consume the result of a fulfilled source.
    /// This is called once, even if the source is reused multiple time.
    pub(crate) latency: Option<LatencyCollectionFn>,
}

/// ringmq patch: what a source keeps only when it collects statistics. A
/// readiness poll (`poll_read_ready`, `poll_write_ready`) collects none, and
/// a socket waiting for its client keeps one pending for as long as the
/// client is idle: inline, these fields (and the three timestamps that only
/// the latency statistics read) were about 90 bytes of every such source,
/// and three clock reads per operation.
pub(crate) struct SourceStats {
    pub(crate) collection: StatsCollection,

    pub(crate) task_queue: Option<TaskQueueHandle>,

    /// The timestamp at which the source was added to the IO queue of the
    /// reactor
    pub(crate) queued_at: Option<std::time::Instant>,

    /// The timestamp at which the source was submitted to the kernel
    pub(crate) submitted_at: Option<std::time::Instant>,

    /// The timestamp at which the reactor fulfilled the source
    pub(crate) fulfilled_at: Option<std::time::Instant>,
}

impl SourceStats {
    fn timestamps(&mut self) -> Option<Latencies> {
        Some(Latencies {
            queued_at: self.queued_at.take()?,
            submitted_at: self.submitted_at.take()?,
            fulfilled_at: self.fulfilled_at.take()?,
        })
    }
}

/// A registered source of I/O events.
pub(crate) struct InnerSource {
    /// Raw file descriptor on Unix platforms.
    pub(crate) raw: RawFd,

    /// Tasks interested in events on this source.
    pub(crate) wakers: Wakers,

    pub(crate) source_type: SourceType,

    // ringmq patch: of its task queue's `IoRequirements` (16 bytes) a
    // source only ever read whether latency matters (the blocking pool's
    // priority). With this, the compact result (`sys::RawResult`) and the
    // 32-bit id in `EnqueuedSource`, `InnerSource` is 104 bytes and a
    // readiness poll's allocation (with the `Rc` and `RefCell` headers)
    // fits the 128-byte size class instead of 160; each idle connection
    // keeps one pending. Checked below.
    pub(crate) latency_matters: bool,

    pub(crate) enqueued: Option<EnqueuedSource>,

    // ringmq patch: what few sources have, in one box made when first
    // needed (a link timeout, statistics, more than one waiter), where the
    // timeout and the statistics were a box each and the waiters a
    // `SmallVec`: with it `InnerSource` is 88 bytes and a readiness poll's
    // allocation fits the 112-byte size class.
    pub(crate) rare: Option<Box<SourceRare>>,
}

/// ringmq patch: the part of a source that few sources use (see
/// `InnerSource::rare`). Never moved once made: a queued link timeout points
/// into it.
#[derive(Default)]
pub(crate) struct SourceRare {
    /// Few sources have a timeout. Changed in place once set.
    pub(crate) timeout: Option<TimeSpec64>,
    /// `None` for sources without statistics (see `SourceStats`).
    pub(crate) stats: Option<SourceStats>,
    /// Waiters after `Wakers::first`.
    pub(crate) waiters: Vec<Waker>,
}

// ringmq patch: see `latency_matters` and `rare`; a field that takes
// `InnerSource` past 88 bytes costs every idle connection the next size
// class (16 bytes).
const _: () = assert!(std::mem::size_of::<InnerSource>() <= 88);

impl InnerSource {
    pub(crate) fn update_source_type(&mut self, source_type: SourceType) -> SourceType {
        std::mem::replace(&mut self.source_type, source_type)
    }

    /// ringmq patch: the statistics state, if the source collects any.
    pub(crate) fn stats_mut(&mut self) -> Option<&mut SourceStats> {
        self.rare.as_deref_mut().and_then(|r| r.stats.as_mut())
    }

    fn rare_mut(&mut self) -> &mut SourceRare {
        self.rare.get_or_insert_with(Default::default)
    }

    pub(crate) fn waiter_count(&self) -> usize {
        usize::from(self.wakers.first.is_some()) + self.rare.as_ref().map_or(0, |r| r.waiters.len())
    }

    pub(crate) fn wake_waiters(&mut self) -> bool {
        let Some(first) = self.wakers.first.take() else {
            return false;
        };
        wake!(first);
        if let Some(rare) = self.rare.as_deref_mut() {
            rare.waiters.drain(..).for_each(|x| {
                wake!(x);
            });
        }
        true
    }
}

impl fmt::Debug for InnerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InnerSource")
            .field("raw", &self.raw)
            .field("wakers", &self.wakers)
            .field("source_type", &self.source_type)
            .field("latency_matters", &self.latency_matters)
            .finish()
    }
}

#[derive(Debug)]
pub struct Source {
    pub(crate) inner: Pin<Rc<RefCell<InnerSource>>>,
}

impl Source {
    /// Registers an I/O source in the reactor.
    pub(crate) fn new(
        ioreq: IoRequirements,
        raw: RawFd,
        source_type: SourceType,
        stats_collection: Option<StatsCollection>,
        task_queue: Option<TaskQueueHandle>,
    ) -> Source {
        Source {
            inner: Rc::pin(RefCell::new(InnerSource {
                raw,
                wakers: Wakers::new(),
                source_type,
                latency_matters: matches!(ioreq.latency_req, crate::Latency::Matters(_)),
                enqueued: None,
                rare: stats_collection.map(|collection| {
                    Box::new(SourceRare {
                        stats: Some(SourceStats {
                            collection,
                            task_queue,
                            queued_at: None,
                            submitted_at: None,
                            fulfilled_at: None,
                        }),
                        ..Default::default()
                    })
                }),
            })),
        }
    }

    pub(crate) fn set_timeout(&self, d: Duration) -> Option<Duration> {
        let mut inner = self.inner.borrow_mut();
        let dur = match TimeSpec64::try_from(d) {
            Ok(dur) | Err(dur) => dur,
        };
        // In place: a queued link timeout points into `rare`.
        let old = inner.rare_mut().timeout.replace(dur);
        old.map(Duration::from)
    }

    pub(super) fn timeout_ref(&self) -> Option<Ref<'_, TimeSpec64>> {
        Ref::filter_map(self.inner.borrow(), |x| {
            x.rare.as_deref().and_then(|r| r.timeout.as_ref())
        })
        .ok()
    }

    pub(super) fn source_type(&self) -> Ref<'_, SourceType> {
        Ref::map(self.inner.borrow(), |x| &x.source_type)
    }

    pub(crate) fn source_type_mut(&self) -> RefMut<'_, SourceType> {
        RefMut::map(self.inner.borrow_mut(), |x| &mut x.source_type)
    }

    pub(crate) fn extract_source_type(self) -> SourceType {
        self.inner
            .borrow_mut()
            .update_source_type(SourceType::Invalid)
    }

    pub(crate) fn extract_buffer(self) -> IoBuffer {
        let stype = self.extract_source_type();
        match stype {
            SourceType::Read(_, Some(buffer)) => *buffer,
            SourceType::Write(_, buffer) => *buffer,
            x => panic!("Could not extract buffer. Source: {:?}", x),
        }
    }

    pub(crate) fn buffer(&self) -> Ref<'_, IoBuffer> {
        Ref::map(self.source_type(), |stype| match stype {
            SourceType::Read(_, Some(buffer)) => &**buffer,
            SourceType::Write(_, buffer) => &**buffer,
            x => panic!("Could not extract buffer. Source: {:?}", x),
        })
    }

    pub(crate) fn result(&self) -> Option<io::Result<usize>> {
        let mut inner = self.inner.borrow_mut();
        let ret = inner.wakers.result.get();
        if ret.is_none() {
            return ret;
        }

        // if there is a scheduler latency collection function present, invoke it once
        if let Some(stats) = inner.stats_mut() {
            if let (Some(stat_fn), Some(lat)) = (stats.collection.latency, stats.timestamps()) {
                drop(inner);
                let pre_lat = lat.submitted_at - lat.queued_at;
                let io_lat = lat.fulfilled_at - lat.submitted_at;
                let post_lat = lat.fulfilled_at.elapsed();

                let reactor = &crate::executor().reactor().sys;
                (stat_fn)(
                    pre_lat,
                    io_lat,
                    post_lat,
                    reactor.ring_for_source(self).io_stats_mut(),
                );
                (stat_fn)(
                    pre_lat,
                    io_lat,
                    post_lat,
                    reactor
                        .ring_for_source(self)
                        .io_stats_for_task_queue_mut(crate::executor().current_task_queue()),
                );
            }
        }

        ret
    }

    /// ringmq patch: takes the result of the last completion (for a
    /// multishot poll: whether it fired since the last take).
    pub(crate) fn take_result(&self) -> Option<io::Result<usize>> {
        self.inner.borrow_mut().wakers.result.take()
    }

    /// ringmq patch: whether the request is still in the kernel (or about
    /// to be submitted): a multishot poll that has not ended.
    pub(crate) fn is_armed(&self) -> bool {
        matches!(
            self.inner.borrow().enqueued.as_ref().map(|e| &e.status),
            Some(EnqueuedStatus::Enqueued | EnqueuedStatus::Dispatched)
        )
    }

    // adds a single waiter to the list, replacing any waiter that may already
    // exist. Should be used for single streams that map a future 1:1 to their I/O
    // source
    pub(crate) fn add_waiter_single(&self, waker: &Waker) {
        let mut inner = self.inner.borrow_mut();
        match &mut inner.wakers.first {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
            }
            None => inner.wakers.first = Some(waker.clone()),
        }
        debug_assert_eq!(inner.waiter_count(), 1)
    }

    // adds a waiter to the list. Useful for streams that have many futures waiting
    // on a single I/O source
    pub(crate) fn add_waiter_many(&self, waker: Waker) {
        let mut inner = self.inner.borrow_mut();
        if inner.wakers.first.is_none() {
            inner.wakers.first = Some(waker);
        } else {
            inner.rare_mut().waiters.push(waker);
        }
    }

    pub(super) fn is_installed(&self) -> Option<bool> {
        match &self.inner.borrow().source_type {
            SourceType::ForeignNotifier(_, installed) => Some(*installed),
            _ => None,
        }
    }

    pub(super) fn raw(&self) -> RawFd {
        self.inner.borrow().raw
    }

    pub(crate) fn stats_collection(&self) -> Option<StatsCollection> {
        self.inner
            .borrow()
            .rare
            .as_ref()
            .and_then(|r| r.stats.as_ref())
            .map(|s| s.collection)
    }

    pub(crate) async fn collect_rw(&self) -> io::Result<usize> {
        future::poll_fn(|cx| {
            if let Some(result) = self.result() {
                return Poll::Ready(result);
            }

            self.add_waiter_many(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        let enqueued = inner.enqueued.as_mut();
        if let Some(enqueued) = enqueued {
            let id = &enqueued.id();
            let EnqueuedSource { queue, status, .. } = enqueued;
            match status {
                EnqueuedStatus::Enqueued => {
                    // We never submitted the request, so it's safe to consume
                    // source here -- kernel didn't see our buffers. By consuming
                    // the source we are signaling to the submit method that we are
                    // no longer interested in submitting this. This should be cheaper
                    // than removing elements from the vector all the time.

                    *status = EnqueuedStatus::Canceled;
                }
                EnqueuedStatus::Dispatched => {
                    // We are cancelling this request, but it is already submitted.
                    // This means that the kernel might be using the buffers right
                    // now, so we delay `consume_source` until we consume the
                    // corresponding event from the completion queue.

                    queue.borrow_mut().cancel_request(*id);
                    *status = EnqueuedStatus::Canceled; // not necessary, but useful for correctness
                }
                EnqueuedStatus::Canceled => unreachable!(),
            }
        }
    }
}
