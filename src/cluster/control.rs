//! The admin API's hold on the cluster thread ([`ClusterControl`] over a
//! [`ClusterHandle`]): the member list for `/api/v5/nodes`, and the manual
//! membership operations `ringmq ctl cluster join|leave|force-leave`.
//!
//! Every call hands a command to the cluster thread's bounded queue and
//! answers at once; what the thread then does shows in the member list
//! (a join is done when the peer is listed running).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::net::{ClusterHandle, CommandError, MemberInfo, MemberState, PeerStats};
use crate::admin::{ClusterControl, ControlError, NodeInfo, NodeStatus, Pending};
use crate::router::location::NodeId;
use crate::shard::AdminQuery;

/// What `peers()` adds to the member list: figures a peer reported
/// (connections, version), by node; `None` before the first report.
pub trait PeerFigures: Send + Sync + 'static {
    fn figures(&self, node: NodeId) -> Option<PeerReport>;
}

/// A peer's last reported figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReport {
    pub connections: u64,
    pub version: String,
}

/// `ClusterControl` over the cluster thread's handle.
pub struct Control {
    handle: ClusterHandle,
    figures: Option<std::sync::Arc<dyn PeerFigures>>,
    /// The driver's port for the cluster-wide clients API.
    clients: Option<super::driver::query::ClientsPort>,
}

impl Control {
    pub fn new(handle: ClusterHandle) -> Control {
        Control {
            handle,
            figures: None,
            clients: None,
        }
    }

    /// Peers' reported figures fill `connections` and `version` of their
    /// entries.
    pub fn with_figures(mut self, figures: std::sync::Arc<dyn PeerFigures>) -> Control {
        self.figures = Some(figures);
        self
    }

    /// The clients API asks the peers through the driver's `port`.
    pub fn with_clients(mut self, port: super::driver::query::ClientsPort) -> Control {
        self.clients = Some(port);
        self
    }
}

fn unavailable(e: CommandError) -> ControlError {
    ControlError::Unavailable(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One member as `/api/v5/nodes` lists it. A stopped member has its name,
/// status and role only; a running one its uptime (from its boot epoch)
/// and whatever figures it reported.
pub fn node_info(member: &MemberInfo, report: Option<PeerReport>, now_ms: u64) -> NodeInfo {
    let status = match member.state {
        MemberState::Running => NodeStatus::Running,
        MemberState::Stopped => NodeStatus::Stopped,
    };
    let mut info = NodeInfo::named(&member.name, status, &member.role.to_string());
    if status == NodeStatus::Running {
        info.uptime = Some(now_ms.saturating_sub(member.boot_epoch_ms));
        if let Some(report) = report {
            info.connections = Some(report.connections);
            info.live_connections = Some(report.connections);
            info.version = Some(report.version);
        }
    }
    info
}

impl ClusterControl for Control {
    fn peer_stats(&self) -> Vec<(String, PeerStats)> {
        let members = self.handle.members();
        self.handle
            .all_peer_stats()
            .into_iter()
            .map(|(node, stats)| {
                // A peer no longer listed (forgotten) keeps its counters
                // under its id.
                let name = members
                    .iter()
                    .find(|m| m.node == node)
                    .map_or_else(|| node.to_string(), |m| m.name.clone());
                (name, stats)
            })
            .collect()
    }

    fn peers(&self) -> Pending<Vec<NodeInfo>> {
        let me = self.handle.node();
        let now = now_ms();
        let peers: Vec<NodeInfo> = self
            .handle
            .members()
            .iter()
            .filter(|m| m.node != me)
            .map(|m| {
                let report = self.figures.as_ref().and_then(|f| f.figures(m.node));
                node_info(m, report, now)
            })
            .collect();
        Box::pin(async move { Ok(peers) })
    }

    fn peer_clients(
        &self,
        node: Option<String>,
        query: AdminQuery,
    ) -> Pending<Vec<crate::admin::PeerClients>> {
        let Some(port) = self.clients.clone() else {
            return Box::pin(async { Ok(Vec::new()) });
        };
        let me = self.handle.node();
        let peers: Vec<(NodeId, String)> = self
            .handle
            .members()
            .into_iter()
            .filter(|m| m.node != me && m.state == MemberState::Running)
            .filter(|m| node.as_ref().is_none_or(|n| *n == m.name))
            .map(|m| (m.node, m.name))
            .collect();
        Box::pin(async move {
            let question = super::clients::question_of(query)?;
            let to = peers.iter().map(|(n, _)| *n).collect();
            let replies = port
                .ask(to, question)
                .await
                .map_err(ControlError::Unavailable)?;
            Ok(super::clients::answers(&peers, replies))
        })
    }

    fn join(&self, address: String) -> Pending<()> {
        let handle = self.handle.clone();
        Box::pin(async move {
            let addr = resolve(&address).await?;
            handle.join(addr).map_err(unavailable)
        })
    }

    fn leave(&self) -> Pending<()> {
        let result = self.handle.leave().map_err(unavailable);
        Box::pin(async move { result })
    }

    fn force_leave(&self, node: String) -> Pending<()> {
        let id = NodeId::from_name(&node);
        let known = self.handle.members().iter().any(|m| m.node == id);
        let result = if known {
            self.handle.force_leave(id).map_err(unavailable)
        } else {
            Err(ControlError::NotFound(format!(
                "node {node:?} is not a member of this node's cluster"
            )))
        };
        Box::pin(async move { result })
    }
}

/// `host:port` to a QUIC address: a literal as it is, a name by the
/// system resolver (on the admin thread's runtime, not the cluster's).
async fn resolve(address: &str) -> Result<SocketAddr, ControlError> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        ControlError::BadRequest(format!("address: {address:?} does not resolve: {why}"))
    };
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| bad(e.to_string()))?;
    addrs.next().ok_or_else(|| bad("no address".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::net::Role;

    fn member(state: MemberState) -> MemberInfo {
        MemberInfo {
            node: NodeId::from_name("b@127.0.0.2"),
            name: "b@127.0.0.2".to_string(),
            role: Role::Replicant,
            state,
            mqtt_addr: "127.0.0.2:1884".parse().unwrap(),
            boot_epoch_ms: 1_000,
        }
    }

    #[test]
    fn a_running_member_has_uptime_and_its_figures_a_stopped_one_none() {
        let report = PeerReport {
            connections: 7,
            version: "1.2.3".to_string(),
        };
        let info = node_info(&member(MemberState::Running), Some(report.clone()), 5_000);
        assert_eq!(info.node, "b@127.0.0.2");
        assert_eq!(info.node_status, NodeStatus::Running);
        assert_eq!(info.role, "replicant");
        assert_eq!(info.uptime, Some(4_000));
        assert_eq!(info.connections, Some(7));
        assert_eq!(info.version.as_deref(), Some("1.2.3"));
        let info = node_info(&member(MemberState::Stopped), Some(report), 5_000);
        assert_eq!(info.node_status, NodeStatus::Stopped);
        assert_eq!((info.uptime, info.connections), (None, None));
    }

    #[test]
    fn join_resolves_literals_and_refuses_what_does_not_resolve() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                resolve("127.0.0.1:4370").await.unwrap().to_string(),
                "127.0.0.1:4370"
            );
            assert!(matches!(
                resolve("no-such-host.invalid:4370").await,
                Err(ControlError::BadRequest(m)) if m.starts_with("address: ")
            ));
        });
    }
}
