//! The cluster driver: the loop that runs the sans-IO cluster logic for a
//! running node (docs/adr/0001-cluster.md, "Routes" and "Publishes").
//!
//! ```text
//!  shards ──ToDriver (bounded mpsc per shard)──▶ ┌────────────┐ ──try_send──▶ cluster thread
//!        ◀──NodeHandle::post / call_all───────── │ driver     │ ◀──NetEvent──  (net)
//!                                                 │ (core.rs)  │
//!                                                 └────────────┘
//! ```
//!
//! It runs as a task on the cluster thread (`ringmq-cluster`, net's
//! current-thread tokio runtime, `ClusterHandle::run_here`): no shard runs
//! tokio, and a frame goes from the driver to its QUIC stream without a
//! thread hop (with both nodes of a benchmark on one core, each hop was a
//! context switch). It never blocks a shard: a shard's request that
//! finds its channel full is handed back to the shard (`port.rs`), and the
//! driver reaches shards through their inboxes, keeping what a full inbox
//! refused for its next turn. A frame the cluster thread's queue refuses
//! is kept and retried (`CLUSTER_DRIVER_RETRY_MS`); forwards wait in their
//! windows meanwhile (bounded, drops counted by reason and QoS).
//!
//! * `core`: the state machine (relay, windows, acknowledgements).
//! * `Load`: this node's load figures (`cluster::load`) ride the same
//!   loop: sent when due, peers' figures taken out of the frames.
//! * `port`: what the shards send and hold.
//! * `query`: the cluster-wide clients API (questions to the peers, and
//!   the peers' questions answered from this node's shards).
//! * `rebalance`: cross-node evacuation and rebalance commands, relayed
//!   between the admin threads of the nodes.

mod core;
pub mod port;
pub mod query;
pub mod rebalance;
pub mod session_push;
pub mod takeover;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use self::core::{Core, RouteBatch, RouteOp};
pub use self::core::{Delivery, DriverStats};
pub use port::{ClusterPorts, ShardPort, ToDriver};

use super::net::{ClusterEvents, ClusterHandle, NetEvent, Outgoing};
use crate::codec::ByteStr;
use crate::limits::{
    CLUSTER_DRIVER_BURST_MAX, CLUSTER_DRIVER_INPUTS_MAX, CLUSTER_DRIVER_METRICS_MS,
    CLUSTER_DRIVER_RETRY_MS, CLUSTER_DRIVER_STATS_LOG_MS, CLUSTER_SHARD_QUEUE_MAX,
};
use crate::router::location::{NodeId, ShardId};
use crate::session::WallClock;
use crate::shard::{CallError, NodeHandle, ShardContext};

/// This node's load figures (`cluster::load`), exchanged on the same loop.
pub struct Load {
    pub figures: super::load::LoadFigures,
    pub admission: Arc<crate::admission::NodeAdmission>,
}

enum Input {
    Net(NetEvent),
    Shard(ToDriver),
    RoutesApplied(RouteBatch, bool),
    RetainedSnapshot(NodeId, Vec<(ByteStr, Arc<crate::session::Message>)>),
    ClientsAsk(query::ClientsAsk),
    ClientsServed(NodeId, crate::cluster::logic::proto::ClientsAnswer),
    TakeoverDone(takeover::JobDone),
    Adopted(session_push::AdoptJob, bool),
    NetStopped,
}

