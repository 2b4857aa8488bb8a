//! Shards: the only module that touches glommio. One executor per CPU, each
//! pinned, each accepting on its own SO_REUSEPORT listener and owning the
//! clients it accepted; shards share nothing but `ShardMsg`s over a full mesh
//! of glommio channels.
//!
//! - `state.rs`: a shard's state and the handlers for cross-shard messages
//!   (routing, retained replication, client-id registry, takeover).
//! - `conn.rs`: one client connection's task (reads, handles, transmits),
//!   generic over the stream: the TCP socket, or a `transport::Secured` one.
//! - `transport.rs`: TLS and WebSocket listeners' handshakes and streams.
//! - `msg.rs`: what crosses shards.
//! - `pressure.rs`: congested subscribers pause their publishers.
//! - `inspect.rs`: the shard's answers to the admin API (clients, kicks,
//!   statistics).
//! - `io.rs`: single-threaded I/O helpers.
//! - `lock.rs`: refusing a second broker on the same listener address.
//! - `client_key.rs`: client ids as keys of the registry maps, one pointer wide.
//! - `fd_table.rs`: the descriptor table reserved at start (no growth stalls).
//! - `ticker.rs`: the periodic tick, and its report when it runs late.
//! - `stop.rs`: the node's stop as it reaches a shard, and its steps.

mod client_key;
mod conn;
mod fd_table;
mod inbox;
mod inspect;
mod io;
mod lifecycle;
mod lock;
mod mesh;
mod msg;
mod pressure;
mod redispatch;
mod registry;
mod reply;
mod service;
#[cfg(test)]
mod sim;
mod state;
mod stop;
mod takeover;
mod ticker;
mod transport;

pub use fd_table::presize_fd_table;
pub use inbox::{CallError, NodeHandle};
pub use inspect::{AdminAnswer, AdminQuery};
pub use lock::BindLock;
pub use service::{ShardContext, ShardStatus};
pub use state::{ShardId, ShardSettings};

use crate::admission::{Count, NodeAdmission};
use crate::limits;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use msg::ShardMsg;
use state::Shard;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One listener and its node-wide connection cap.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub bind: SocketAddr,
    pub max_connections: usize,
    /// TLS and/or WebSocket over the socket; `None`: plain TCP.
    pub transport: Option<Arc<crate::transport::TransportSpec>>,
}

/// Node-wide count of a listener's connections, shared by the shards (an
/// atomic, no lock): see `admission::Count` for why the cap is exact.
pub struct ListenerCount {
    pub bind: SocketAddr,
    pub max: usize,
    pub open: Count,
    /// The listener's transport (`ListenerSpec::transport`).
    pub transport: Option<Arc<crate::transport::TransportSpec>>,
}

/// What a node needs to start its shards.
pub struct NodeSpec {
    /// Every enabled listener; each shard binds all of them.
    pub listeners: Vec<ListenerSpec>,
    /// One shard per CPU, pinned to it.
    pub cpus: Vec<usize>,
    pub settings: ShardSettings,
    /// Node-wide admission state, shared with the admin thread.
    pub admission: Arc<NodeAdmission>,
    /// The shards' inboxes (one per shard, in `cpus` order), through which
    /// other threads ask them things.
    pub node: NodeHandle,
    /// How long an idle shard polls before it sleeps (`node.idle_poll_us`).
    pub idle_poll: Duration,
}

