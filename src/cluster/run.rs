//! The node's side of the cluster thread: the one consumer of its events.
//!
//! For now it logs membership (member up / down, refusals with their
//! reason) and exchanges load figures (`load`); the route relay and
//! forwarding driver takes this place (docs/adr/0001-cluster.md) and keeps
//! calling `load` the same way.

use std::time::Instant;

use super::load::LoadFigures;
use super::net::{ClusterHandle, MemberState, NetEvent, Outgoing, StreamId};
use super::setup::Cluster;
use crate::admission::NodeAdmission;
use crate::shard::NodeHandle;

/// Starts the thread `ringmq-cluster-node` that consumes the cluster
/// thread's events until it stops (a current-thread tokio runtime of its
/// own, for the timer next to the event queue).
pub fn run_node(cluster: Cluster, node: NodeHandle) -> std::io::Result<()> {
    let Cluster {
        handle,
        mut events,
        loads,
        admission,
    } = cluster;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("ringmq-cluster-node".into())
        .spawn(move || {
            let _node = node;
            let mut load = LoadFigures::new(loads);
            runtime.block_on(async move {
                loop {
                    send_load(&mut load, &handle, &admission, Instant::now());
                    let wake = load.poll_timeout().unwrap_or_else(Instant::now);
                    let event = tokio::time::timeout_at(wake.into(), events.recv()).await;
                    match event {
                        Ok(Some(event)) => handle_event(&mut load, &handle, &event),
                        Ok(None) => break,
                        Err(_elapsed) => {}
                    }
                }
            });
            tracing::info!("cluster thread stopped");
        })
        .map(drop)
}

/// This node's load figures to every running peer, when due. A full
/// command queue drops them (the next round sends fresh ones).
pub fn send_load(
    load: &mut LoadFigures,
    handle: &ClusterHandle,
    admission: &NodeAdmission,
    now: Instant,
) {
    let connections = admission.connections.load() as u64;
    let connections_max = admission.config().max_connections as u64;
    let Some(body) = load.poll_transmit(now, connections, connections_max) else {
        return;
    };
    let me = handle.node();
    for member in handle.members() {
        if member.node == me || member.state != MemberState::Running {
            continue;
        }
        let _ = handle.try_send(Outgoing {
            node: member.node,
            stream: StreamId::Control,
            kind: super::logic::proto::kind::LoadFigures,
            body: body.clone(),
        });
    }
}

fn handle_event(load: &mut LoadFigures, handle: &ClusterHandle, event: &NetEvent) {
    match event {
        NetEvent::MemberUp {
            node,
            name,
            role,
            mqtt_addr,
            epoch,
        } => tracing::info!(%name, %node, %role, %mqtt_addr, epoch, "member up"),
        NetEvent::MemberDown { node } => {
            load.handle_member_down(*node);
            let name = handle
                .members()
                .into_iter()
                .find(|m| m.node == *node)
                .map_or_else(|| node.to_string(), |m| m.name);
            tracing::info!(%name, %node, "member down")
        }
        NetEvent::Refused { addr, reason } => {
            tracing::info!(%addr, %reason, "refused")
        }
        NetEvent::PeerFrame {
            from,
            kind,
            stream,
            body,
        } => match load.handle_frame(*from, *kind, body) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(%from, kind, ?stream, "peer frame with no consumer yet"),
            Err(e) => tracing::warn!(%from, kind, error = %e, "bad load figures from a peer"),
        },
    }
}
