//! The cluster as admission sees it, kept fresh: a thread rebuilds the
//! running nodes' MQTT addresses and loads from the member list every
//! `limits::CLUSTER_VIEW_REFRESH` and swaps them into the node's
//! admission state (`NodeAdmission::set_cluster`), which the shards read
//! at CONNECT time only.

use std::sync::Arc;

use super::control::PeerFigures;
use super::load::PeerLoads;
use super::net::{settings::node_host, ClusterHandle, MemberInfo, MemberState};
use crate::admission::{ClusterServer, ClusterServers, NodeAdmission, RedirectServer};
use crate::limits;
use crate::router::location::NodeId;

/// The running members as admission lists them: sorted by name (every node
/// lists the cluster in one order), host from the node name, port from
/// the member's MQTT address; this node's load is `local_connections`,
/// the peers' what they reported.
pub fn cluster_view(
    members: &[MemberInfo],
    me: NodeId,
    local_connections: u64,
    loads: &dyn PeerFigures,
) -> Option<ClusterServers> {
    let mut running: Vec<&MemberInfo> = members
        .iter()
        .filter(|m| m.state == MemberState::Running)
        .collect();
    running.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterServers::new(
        running
            .into_iter()
            .map(|m| {
                let local = m.node == me;
                ClusterServer {
                    server: RedirectServer::new(node_host(&m.name), m.mqtt_addr.port(), None),
                    connections: if local {
                        Some(local_connections)
                    } else {
                        loads.figures(m.node).map(|r| r.connections)
                    },
                    local,
                }
            })
            .collect(),
    )
}

/// Starts the thread `ringmq-cluster-view`; it runs as long as the process.
pub fn start(
    handle: ClusterHandle,
    admission: Arc<NodeAdmission>,
    loads: Arc<PeerLoads>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringmq-cluster-view".into())
        .spawn(move || loop {
            let local = admission.connections.load() as u64;
            let view = cluster_view(&handle.members(), handle.node(), local, &*loads);
            admission.set_cluster(view);
            std::thread::sleep(limits::CLUSTER_VIEW_REFRESH);
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::control::PeerReport;
    use crate::cluster::net::Role;

    struct Loads;
    impl PeerFigures for Loads {
        fn figures(&self, node: NodeId) -> Option<PeerReport> {
            (node == NodeId::from_name("b@127.0.0.2")).then(|| PeerReport {
                connections: 5,
                version: "v".into(),
            })
        }
    }

    fn member(name: &str, port: u16, state: MemberState) -> MemberInfo {
        MemberInfo {
            node: NodeId::from_name(name),
            name: name.to_string(),
            role: Role::Core,
            state,
            // The resolved address; the reference takes the name's host.
            mqtt_addr: format!("10.9.9.9:{port}").parse().unwrap(),
            boot_epoch_ms: 1,
        }
    }

    #[test]
    fn running_members_by_name_with_their_loads() {
        let members = [
            member("c@node3.example", 1885, MemberState::Running),
            member("b@127.0.0.2", 1884, MemberState::Running),
            member("d@127.0.0.4", 1886, MemberState::Stopped),
            member("a@[::1]", 1883, MemberState::Running),
        ];
        let me = NodeId::from_name("a@[::1]");
        let view = cluster_view(&members, me, 3, &Loads).unwrap();
        assert_eq!(
            view.references().as_str(),
            "[::1]:1883 127.0.0.2:1884 node3.example:1885"
        );
        let loads: Vec<_> = view.servers().iter().map(|s| s.connections).collect();
        assert_eq!(loads, [Some(3), Some(5), None]);
        assert_eq!(view.peers().count(), 2);
        // A list without this node is no view.
        assert!(cluster_view(&members[..2], me, 0, &Loads).is_none());
    }
}
