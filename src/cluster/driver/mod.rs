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
//! It runs on its own OS thread, `ringmq-cluster-node`, with a
//! current-thread tokio runtime (no shard runs tokio, and the net thread's
//! runtime stays net's). It never blocks a shard: a shard's request that
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

mod core;
pub mod port;
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
    CLUSTER_DRIVER_INPUTS_MAX, CLUSTER_DRIVER_RETRY_MS, CLUSTER_DRIVER_STATS_LOG_MS,
    CLUSTER_SHARD_QUEUE_MAX,
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
    TakeoverDone(takeover::JobDone),
    NetStopped,
}

/// Starts the driver thread for this node's shards (reached through
/// `node`); returns the ports to hand to `shard::run`.
pub fn start(
    handle: ClusterHandle,
    events: ClusterEvents,
    node: NodeHandle,
    load: Load,
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
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(CLUSTER_SHARD_QUEUE_MAX);
        receivers.push(rx);
        shards.push(ShardPort {
            tx,
            ready: ready_rx.clone(),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("ringmq-cluster-node".into())
        .spawn(move || {
            let mut core = Core::new(here, epoch, shard_count, WallClock::now().unix_ms);
            core.set_role(role);
            runtime.block_on(run(core, handle, events, node, receivers, ready_tx, load));
            info!("cluster driver stopped");
        })?;
    Ok(ClusterPorts { shards })
}

async fn run(
    mut core: Core,
    handle: ClusterHandle,
    mut events: ClusterEvents,
    node: NodeHandle,
    receivers: Vec<mpsc::Receiver<ToDriver>>,
    ready: watch::Sender<bool>,
    mut load: Load,
) {
    let (inputs, mut input_rx) = mpsc::channel(CLUSTER_DRIVER_INPUTS_MAX);
    {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if inputs.send(Input::Net(e)).await.is_err() {
                    return;
                }
            }
            let _ = inputs.send(Input::NetStopped).await;
        });
    }
    for mut rx in receivers {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                if inputs.send(Input::Shard(r)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut retry = false;
    let mut logged = (DriverStats::default(), 0u64);
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
        let input = match wait {
            Some(wait) => tokio::time::timeout(wait, input_rx.recv()).await.ok(),
            None => Some(input_rx.recv().await),
        };
        let clock = WallClock::now();
        match input {
            Some(Some(Input::Net(e))) => on_net_event(&mut core, &mut load, &handle, e, &clock),
            Some(Some(Input::Shard(r))) => core.handle_request(r, &clock),
            Some(Some(Input::RoutesApplied(batch, ok))) => core.handle_route_batch_done(batch, ok),
            Some(Some(Input::RetainedSnapshot(peer, all))) => {
                core.handle_retained_snapshot(peer, all, &clock)
            }
            Some(Some(Input::TakeoverDone(done))) => core.handle_takeover_done(done, clock.unix_ms),
            Some(Some(Input::NetStopped)) | Some(None) => return,
            None => {}
        }
        if core.poll_timeout().is_some_and(|t| t <= clock.unix_ms) {
            core.handle_timeout(clock.unix_ms);
        }
        retry = flush(&mut core, &handle, &node, &inputs);
        if core.poll_ready(clock.unix_ms) && !*ready.borrow() {
            let _ = ready.send(true);
        }
        if clock.unix_ms >= logged.1 + CLUSTER_DRIVER_STATS_LOG_MS && core.stats() != logged.0 {
            log_stats(&core);
            logged = (core.stats(), clock.unix_ms);
        }
    }
}

fn log_stats(core: &Core) {
    use crate::cluster::logic::forward::DropReason;
    let s = core.stats();
    let drops = core.forward_drops();
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
) -> bool {
    let mut retry = false;
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
    while let Some(d) = core.poll_delivery() {
        let target = core.target_shard(d.stream);
        match post_delivery(node, target, d.clone()) {
            Ok(()) => {}
            Err(CallError::Full) => {
                core.put_back_delivery(d);
                retry = true;
                break;
            }
            // The node is stopping: nothing will route it.
            Err(CallError::Stopped | CallError::NoSuchShard) => {}
        }
    }
    retry
}

fn post_delivery(node: &NodeHandle, shard: ShardId, d: Delivery) -> Result<(), CallError> {
    node.post(usize::from(shard), move |ctx| {
        ctx.deliver_forwarded(d.from, d.stream, d.seq, d.message)
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