/// Start every shard and block until they stop: after
/// `spec.node.request_stop()` (the signal thread calls it), or after a
/// shard failed (which asks the others to stop).
pub fn run(spec: NodeSpec) -> std::io::Result<()> {
    // Set by each shard as its stop request arrives; new CONNECTs are
    // refused from then on, on every shard.
    let shutdown = Arc::new(AtomicBool::new(false));
    let count = spec.cpus.len();
    assert!(count >= 1 && count <= u16::MAX as usize);
    assert_eq!(spec.node.shards(), count, "one inbox per shard");
    let mesh = MeshBuilder::<ShardMsg, _>::full(count, limits::SHARD_CHANNEL_CAPACITY);
    let counts: Vec<Arc<ListenerCount>> = spec
        .listeners
        .iter()
        .map(|l| {
            Arc::new(ListenerCount {
                bind: l.bind,
                max: l.max_connections,
                open: Default::default(),
                transport: l.transport.clone(),
            })
        })
        .collect();
    let interest_marks = Arc::new(crate::router::InterestMarks::new(count as u16));
    // Shards run one task queue and never ask `need_preempt`: the timers that
    // would make it true cost two io_uring timeouts per executor loop turn
    // (vendor/README.md).
    glommio::set_preemption_timers(false);
    // A late wake-up interrupt must not leave a busy shard asleep until its
    // next timer (vendor/README.md patch 13).
    glommio::set_active_park_bound(Some(limits::SHARD_ACTIVE_PARK));
    let mut handles = Vec::with_capacity(count);
    for &cpu in &spec.cpus {
        let node = spec.node.clone();
        let admission = spec.admission.clone();
        let mesh = mesh.clone();
        let settings = spec.settings.clone();
        let shutdown = shutdown.clone();
        let listener_counts = counts.clone();
        let interest_marks = interest_marks.clone();
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name("ringmq-shard")
            .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD);
        if spec.idle_poll > Duration::ZERO {
            // Polls before parking; the vendored glommio fetches the
            // completions `COOP_TASKRUN` holds back while it polls
            // (vendor/README.md, patch 8), which upstream does not.
            builder = builder.spin_before_park(spec.idle_poll);
        }
        let h = builder
            .spawn(move || async move {
                let shared = Shared {
                    counts: listener_counts,
                    shutdown,
                    interest_marks,
                    admission,
                    node,
                };
                shard_main(mesh, count as u16, settings, shared).await
            })
            .map_err(|e| std::io::Error::other(format!("cannot start shard on CPU {cpu}: {e}")))?;
        handles.push(h);
    }
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                spec.node.request_stop();
                result = Err(e);
            }
            Err(e) => result = Err(std::io::Error::other(format!("shard failed: {e}"))),
        }
    }
    result
}

/// What a shard shares with the other shards and the admin thread.
struct Shared {
    counts: Vec<Arc<ListenerCount>>,
    shutdown: Arc<AtomicBool>,
    /// Each shard's latest added interest (`router::interest`).
    interest_marks: Arc<crate::router::InterestMarks>,
    admission: Arc<NodeAdmission>,
    /// This shard serves its inbox (the one with its id) from it.
    node: NodeHandle,
}

