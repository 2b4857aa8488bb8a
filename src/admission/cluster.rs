//! The cluster as admission sees it (issue 13 item 5, EMQX's
//! `server_redirection` in a cluster): the running nodes' MQTT addresses,
//! listed in every MQTT 5 CONNACK, and the running peers with their load,
//! the targets of a redirect when `redirect_servers` is empty or the
//! strategy is `least_connections`.
//!
//! Built off the shards (the cluster's node thread, from the member list
//! and the exchanged load figures) and swapped in whole; a shard reads it
//! at CONNECT time only.

use super::{format_references, RedirectServer, Redirection, Strategy};
use crate::codec::ByteStr;

/// One running node as a client reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterServer {
    pub server: RedirectServer,
    /// Its MQTT connections, as it last reported them (`None`: no report
    /// yet).
    pub connections: Option<u64>,
    /// This node itself.
    pub local: bool,
}

/// The running nodes, this one included, in a stable order (by node
/// name, so every node lists the cluster alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterServers {
    servers: Vec<ClusterServer>,
    /// Every running node's reference, space-separated: the CONNACK's
    /// Server Reference, formatted once per change, not per CONNECT.
    references: ByteStr,
}

impl ClusterServers {
    /// `servers` must hold this node (`local`); an empty or self-less list
    /// is not a cluster view (`None`).
    pub fn new(servers: Vec<ClusterServer>) -> Option<ClusterServers> {
        if !servers.iter().any(|s| s.local) {
            return None;
        }
        let references = ByteStr::from(format_references(servers.iter().map(|s| &s.server)));
        Some(ClusterServers {
            servers,
            references,
        })
    }

    pub fn servers(&self) -> &[ClusterServer] {
        &self.servers
    }

    /// Every running node, space-separated `host:port`.
    pub fn references(&self) -> &ByteStr {
        &self.references
    }

    /// The running nodes other than this one.
    pub fn peers(&self) -> impl Iterator<Item = &ClusterServer> {
        self.servers.iter().filter(|s| !s.local)
    }
}

/// What the shards decide a CONNECT with: the configured redirection with
/// the servers a redirect may name, and their loads for
/// `least_connections` (one per server, `u64::MAX` when unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub redirection: Redirection,
    pub loads: Vec<u64>,
    /// The CONNACK's Server Reference when the node is clustered and
    /// redirection is enabled.
    pub connack_reference: Option<ByteStr>,
}

impl Effective {
    /// The configured servers, or the cluster's running peers when none
    /// is configured or the strategy is `least_connections` (which needs
    /// the peers' load figures). `local_reference`: this node's own
    /// reference, listed alone while no cluster view is known.
    pub fn of(
        configured: &Redirection,
        cluster: Option<&ClusterServers>,
        local_reference: Option<&ByteStr>,
    ) -> Effective {
        let mut redirection = configured.clone();
        let mut loads = Vec::new();
        if let Some(cluster) = cluster {
            let use_peers = configured.servers.is_empty()
                || (configured.strategy == Strategy::LeastConnections
                    && cluster.peers().count() > 0);
            if use_peers {
                redirection.servers = cluster.peers().map(|p| p.server.clone()).collect();
                loads = cluster
                    .peers()
                    .map(|p| p.connections.unwrap_or(u64::MAX))
                    .collect();
            }
        }
        let connack_reference = if configured.enable {
            cluster
                .map(|c| c.references().clone())
                .or_else(|| local_reference.cloned())
        } else {
            None
        };
        Effective {
            redirection,
            loads,
            connack_reference,
        }
    }

    /// The index of the least loaded server, the first of equals; `None`
    /// without loads (configured servers, or no peer has reported yet).
    pub fn least_loaded(&self, n: usize) -> Option<usize> {
        if self.loads.len() != n || self.loads.iter().all(|&l| l == u64::MAX) {
            return None;
        }
        self.loads
            .iter()
            .enumerate()
            .min_by_key(|(i, load)| (**load, *i))
            .map(|(i, _)| i)
    }
}