/// Starts the driver thread for this node's shards (reached through
/// `node`); returns the ports to hand to `shard::run`.
pub fn start(
    handle: ClusterHandle,
    events: ClusterEvents,
    node: NodeHandle,
    load: Load,
    clients: query::ClientsChannel,
    rebalance: rebalance::Relay,
) -> io::Result<ClusterPorts> {
    let here = handle.node();
    let epoch = handle
        .members()
        .into_iter()
        .find(|m| m.node == here)
        .map_or_else(|| WallClock::now().unix_ms, |m| m.boot_epoch_ms);
    let shard_count = u16::try_from(node.shards()).expect("shard ids fit u16");
    let role = handle
        .members()
        .into_iter()
        .find(|m| m.node == here)
        .map_or(super::logic::homes::Role::Core, |m| {
            takeover::role_of(m.role)
        });
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut shards = Vec::new();
    let mut paused = Vec::new();
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(CLUSTER_SHARD_QUEUE_MAX);
        let (paused_tx, paused_rx) = watch::channel(false);
        receivers.push(rx);
        paused.push(paused_tx);
        shards.push(ShardPort {
            tx,
            ready: ready_rx.clone(),
            paused: paused_rx,
        });
    }
    let gates = Gates {
        ready: ready_tx,
        paused,
    };
    let on = handle.clone();
    let start = move || {
        let mut core = Core::new(here, epoch, shard_count, WallClock::now().unix_ms);
        core.set_role(role);
        let io = Io {
            handle,
            node,
            load,
            clients: clients.inbox,
            rebalance,
        };
        tokio::spawn(async move {
            run(core, io, events, receivers, gates).await;
            info!("cluster driver stopped");
        });
    };
    on.run_here(Box::new(start))
        .map_err(|e| io::Error::other(format!("cluster driver: {e}")))?;
    Ok(ClusterPorts { shards })
}

/// Where the driver's inputs come from: the cluster thread's events, each
/// shard's channel (read directly: no relay task, no extra hop and
/// wake-up per request), and the completions of its own tasks.
struct Sources {
    events: ClusterEvents,
    shards: Vec<Option<mpsc::Receiver<ToDriver>>>,
    own: mpsc::Receiver<Input>,
    /// The source polled first next time (each gets its turn).
    turn: usize,
}

impl Sources {
    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Input> {
        use std::task::Poll;
        let n = self.shards.len() + 2;
        for k in 0..n {
            let i = (self.turn + k) % n;
            let polled = match i {
                0 => match self.events.poll_recv(cx) {
                    Poll::Ready(Some(e)) => Some(Input::Net(e)),
                    Poll::Ready(None) => Some(Input::NetStopped),
                    Poll::Pending => None,
                },
                1 => match self.own.poll_recv(cx) {
                    Poll::Ready(Some(input)) => Some(input),
                    Poll::Ready(None) | Poll::Pending => None,
                },
                _ => {
                    let slot = &mut self.shards[i - 2];
                    match slot.as_mut().map(|rx| rx.poll_recv(cx)) {
                        Some(Poll::Ready(Some(r))) => Some(Input::Shard(r)),
                        Some(Poll::Ready(None)) => {
                            *slot = None; // that shard stopped
                            None
                        }
                        Some(Poll::Pending) | None => None,
                    }
                }
            };
            if let Some(input) = polled {
                self.turn = (i + 1) % n;
                return Poll::Ready(input);
            }
        }
        Poll::Pending
    }

    /// The next input if one is ready now (a burst's rest).
    fn try_next(&mut self) -> Option<Input> {
        let waker = std::task::Waker::noop();
        match self.poll_next(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(input) => Some(input),
            std::task::Poll::Pending => None,
        }
    }
}

/// What the driver loop talks to besides the core.
struct Io {
    handle: ClusterHandle,
    node: NodeHandle,
    load: Load,
    clients: mpsc::Receiver<query::ClientsAsk>,
    rebalance: rebalance::Relay,
}

