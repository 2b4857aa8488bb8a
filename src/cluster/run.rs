//! The node's side of the cluster thread: the one consumer of its events
//! is the cluster driver (`super::driver`), which runs the route relay and
//! the forwarding between the cluster thread and the shards.

use super::driver::{self, ClusterPorts};
use super::setup::Cluster;
use crate::shard::NodeHandle;

/// Starts the thread `ringmq-cluster-node` (the driver) that consumes the
/// cluster thread's events until it stops; returns the shards' ports to
/// it, for `shard::run` (`NodeSpec::cluster`).
pub fn run_node(cluster: Cluster, node: NodeHandle) -> std::io::Result<ClusterPorts> {
    let Cluster { handle, events } = cluster;
    driver::start(handle, events, node)
}
