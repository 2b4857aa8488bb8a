//! What the cluster thread is started with. Plain data: the configuration
//! (`src/config`) is validated and mapped onto it by the caller, so this
//! module knows nothing of TOML or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits;
use crate::router::location::NodeId;

/// A node's part in the cluster (docs/adr/0001-cluster.md): core nodes may
/// hold cluster-wide coordination state (client-id homes), replicants
/// never do and join through the core nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Core,
    Replicant,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Core => "core",
            Role::Replicant => "replicant",
        })
    }
}

/// How peer links are authenticated.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// Mutual TLS from a cluster CA: each side checks the other's chain
    /// against `cacertfile` (may hold several CAs) and that the certificate
    /// names the peer node's host. The cookie proof is checked too.
    Ca {
        certfile: PathBuf,
        keyfile: PathBuf,
        cacertfile: PathBuf,
        /// Refuse a connecting peer that shows no certificate (the cookie
        /// alone then authenticates it when false).
        fail_if_no_peer_cert: bool,
    },
    /// A self-signed certificate made at start: TLS only encrypts, and a
    /// peer is authenticated by its proof of the cookie.
    SelfSigned,
}

/// DNS record kinds discovery can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    /// A and AAAA records, each address with `port`.
    A,
    /// SRV records: target host and port of each.
    Srv,
}

/// How a node finds its peers.
#[derive(Clone, Debug)]
pub enum Discovery {
    /// No cluster: no QUIC endpoint at all (today's single node).
    Singleton,
    /// Peers are joined by command (`ClusterHandle::join`) and remembered
    /// in `data_dir/cluster/peers`, so a restarted node rejoins by itself.
    Manual,
    /// QUIC addresses announced to at start and again until they answer.
    Static(Vec<SocketAddr>),
    /// Addresses read from DNS, re-resolved periodically.
    Dns {
        name: String,
        record_type: DnsRecordType,
        /// Port of the addresses of A/AAAA records (the cluster bind port).
        port: u16,
        /// A nameserver to ask instead of the system's (/etc/resolv.conf);
        /// tests point it at their own server.
        nameserver: Option<SocketAddr>,
    },
}

/// Failure-detection and discovery timing; defaults in `limits`.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    pub discovery_interval: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            probe_period: limits::CLUSTER_PROBE_PERIOD,
            probe_rtt: limits::CLUSTER_PROBE_RTT,
            suspect_to_down: limits::CLUSTER_SUSPECT_TO_DOWN,
            discovery_interval: limits::CLUSTER_DISCOVERY_INTERVAL,
            handshake_timeout: limits::CLUSTER_HANDSHAKE_TIMEOUT,
            idle_timeout: limits::CLUSTER_IDLE_TIMEOUT,
        }
    }
}

/// Everything `net::start` needs.
#[derive(Clone, Debug)]
pub struct NetSettings {
    /// `name@host`: the host is where peers and clients reach this node,
    /// and what a CA-issued certificate must name.
    pub node_name: String,
    /// `NodeId::from_name(node_name)`; checked by the peers.
    pub node_id: NodeId,
    /// Wall-clock milliseconds at start: a restarted node (newer epoch)
    /// replaces its old incarnation everywhere.
    pub boot_epoch_ms: u64,
    pub role: Role,
    /// A peer of another cluster name is refused.
    pub cluster_name: String,
    /// Shared secret; never sent (only an HMAC bound to the connection).
    pub cookie: String,
    /// UDP address of the QUIC endpoint.
    pub bind: SocketAddr,
    /// This node's MQTT listener, advertised to peers (Server Reference).
    pub mqtt_addr: SocketAddr,
    pub tls: TlsMode,
    pub discovery: Discovery,
    /// Where `cluster/peers` is kept (manual discovery).
    pub data_dir: PathBuf,
    pub timing: Timing,
}

impl NetSettings {
    /// The host part of `node_name` (after the last `@`).
    pub fn host(&self) -> &str {
        node_host(&self.node_name)
    }
}

/// The host part of a node name `name@host` (the whole name without `@`).
pub fn node_host(node_name: &str) -> &str {
    node_name
        .rsplit_once('@')
        .map_or(node_name, |(_, host)| host)
}
