//! The node's side of the cluster thread: the one consumer of its events
//! is the cluster driver (`super::driver`), which runs the route relay and
//! the forwarding between the cluster thread and the shards, and exchanges
//! this node's load figures (`load`) through `send_load` below.

use std::time::Instant;

use super::driver::{self, ClusterPorts};
use super::load::LoadFigures;
use super::net::{ClusterHandle, MemberState, Outgoing, StreamId};
use super::setup::Cluster;
use crate::admission::NodeAdmission;
use crate::shard::NodeHandle;

/// Starts the driver (a task on the cluster thread) that consumes the
/// cluster thread's events until it stops; returns the shards' ports to
/// it, for `shard::run` (`NodeSpec::cluster`).
pub fn run_node(cluster: Cluster, node: NodeHandle) -> std::io::Result<ClusterPorts> {
    let Cluster {
        handle,
        events,
        loads,
        admission,
        clients,
        rebalance,
    } = cluster;
    let load = driver::Load {
        figures: LoadFigures::new(loads),
        admission,
    };
    driver::start(handle, events, node, load, clients, rebalance.relay)
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
