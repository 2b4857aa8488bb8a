//! Shards: the only module that touches glommio. One executor per CPU, each
//! pinned, each accepting on its own SO_REUSEPORT listener and owning the
//! clients it accepted; shards share nothing but `ShardMsg`s over a full mesh
//! of glommio channels.
//!
//! - `state.rs`: `Shard`, composed of private parts (below), and the
//!   handlers for cross-shard messages.
//! - The parts, each with its fields private to its file:
//!   `sessions.rs` (slots, takeovers, client-id registry, connection count),
//!   `routes.rs` (router, retained store, delivery counters),
//!   `interest.rs` (interest change numbering), `timers.rs` (delayed wills,
//!   the tick), `pressure.rs` (congested subscribers pause their
//!   publishers), `scratch.rs` (shared read/write buffers), `mesh.rs`
//!   (sends, calls, stop between shards).
//! - `publish.rs`: the path of a PUBLISH (route, resolve, deliver, send on);
//!   `actions.rs`: a connection's actions (subscribe, unsubscribe, ...).
//! - `takeover.rs`: claims at an id's home shard and session takeover.
//! - `cluster.rs`: the shard's end of the cluster driver (interest changes,
//!   forwards out and in, the listeners' gate); clustered nodes only.
//! - `conn/`: one client connection's task, generic over the stream (the
//!   TCP socket, or a `transport::Secured` one): `admit.rs` (CONNECT,
//!   admission, session acquired), `read.rs` (read, decode, handle),
//!   `transmit.rs`, `close.rs` (flush, close, the session's next place).
//! - `transport.rs`: TLS and WebSocket listeners' handshakes and streams.
//! - `msg.rs`: what crosses shards.
//! - `inspect.rs`: the shard's answers to the admin API (clients, kicks,
//!   statistics).
//! - `io.rs`: single-threaded I/O helpers.
//! - `lock.rs`: refusing a second broker on the same listener address.
//! - `client_key.rs`: client ids as keys of the registry maps, one pointer wide.
//! - `fd_table.rs`: the descriptor table reserved at start (no growth stalls).
//! - `ticker.rs`: the periodic tick, and its report when it runs late.
//! - `stop.rs`: the node's stop as it reaches a shard, and its steps.

mod actions;
mod client_key;
mod cluster;
mod cluster_shared;
mod conn;
pub mod durable;
mod durable_gather;
mod durable_restore;
mod durable_resume;
mod evict;
mod fd_table;
mod inbox;
mod inspect;
mod interest;
mod io;
mod lifecycle;
mod lock;
mod mesh;
mod msg;
mod pressure;
mod publish;
mod redispatch;
mod registry;
mod reply;
mod routes;
mod scratch;
mod service;
mod session_push;
mod sessions;
#[cfg(test)]
mod sim;
mod state;
mod stop;
mod takeover;
mod takeover_remote;
mod ticker;
mod timers;
mod transport;
pub mod watchdog;

pub use evict::HeldCounts;
pub use fd_table::presize_fd_table;
pub use inbox::{CallError, NodeHandle};
pub use inspect::{AdminAnswer, AdminQuery};
pub use lock::BindLock;
pub use service::{ShardContext, ShardStatus};
pub use session_push::PushReport;
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
    /// Called once, by the last shard to bind every listener: the node
    /// accepts connections on all of them (systemd's readiness, `systemd.rs`).
    pub on_ready: Option<Box<dyn FnOnce() + Send>>,
    /// The cluster driver's ports, one per shard (`cluster::driver`);
    /// `None` on a single node.
    pub cluster: Option<crate::cluster::driver::ClusterPorts>,
    /// The shards' durable stores and what they restore
    /// (`durable_sessions.enable`); `None`: sessions live in memory only.
    pub durable: Option<Arc<crate::durable::start::DurableStores>>,
}