async fn shard_main(
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    count: u16,
    settings: ShardSettings,
    shared: Shared,
) -> std::io::Result<()> {
    let Shared {
        counts,
        shutdown,
        interest_marks,
        admission,
        node,
    } = shared;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| std::io::Error::other("shard mesh join failed"))?;
    let id = senders.peer_id() as ShardId;
    let shard = Rc::new(Shard::new(
        id,
        count,
        settings,
        senders,
        shutdown.clone(),
        interest_marks,
        admission,
    ));
    let mut listeners = Vec::new();
    for count in counts {
        let bind = count.bind;
        match TcpListener::bind(bind) {
            Ok(l) => listeners.push((Rc::new(l), count)),
            Err(e) => {
                // The other shards stop too (this one returns before it
                // serves its inbox; its peers see it gone).
                node.request_stop();
                return Err(std::io::Error::other(format!(
                    "cannot listen on {bind}: {e}"
                )));
            }
        }
        tracing::info!(shard = id, cpu = ?core_affinity_hint(), %bind, "shard listening");
    }

    // One loop per peer, in its messages' order; it ends with the peer's
    // `Mark::Stop`, its last message (or when the peer is gone).
    let receive_loops: Vec<_> = receivers
        .streams()
        .into_iter()
        .map(|(peer, rx)| {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    let stop = matches!(msg, ShardMsg::Mark(msg::Mark::Stop));
                    dispatch(&shard, peer as ShardId, msg);
                    if stop {
                        return;
                    }
                }
                // The peer failed: nothing more comes from it.
                shard.mesh.handle_peer_gone(peer as ShardId);
            })
        })
        .collect();

    // The node's stop request comes through the inbox and wakes the ticker
    // and the acceptors at once, asleep or not (`stop.rs`).
    let stopping = Rc::new(stop::StopLatch::default());
    let stop_request = {
        let (node, stopping) = (node.clone(), stopping.clone());
        glommio::spawn_local(async move {
            node.inbox(id as usize).stop_requested().await;
            tracing::info!(shard = id, "stop requested");
            shutdown.store(true, Ordering::Relaxed);
            stopping.set();
        })
    };
    let inbox = {
        let (shard, node) = (shard.clone(), node.clone());
        glommio::spawn_local(async move { node.inbox(shard.id as usize).serve(&shard).await })
    };

    let ticker = glommio::spawn_local(ticker::run(shard.clone(), stopping.clone()));

    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|(listener, count)| {
            let (shard, stopping) = (shard.clone(), stopping.clone());
            glommio::spawn_local(async move {
                loop {
                    let accepted =
                        futures_lite::future::or(async { Some(listener.accept().await) }, async {
                            stopping.wait().await;
                            None
                        })
                        .await;
                    match accepted {
                        Some(Ok(stream)) => match &count.transport {
                            None => {
                                glommio::spawn_local(conn::serve(
                                    shard.clone(),
                                    stream,
                                    count.clone(),
                                ))
                                .detach();
                            }
                            Some(spec) => {
                                glommio::spawn_local(transport::serve(
                                    shard.clone(),
                                    stream,
                                    count.clone(),
                                    spec.clone(),
                                ))
                                .detach();
                            }
                        },
                        Some(Err(e)) => {
                            tracing::warn!(shard = shard.id, error = %e, "accept failed");
                            glommio::timer::sleep(Duration::from_millis(10)).await;
                        }
                        None => break,
                    }
                }
            })
        })
        .collect();
    for a in acceptors {
        a.await;
    }
    ticker.await;
    stop_request.await;

    // Graceful shutdown: wills first, then every client gets DISCONNECT
    // 0x8B (v5), then the in-order drain of the mesh (`stop.rs`).
    shard.stop().await;
    // Each loop ended at its peer's stop; one whose peer never stopped
    // (the stop's grace ran out) is cancelled here.
    drop(receive_loops);
    // Requests from other threads get `Stopped` from here on.
    node.inbox(id as usize).close().await;
    inbox.await;
    Ok(())
}

/// Handle a message from another shard. Messages that need to send in turn
/// run in their own task, so a receive loop never blocks on a full channel
/// (two shards waiting on each other's full queues would deadlock).
fn dispatch(shard: &Rc<Shard>, from: ShardId, msg: ShardMsg) {
    match msg {
        ShardMsg::Interest { .. }
        | ShardMsg::Barrier { .. }
        | ShardMsg::Publish(_)
        | ShardMsg::Retain { .. }
        | ShardMsg::Claim { .. }
        | ShardMsg::ClaimDone { .. }
        | ShardMsg::Reply { .. }
        | ShardMsg::Mark(_)
        | ShardMsg::Release { .. }
        | ShardMsg::Pause { .. }
        | ShardMsg::Resume { .. } => shard.on_message_sync(from, msg),
        other => {
            let shard = shard.clone();
            glommio::spawn_local(async move { shard.on_message(from, other).await }).detach();
        }
    }
}

fn core_affinity_hint() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    (cpu >= 0).then_some(cpu as usize)
}

#[cfg(test)]
mod tests {
    //! The executor's scheduling order that the shards rely on (vendored
    //! glommio, vendor/README.md patch 11). glommio polls a task once right
    //! where it is spawned, so each task here first waits on a `Gate` and
    //! runs from the executor's queue once the gate opens.
    use super::*;
    use crate::limits::SHARD_TICK as TICK;
    use std::cell::{Cell, RefCell};
    use std::task::{Poll, Waker};

