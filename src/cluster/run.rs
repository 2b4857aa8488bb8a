//! The node's side of the cluster thread: the one consumer of its events.
//!
//! For now it logs membership (member up / down, refusals with their
//! reason); the route relay and forwarding driver takes this place
//! (docs/adr/0001-cluster.md).

use super::net::NetEvent;
use super::setup::Cluster;
use crate::shard::NodeHandle;

/// Starts the thread `ringmq-cluster-node` that consumes the cluster
/// thread's events until it stops.
pub fn run_node(cluster: Cluster, node: NodeHandle) -> std::io::Result<()> {
    let Cluster { handle, mut events } = cluster;
    std::thread::Builder::new()
        .name("ringmq-cluster-node".into())
        .spawn(move || {
            let _node = node;
            while let Some(event) = events.blocking_recv() {
                log_event(&handle, &event);
            }
            tracing::info!("cluster thread stopped");
        })
        .map(drop)
}

fn log_event(handle: &super::net::ClusterHandle, event: &NetEvent) {
    match event {
        NetEvent::MemberUp {
            node,
            name,
            role,
            mqtt_addr,
            epoch,
        } => tracing::info!(%name, %node, %role, %mqtt_addr, epoch, "member up"),
        NetEvent::MemberDown { node } => {
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
            from, kind, stream, ..
        } => tracing::debug!(%from, kind, ?stream, "peer frame with no consumer yet"),
    }
}