/// Counts the shards still binding their listeners; the last one runs the
/// node's `on_ready`.
struct ReadyLatch {
    left: std::sync::atomic::AtomicUsize,
    on_ready: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ReadyLatch {
    fn shard_listening(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            let hook = self
                .on_ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(hook) = hook {
                hook();
            }
        }
    }
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
    let ready = Arc::new(ReadyLatch {
        left: count.into(),
        on_ready: std::sync::Mutex::new(spec.on_ready),
    });
    // Shards run one task queue and never ask `need_preempt`: the timers that
    // would make it true cost two io_uring timeouts per executor loop turn
    // (vendor/README.md).
    glommio::set_preemption_timers(false);
    // A late wake-up interrupt must not leave a busy shard asleep until its
    // next timer (vendor/README.md patch 13).
    glommio::set_active_park_bound(Some(limits::SHARD_ACTIVE_PARK));
    let mut handles = Vec::with_capacity(count);
    for (index, &cpu) in spec.cpus.iter().enumerate() {
        let cluster = spec.cluster.as_ref().map(|c| c.port(index as u16));
        let node = spec.node.clone();
        let admission = spec.admission.clone();
        let mesh = mesh.clone();
        let settings = spec.settings.clone();
        let shutdown = shutdown.clone();
        let listener_counts = counts.clone();
        let interest_marks = interest_marks.clone();
        let ready = ready.clone();
        let durable = spec.durable.clone();
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
                    ready,
                    cluster,
                    durable,
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
    ready: Arc<ReadyLatch>,
    /// This shard's end of the cluster driver (clustered nodes).
    cluster: Option<crate::cluster::driver::ShardPort>,
    durable: Option<Arc<crate::durable::start::DurableStores>>,
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
        ready,
        cluster,
        durable,
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
        cluster,
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
    ready.shard_listening();

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

    let ticker = glommio::spawn_local(ticker::run(shard.clone(), stopping.clone(), node.clone()));
    // Peers' forwarded messages, routed in their order (clustered only).
    let forwarded = glommio::spawn_local(shard.clone().serve_forwarded());

    // Durable sessions: restored before any connection is accepted (the
    // other shards answer the claims of the restored ids meanwhile).
    let store_task = match durable
        .as_ref()
        .and_then(|d| d.take(id as usize).map(|s| (d, s)))
    {
        Some((stores, store)) => {
            shard
                .durable
                .attach(store.handle, stores.sync, stores.batch_interval);
            crate::session::store_quota::configure(stores.quota);
            if let Some(redis) = store.redis {
                shard.durable.attach_redis(redis);
            }
            let task = glommio::spawn_local(shard.clone().run_durable());
            if let Err(e) = shard
                .restore_durable(store.sessions, &stores.retained)
                .await
            {
                // The others stop too (counted as restored: none waits on it).
                stores.restored();
                node.request_stop();
                // Lets the store go: `main` joins its writer(s) at the end.
                drop(task);
                shard.durable.close().await;
                return Err(std::io::Error::other(format!(
                    "cannot restore durable sessions: {e}"
                )));
            }
            stores.restored();
            Some(task)
        }
        None => None,
    };

    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|(listener, count)| {
            let (shard, stopping) = (shard.clone(), stopping.clone());
            let durable = durable.clone();
            glommio::spawn_local(async move {
                // Clients wait in the listen backlog until every shard has
                // restored its durable sessions (`DurableStores::restoring`).
                while durable.as_ref().is_some_and(|d| !d.all_restored()) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                // A clustered node takes clients once it has its peers'
                // routes (bounded: `CLUSTER_READY_WAIT_MAX_MS`); they wait
                // in the listen backlog meanwhile.
                futures_lite::future::or(shard.cluster_ready(), stopping.wait()).await;
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
    drop(forwarded);

    // Graceful shutdown: wills first, then every client gets DISCONNECT
    // 0x8B (v5), then the in-order drain of the mesh (`stop.rs`).
    shard.stop().await;
    // The last ops go to the store, whose writer syncs them as it ends.
    if let Some(task) = store_task {
        drop(task);
        shard.durable.close().await;
    }
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
mod executor_tests;