    type Log = Rc<RefCell<Vec<&'static str>>>;

    #[derive(Default)]
    struct Gate {
        open: Cell<bool>,
        waiter: RefCell<Option<Waker>>,
    }

    impl Gate {
        async fn wait(&self) {
            std::future::poll_fn(|cx| {
                if self.open.get() {
                    Poll::Ready(())
                } else {
                    *self.waiter.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await
        }

        fn open(&self) {
            self.open.set(true);
            if let Some(w) = self.waiter.borrow_mut().take() {
                w.wake();
            }
        }
    }

    fn run_on_test_executor<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD)
            .make()
            .expect("executor")
            .run(f)
    }

    /// A task that a delivery wakes (the subscriber's connection) runs right
    /// after the task that woke it (the publisher's), ahead of the tasks
    /// queued before the wake.
    #[test]
    fn a_task_woken_by_the_running_task_runs_next() {
        let log = run_on_test_executor(async {
            let log: Log = Rc::default();
            let (start_pub, start_other, delivered) = (
                Rc::new(Gate::default()),
                Rc::new(Gate::default()),
                Rc::new(Gate::default()),
            );
            let (l, g) = (log.clone(), delivered.clone());
            let sub = glommio::spawn_local(async move {
                g.wait().await;
                l.borrow_mut().push("sub");
            });
            let (l, g, d) = (log.clone(), start_pub.clone(), delivered.clone());
            let publisher = glommio::spawn_local(async move {
                g.wait().await;
                l.borrow_mut().push("pub");
                d.open();
            });
            let (l, g) = (log.clone(), start_other.clone());
            let other = glommio::spawn_local(async move {
                g.wait().await;
                l.borrow_mut().push("other");
            });
            // Both queued: the publisher first, then the other task.
            start_pub.open();
            start_other.open();
            publisher.await;
            other.await;
            sub.await;
            Rc::try_unwrap(log).unwrap().into_inner()
        });
        let at = log.iter().position(|&e| e == "pub").unwrap();
        assert_eq!(log.get(at + 1), Some(&"sub"), "order: {log:?}");
    }

    /// A task that wakes itself to yield still goes behind the others.
    #[test]
    fn a_task_that_wakes_itself_yields() {
        let log = run_on_test_executor(async {
            let log: Log = Rc::default();
            let (start_y, start_other) = (Rc::new(Gate::default()), Rc::new(Gate::default()));
            let (l, g) = (log.clone(), start_other.clone());
            let other = glommio::spawn_local(async move {
                g.wait().await;
                l.borrow_mut().push("other");
            });
            let (l, g) = (log.clone(), start_y.clone());
            let yielder = glommio::spawn_local(async move {
                g.wait().await;
                l.borrow_mut().push("before yield");
                let mut yielded = false;
                std::future::poll_fn(|cx| {
                    if yielded {
                        return Poll::Ready(());
                    }
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                })
                .await;
                l.borrow_mut().push("after yield");
            });
            // The other task is queued when the yielder yields.
            start_other.open();
            start_y.open();
            yielder.await;
            other.await;
            Rc::try_unwrap(log).unwrap().into_inner()
        });
        let yielded = log.iter().position(|&e| e == "before yield").unwrap();
        let resumed = log.iter().position(|&e| e == "after yield").unwrap();
        let other = log.iter().position(|&e| e == "other").unwrap();
        assert!(yielded < other && other < resumed, "order: {log:?}");
    }

    /// How long a parking shard may sleep (vendored glommio, patch 13): to
    /// its next timer, but at most `SHARD_ACTIVE_SLEEP_MAX` (even with no
    /// timer due) while I/O woke it less than `SHARD_ACTIVE_WINDOW` ago.
    #[test]
    fn sleep_is_bounded_only_soon_after_work() {
        let (max, window) = limits::SHARD_ACTIVE_PARK;
        let tick = Some(TICK);
        let recently = window / 2;
        let long_ago = window * 2;
        let bound = Some(limits::SHARD_ACTIVE_PARK);
        assert_eq!(
            glommio::bounded_park_timeout(tick, recently, bound),
            Some(max)
        );
        assert_eq!(
            glommio::bounded_park_timeout(None, recently, bound),
            Some(max)
        );
        let soon = Some(max / 2);
        assert_eq!(glommio::bounded_park_timeout(soon, recently, bound), soon);
        assert_eq!(glommio::bounded_park_timeout(tick, long_ago, bound), tick);
        assert_eq!(glommio::bounded_park_timeout(None, long_ago, bound), None);
        assert_eq!(glommio::bounded_park_timeout(tick, recently, None), tick);
    }