async fn run(
    mut core: Core,
    io: Io,
    events: ClusterEvents,
    receivers: Vec<mpsc::Receiver<ToDriver>>,
    gates: Gates,
) {
    let Io {
        handle,
        node,
        mut load,
        clients: mut asks,
        rebalance,
    } = io;
    let mut clients = query::ClientsQueries::new();
    let (inputs, input_rx) = mpsc::channel(CLUSTER_DRIVER_INPUTS_MAX);
    {
        // Clients questions are rare: a relay task is enough.
        let inputs = inputs.clone();
        tokio::spawn(async move {
            while let Some(ask) = asks.recv().await {
                if inputs.send(Input::ClientsAsk(ask)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut sources = Sources {
        events,
        shards: receivers.into_iter().map(Some).collect(),
        own: input_rx,
        turn: 0,
    };
    let mut retry = false;
    let mut logged = (DriverStats::default(), 0u64);
    let mut logged_drops = Default::default();
    let mut recorded_ms = 0u64;
    loop {
        let now = std::time::Instant::now();
        super::run::send_load(&mut load.figures, &handle, &load.admission, now);
        let now_ms = WallClock::now().unix_ms;
        let mut wait = core
            .poll_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
        if retry {
            let soon = Duration::from_millis(CLUSTER_DRIVER_RETRY_MS);
            wait = Some(wait.map_or(soon, |w| w.min(soon)));
        }
        if let Some(at) = load.figures.poll_timeout() {
            let until = at.saturating_duration_since(now);
            wait = Some(wait.map_or(until, |w| w.min(until)));
        }
        if let Some(at) = clients.poll_timeout() {
            let until = Duration::from_millis(at.saturating_sub(now_ms));
            wait = Some(wait.map_or(until, |w| w.min(until)));
        }
        let next = std::future::poll_fn(|cx| sources.poll_next(cx));
        let first = match wait {
            Some(wait) => tokio::time::timeout(wait, next).await.ok(),
            None => Some(next.await),
        };
        let clock = WallClock::now();
        // A burst: whatever else is ready now, then one flush for all.
        let mut input = first;
        let mut taken = 0;
        while let Some(i) = input.take() {
            taken += 1;
            match i {
                Input::Net(e) => {
                    let e = rebalance.handle_net(e, &handle);
                    if let Some(e) = e.and_then(|e| clients.handle_net(e, &handle, &node, &inputs))
                    {
                        on_net_event(&mut core, &mut load, &handle, e, &clock)
                    }
                }
                Input::ClientsAsk(ask) => {
                    let running: std::collections::BTreeSet<NodeId> =
                        core.running_peers().collect();
                    clients.handle_ask(ask, |n| running.contains(&n), &handle, clock.unix_ms)
                }
                Input::ClientsServed(to, answer) => clients.handle_served(to, answer, &handle),
                Input::TakeoverDone(done) => core.handle_takeover_done(done, clock.unix_ms),
                Input::Adopted(job, moved) => core.handle_adopted(job, moved),
                Input::Shard(r) => core.handle_request(r, &clock),
                Input::RoutesApplied(batch, ok) => core.handle_route_batch_done(batch, ok),
                Input::RetainedSnapshot(peer, all) => {
                    core.handle_retained_snapshot(peer, all, &clock)
                }
                Input::NetStopped => return,
            }
            if taken < CLUSTER_DRIVER_BURST_MAX {
                input = sources.try_next();
            }
        }
        if core.poll_timeout().is_some_and(|t| t <= clock.unix_ms) {
            core.handle_timeout(clock.unix_ms);
        }
        if clients.poll_timeout().is_some_and(|t| t <= clock.unix_ms) {
            clients.handle_timeout(clock.unix_ms);
        }
        retry = flush(&mut core, &handle, &node, &inputs, &gates);
        if core.poll_ready(clock.unix_ms) && !*gates.ready.borrow() {
            let _ = gates.ready.send(true);
        }
        if clock.unix_ms >= recorded_ms + CLUSTER_DRIVER_METRICS_MS {
            // Per-peer forwarding figures for Prometheus, beside net's.
            for (peer, drops, depth) in core.peer_forwarding() {
                handle.record_forwarding(peer, drops.0, depth as u64);
            }
            recorded_ms = clock.unix_ms;
        }
        if clock.unix_ms >= logged.1 + CLUSTER_DRIVER_STATS_LOG_MS && core.stats() != logged.0 {
            log_stats(&core, &mut logged_drops);
            logged = (core.stats(), clock.unix_ms);
        }
    }
}

/// What the driver tells the shards without a message: the listeners'
/// gate, and per shard whether its forwards must wait (a full window).
struct Gates {
    ready: watch::Sender<bool>,
    paused: Vec<watch::Sender<bool>>,
}

/// Logs the counters; at warn level when forwarded messages were dropped
/// since the last time (`seen`), so a drop is never only a counter.
fn log_stats(core: &Core, seen: &mut crate::cluster::logic::forward::ForwardDrops) {
    use crate::cluster::logic::forward::DropReason;
    let s = core.stats();
    let drops = core.forward_drops();
    if drops != *seen {
        *seen = drops;
        warn!(
            window_full_drops = ?[0, 1, 2].map(|q| drops.get(DropReason::WindowFull, q)),
            link_down_drops = ?[0, 1, 2].map(|q| drops.get(DropReason::LinkDown, q)),
            "cluster: forwarded messages dropped (totals by QoS 0, 1, 2; per peer: \
             ringmq_cluster_peer_forward_drops_total)"
        );
    }
    info!(
        peers = core.running_peers().count(),
        forwards_out = s.forwards_out,
        forwards_in = s.forwards_in,
        window_full_drops = ?[0, 1, 2].map(|q| drops.get(DropReason::WindowFull, q)),
        link_down_drops = ?[0, 1, 2].map(|q| drops.get(DropReason::LinkDown, q)),
        no_peer_drops = ?s.no_peer_drops,
        incomplete_acks = s.incomplete_acks,
        stream_gaps = s.stream_gaps,
        frames_malformed = s.frames_malformed,
        frames_unserved = s.frames_unserved,
        outbox_drops = s.outbox_drops,
        bad_messages = s.bad_messages,
        "cluster driver counters"
    );
}

fn on_net_event(
    core: &mut Core,
    load: &mut Load,
    handle: &ClusterHandle,
    e: NetEvent,
    clock: &WallClock,
) {
    match e {
        NetEvent::MemberUp {
            node,
            name,
            role,
            mqtt_addr,
            epoch,
        } => {
            info!(%name, %node, %role, %mqtt_addr, epoch, "member up");
            let again = core.running_peers().any(|p| p == node);
            core.handle_member_up(node, epoch, clock.unix_ms);
            core.handle_member_role(node, takeover::role_of(role), again, clock.unix_ms);
        }
        NetEvent::MemberDown { node } => {
            let name = handle
                .members()
                .into_iter()
                .find(|m| m.node == node)
                .map_or_else(|| node.to_string(), |m| m.name);
            info!(%name, %node, "member down: its routes are forgotten");
            load.figures.handle_member_down(node);
            core.handle_member_down(node, clock.unix_ms);
        }
        NetEvent::PeerFrame {
            from,
            stream,
            kind,
            body,
        } => match load.figures.handle_frame(from, kind, &body) {
            Ok(true) => {}
            Ok(false) => core.handle_frame(from, stream, kind, &body, clock),
            Err(e) => warn!(%from, kind, error = %e, "bad load figures from a peer"),
        },
        NetEvent::LinkDown { node } => {
            info!(%node, "link with a running member lost: its forwarding windows restart");
            core.handle_link_down(node);
        }
        NetEvent::LinkUp { node } => {
            info!(%node, "new link with a running member: routes resynchronised");
            core.handle_link_up(node, clock.unix_ms);
        }
        NetEvent::Refused { addr, reason } => info!(%addr, %reason, "refused"),
    }
}

/// Hands out what the core produced: frames, route operations, deliveries.
/// True if something waits for room (retry soon).
fn flush(
    core: &mut Core,
    handle: &ClusterHandle,
    node: &NodeHandle,
    inputs: &mpsc::Sender<Input>,
    gates: &Gates,
) -> bool {
    let mut retry = false;
    while let Some((shard, paused)) = core.poll_paused() {
        let _ = gates.paused[usize::from(shard)].send(paused);
    }
    while let Some((peer, reason)) = core.poll_bad_peer() {
        if let Err(e) = handle.close_link(peer, reason) {
            warn!(%peer, "cluster driver: the link that sent a malformed frame stays open: {e}");
        }
    }
    while let Some((to, stream, kind, body)) = core.poll_frame() {
        let out = Outgoing {
            node: to,
            stream,
            kind,
            body,
        };
        if let Err(out) = handle.try_send(out) {
            core.put_back_frame((out.node, out.stream, out.kind, out.body));
            retry = true;
            break;
        }
    }
    if let Some(batch) = core.poll_route_batch() {
        let (node, inputs) = (node.clone(), inputs.clone());
        tokio::spawn(async move {
            let ops = Arc::new(batch.ops.clone());
            let applied = node.call_all(move |ctx| apply_route_ops(ctx, &ops)).await;
            if let Err(e) = &applied {
                debug!("cluster driver: route changes not applied ({e}); again");
                tokio::time::sleep(Duration::from_millis(CLUSTER_DRIVER_RETRY_MS)).await;
            }
            let _ = inputs
                .send(Input::RoutesApplied(batch, applied.is_ok()))
                .await;
        });
    }
    while let Some(peer) = core.poll_retained_wanted() {
        // Every shard holds the whole store: shard 0's copy is it.
        let (node, inputs) = (node.clone(), inputs.clone());
        tokio::spawn(async move {
            match node.call(0, |ctx| ctx.retained_all()).await {
                Ok(all) => {
                    let _ = inputs.send(Input::RetainedSnapshot(peer, all)).await;
                }
                Err(e) => warn!(%peer, "cluster driver: retained store not sent to a peer: {e}"),
            }
        });
    }
    while let Some(job) = core.poll_takeover_job() {
        let (node, inputs) = (node.clone(), inputs.clone());
        tokio::spawn(async move {
            if let Some(done) = takeover::run_job(&node, job).await {
                let _ = inputs.send(Input::TakeoverDone(done)).await;
            }
        });
    }
    while let Some(job) = core.poll_adopt_job() {
        let (node, inputs) = (node.clone(), inputs.clone());
        tokio::spawn(async move {
            let moved = takeover::run_adopt(&node, &job).await;
            let _ = inputs.send(Input::Adopted(job, moved)).await;
        });
    }
    // Consecutive deliveries of one data stream go to their shard in one
    // post (one inbox slot, one wake-up, one acknowledgement).
    let mut run: Vec<Delivery> = Vec::new();
    loop {
        match core.poll_delivery() {
            Some(d)
                if run.len() < CLUSTER_DRIVER_BURST_MAX
                    && run
                        .first()
                        .is_none_or(|r| (r.from, r.stream) == (d.from, d.stream)) =>
            {
                run.push(d);
                continue;
            }
            // Not of this run: it starts the next one.
            Some(d) => core.put_back_delivery(d),
            None => {}
        }
        if run.is_empty() {
            break;
        }
        let target = core.target_shard(run[0].stream);
        let batch = std::mem::take(&mut run);
        match post_deliveries(node, target, batch) {
            Ok(()) => {}
            Err((CallError::Full, batch)) => {
                for d in batch.into_iter().rev() {
                    core.put_back_delivery(d);
                }
                retry = true;
                break;
            }
            // The node is stopping: nothing will route it.
            Err((CallError::Stopped | CallError::NoSuchShard, _)) => {}
        }
    }
    retry
}

/// Posts one data stream's consecutive deliveries to their shard; a full
/// inbox hands them back.
fn post_deliveries(
    node: &NodeHandle,
    shard: ShardId,
    batch: Vec<Delivery>,
) -> Result<(), (CallError, Vec<Delivery>)> {
    let cell = Arc::new(std::sync::Mutex::new(Some(batch)));
    let theirs = cell.clone();
    let posted = node.post(usize::from(shard), move |ctx| {
        let batch = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
        for d in batch.into_iter().flatten() {
            ctx.deliver_forwarded(d.from, d.stream, d.seq, d.message, d.shared);
        }
    });
    posted.map_err(|e| {
        let batch = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
        (e, batch.unwrap_or_default())
    })
}

fn apply_route_ops(ctx: &ShardContext, ops: &[RouteOp]) {
    for op in ops {
        match op {
            RouteOp::Apply { from, change } => ctx.apply_remote_interest(*from, change),
            RouteOp::Replace { from, changes } => {
                ctx.forget_node(*from);
                for change in changes {
                    ctx.apply_remote_interest(*from, change);
                }
            }
            RouteOp::Forget { node } => ctx.forget_node(*node),
            RouteOp::Retain { topic, message } => ctx.set_retained(topic, message.clone()),
        }
    }
}