    /// Loop turns of an executor, run with `bound`, while it sleeps 200 ms
    /// right after its socket woke it (or, `with_io` false, with only a
    /// timer having woken it).
    fn turns_while_asleep(bound: Option<(Duration, Duration)>, with_io: bool) -> u64 {
        use futures_lite::AsyncReadExt;
        use std::io::Write;
        glommio::set_active_park_bound(bound);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let port: u16 = port_rx.recv().unwrap();
            let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            client.write_all(b"x").unwrap();
            // Held open until the executor is done.
            let mut end = [0u8; 1];
            let _ = std::io::Read::read(&mut client, &mut end);
        });
        let turns = run_on_test_executor(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            let mut stream = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1];
            stream.read_exact(&mut buf).await.expect("read");
            if !with_io {
                // Long enough for the I/O to be out of any window here.
                glommio::timer::sleep(Duration::from_millis(120)).await;
            }
            // Reading the statistics resets them.
            let runs = || glommio::executor().executor_stats().scheduler_runs();
            let _ = runs();
            glommio::timer::sleep(Duration::from_millis(200)).await;
            runs()
        });
        glommio::set_active_park_bound(Some(limits::SHARD_ACTIVE_PARK));
        writer.join().unwrap();
        turns
    }

    /// An executor whose task its socket just woke and that then has
    /// nothing due for a long time does not sleep through in one piece: it
    /// wakes by itself every `max_sleep` for `window` (so a wake-up
    /// interrupt that never comes is not waited for until its next timer);
    /// after a timer it sleeps to its next timer, so an idle shard's tick
    /// does not keep the bound on. Counted in loop turns, not timed (a
    /// window of 50 ms at 500 us is about 100 turns).
    #[test]
    fn only_io_bounds_the_sleeps_that_follow() {
        let bound = Some((Duration::from_micros(500), Duration::from_millis(50)));
        let unbounded = turns_while_asleep(None, true);
        let after_io = turns_while_asleep(bound, true);
        let after_timer = turns_while_asleep(bound, false);
        assert!(
            after_io >= unbounded + 4,
            "after I/O: {after_io} turns, without the bound {unbounded}"
        );
        assert!(
            after_timer < after_io,
            "after a timer: {after_timer} turns, after I/O {after_io}"
        );
    }

    /// A shard parked with no timer due wakes for its socket's data: the
    /// completion of the readiness poll reaches a sleeping executor (rings
    /// with `COOP_TASKRUN`, vendor/README.md patches 1 and 8). Bounded by a
    /// generous deadline only so that a broken wake-up fails instead of
    /// hanging.
    #[test]
    fn a_parked_shard_wakes_for_its_socket() {
        use futures_lite::AsyncReadExt;
        use std::io::Write;
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shard = std::thread::spawn(move || {
            let got = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD)
                .spin_before_park(Duration::from_micros(20))
                .make()
                .expect("executor")
                .run(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    let mut stream = listener.accept().await.expect("accept");
                    let mut buf = [0u8; 5];
                    stream.read_exact(&mut buf).await.expect("read");
                    buf
                });
            let _ = done_tx.send(got);
        });
        let port = port_rx.recv().unwrap();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Long enough for the shard to be asleep in the kernel; the test
        // passes either way, it only makes the sleeping case the usual one.
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"hello").unwrap();
        let got = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the parked shard never woke for its socket");
        assert_eq!(&got, b"hello");
        shard.join().unwrap();
    }
}
