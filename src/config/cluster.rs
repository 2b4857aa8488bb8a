//! `[cluster]`: how this node finds, authenticates and links to the other
//! nodes of its cluster over QUIC (docs/clustering.md, "Configuration";
//! docs/adr/0001-cluster.md). Key names follow EMQX's `cluster.*`.
//!
//! Loading checks every key alone (readers below) and the keys together
//! ([`Config::validate_cluster`]): a strategy without its addresses, a
//! replicant with no core node to join, certificate files that cannot be
//! read or do not fit together. The cluster thread takes the checked
//! values as they are.

use super::node::NodeRole;
use super::{value, Config, ConfigError};
use crate::cluster::certs::{self, ClusterTls};
use crate::limits;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `cluster.name`: a node of another cluster name is refused at the
    /// handshake. Letters, digits, `_`, `-`, `.`. Default `"ringmqcl"`.
    #[serde(deserialize_with = "de_cluster_name")]
    pub name: String,
    /// `cluster.discovery_strategy`: how peers are found. Default
    /// `singleton` (no cluster: today's single-node behaviour).
    #[serde(deserialize_with = "de_strategy", serialize_with = "ser_strategy")]
    pub discovery_strategy: DiscoveryStrategy,
    /// `cluster.bind`: UDP address of this node's QUIC endpoint. Port 1 to
    /// 65535 (peers must know it: DNS A records give only the host).
    /// Default `0.0.0.0:4370` (EMQX's cluster port).
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    /// `cluster.core_nodes`: QUIC addresses of core nodes a replicant
    /// joins (needed by a replicant under `manual`; under `static` and
    /// `dns` the discovered nodes serve). At most
    /// `limits::CLUSTER_ADDRESSES_MAX`.
    #[serde(deserialize_with = "de_addresses", serialize_with = "ser_addresses")]
    pub core_nodes: Vec<HostPort>,
    /// `cluster.static.*`: the `static` strategy's seeds.
    #[serde(rename = "static")]
    pub static_discovery: StaticDiscoveryConfig,
    /// `cluster.dns.*`: the `dns` strategy's record.
    pub dns: DnsDiscoveryConfig,
    /// `cluster.ssl_options.*`: mutual TLS of the QUIC links.
    pub ssl_options: ClusterSslOptionsConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "ringmqcl".to_string(),
            discovery_strategy: DiscoveryStrategy::Singleton,
            bind: SocketAddr::from(([0, 0, 0, 0], 4370)),
            core_nodes: Vec::new(),
            static_discovery: StaticDiscoveryConfig::default(),
            dns: DnsDiscoveryConfig::default(),
            ssl_options: ClusterSslOptionsConfig::default(),
        }
    }
}

impl ClusterConfig {
    /// Whether this node forms a cluster (any strategy but `singleton`).
    pub fn is_clustered(&self) -> bool {
        self.discovery_strategy != DiscoveryStrategy::Singleton
    }
}

/// `[cluster.static]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticDiscoveryConfig {
    /// `cluster.static.seeds`: QUIC addresses `host:port` of the nodes to
    /// join; this node's own address may be among them. Required (not
    /// empty) with `discovery_strategy = "static"`. At most
    /// `limits::CLUSTER_ADDRESSES_MAX`.
    #[serde(deserialize_with = "de_addresses", serialize_with = "ser_addresses")]
    pub seeds: Vec<HostPort>,
}

/// `[cluster.dns]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsDiscoveryConfig {
    /// `cluster.dns.name`: the DNS name whose records list the nodes.
    /// Required with `discovery_strategy = "dns"`. Default `""` (unset).
    #[serde(deserialize_with = "de_dns_name")]
    pub name: String,
    /// `cluster.dns.record_type`: `a` (A/AAAA records; the port is
    /// `cluster.bind`'s) or `srv` (host and port from each record).
    /// Default `a`.
    #[serde(
        deserialize_with = "de_record_type",
        serialize_with = "ser_record_type"
    )]
    pub record_type: DnsRecordType,
    /// `cluster.dns.nameserver`: the DNS server (`ip:port`) to ask for
    /// `cluster.dns.name` instead of the system's resolver
    /// (/etc/resolv.conf); `None` written as `""` (the default). Lets a
    /// deployment (or a test) use a server of its own for discovery.
    #[serde(deserialize_with = "de_nameserver", serialize_with = "ser_nameserver")]
    pub nameserver: Option<SocketAddr>,
}

impl Default for DnsDiscoveryConfig {
    fn default() -> Self {
        DnsDiscoveryConfig {
            name: String::new(),
            record_type: DnsRecordType::A,
            nameserver: None,
        }
    }
}

/// `[cluster.ssl_options]`. All files empty (the default): every node makes
/// itself a self-signed certificate at start and peers are authenticated
/// by `node.cookie` alone. With `cacertfile`: mutual TLS, a peer's
/// certificate must chain to it and name the peer's node host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSslOptionsConfig {
    /// `cluster.ssl_options.certfile`: this node's PEM certificate chain,
    /// its own certificate first. `None` written as `""`.
    #[serde(deserialize_with = "de_path", serialize_with = "ser_path")]
    pub certfile: Option<PathBuf>,
    /// `cluster.ssl_options.keyfile`: the PEM private key of `certfile`.
    #[serde(deserialize_with = "de_path", serialize_with = "ser_path")]
    pub keyfile: Option<PathBuf>,
    /// `cluster.ssl_options.cacertfile`: PEM CA certificates (a bundle may
    /// hold several) that peers' certificates must chain to.
    #[serde(deserialize_with = "de_path", serialize_with = "ser_path")]
    pub cacertfile: Option<PathBuf>,
    /// `cluster.ssl_options.fail_if_no_peer_cert`: with `cacertfile`, a
    /// peer that presents no certificate is refused. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub fail_if_no_peer_cert: bool,
}

impl Default for ClusterSslOptionsConfig {
    fn default() -> Self {
        ClusterSslOptionsConfig {
            certfile: None,
            keyfile: None,
            cacertfile: None,
            fail_if_no_peer_cert: true,
        }
    }
}

/// `cluster.discovery_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiscoveryStrategy {
    /// Nodes join by `ringmq ctl cluster join HOST:PORT`.
    Manual,
    /// Nodes join `cluster.static.seeds`.
    Static,
    /// Nodes join the addresses `cluster.dns.name` resolves to.
    Dns,
    /// No cluster: this node alone.
    Singleton,
}

impl DiscoveryStrategy {
    pub const ALL: [DiscoveryStrategy; 4] = [
        DiscoveryStrategy::Manual,
        DiscoveryStrategy::Static,
        DiscoveryStrategy::Dns,
        DiscoveryStrategy::Singleton,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryStrategy::Manual => "manual",
            DiscoveryStrategy::Static => "static",
            DiscoveryStrategy::Dns => "dns",
            DiscoveryStrategy::Singleton => "singleton",
        }
    }

    pub fn parse(text: &str) -> Option<DiscoveryStrategy> {
        DiscoveryStrategy::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// `cluster.dns.record_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsRecordType {
    /// A and AAAA records: hosts; the port is `cluster.bind`'s.
    A,
    /// SRV records: host and port each.
    Srv,
}

impl DnsRecordType {
    pub const ALL: [DnsRecordType; 2] = [DnsRecordType::A, DnsRecordType::Srv];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::A => "a",
            DnsRecordType::Srv => "srv",
        }
    }

    pub fn parse(text: &str) -> Option<DnsRecordType> {
        DnsRecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// A QUIC address as configured: a host (DNS name, IPv4 or IPv6 address)
/// and a port. Names are resolved by the cluster thread, not at load, so a
/// seed that is down or not yet in DNS does not stop the start.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `ipv4:port` or `[ipv6]:port`; port 1 to 65535.
    pub fn parse(text: &str) -> Option<HostPort> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, port)
        } else {
            let (host, port) = text.split_once(':')?;
            if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
                return None;
            }
            (host, port)
        };
        let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
        Some(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A DNS host name: labels of letters, digits and inner `-`, dots between
/// them, an optional final dot; at most `limits::CLUSTER_HOST_LEN_MAX_BYTES`.
pub fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= limits::CLUSTER_HOST_LEN_MAX_BYTES
        && name.parse::<IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Config {
    /// The checks of `[cluster]` (and `node.role`) that span keys, and the
    /// certificate files, read and parsed here so a bad one stops the
    /// start naming its key.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let invalid = |key: &str, value: String, allowed: String| ConfigError::InvalidValue {
            key: key.to_string(),
            origin: self.origin_of(key),
            value,
            allowed,
        };
        match cluster.discovery_strategy {
            DiscoveryStrategy::Static if cluster.static_discovery.seeds.is_empty() => {
                return Err(invalid(
                    "cluster.static.seeds",
                    "no seeds".to_string(),
                    "at least one \"host:port\" when cluster.discovery_strategy is \"static\", \
                     e.g. seeds = [\"10.0.0.1:4370\", \"10.0.0.2:4370\"]"
                        .to_string(),
                ));
            }
            DiscoveryStrategy::Dns if cluster.dns.name.is_empty() => {
                return Err(invalid(
                    "cluster.dns.name",
                    "\"\"".to_string(),
                    "a DNS name listing the nodes when cluster.discovery_strategy is \"dns\", \
                     e.g. \"ringmq.example.com\""
                        .to_string(),
                ));
            }
            _ => {}
        }
        if self.node.role == NodeRole::Replicant {
            match cluster.discovery_strategy {
                DiscoveryStrategy::Singleton => {
                    return Err(invalid(
                        "node.role",
                        "\"replicant\"".to_string(),
                        "\"core\" when cluster.discovery_strategy is \"singleton\" (a replicant \
                         needs core nodes to join: set a discovery strategy)"
                            .to_string(),
                    ));
                }
                DiscoveryStrategy::Manual if cluster.core_nodes.is_empty() => {
                    return Err(invalid(
                        "cluster.core_nodes",
                        "no addresses".to_string(),
                        "at least one core node \"host:port\" for a replicant \
                         (node.role = \"replicant\") when cluster.discovery_strategy is \
                         \"manual\""
                            .to_string(),
                    ));
                }
                _ => {}
            }
        }
        self.cluster_tls().map(drop)
    }

    /// The cluster's TLS material from `cluster.ssl_options`, read and
    /// checked: `None` when no file is set (the cluster thread then makes a
    /// self-signed certificate, [`certs::self_signed`]). Loading has called
    /// it, so it is `Ok` for every loaded config unless the files changed
    /// since.
    pub fn cluster_tls(&self) -> Result<Option<ClusterTls>, ConfigError> {
        let ssl = &self.cluster.ssl_options;
        let key_of = |field: &str| format!("cluster.ssl_options.{field}");
        let path_error = |field: &str, path: &std::path::Path, allowed: String| {
            let key = key_of(field);
            ConfigError::InvalidValue {
                origin: self.origin_of(&key),
                key,
                value: format!("{:?}", path.display().to_string()),
                allowed,
            }
        };
        let (certfile, keyfile) = match (&ssl.certfile, &ssl.keyfile) {
            (None, None) => {
                if let Some(cacertfile) = &ssl.cacertfile {
                    return Err(path_error(
                        "cacertfile",
                        cacertfile,
                        "\"\" unless cluster.ssl_options.certfile and keyfile are set too \
                         (peers that check the CA need this node's certificate issued by it)"
                            .to_string(),
                    ));
                }
                return Ok(None);
            }
            (Some(certfile), Some(keyfile)) => (certfile, keyfile),
            (Some(certfile), None) => {
                return Err(path_error(
                    "keyfile",
                    std::path::Path::new(""),
                    format!(
                        "the PEM private key of cluster.ssl_options.certfile ({}): set both or \
                         neither",
                        certfile.display()
                    ),
                ));
            }
            (None, Some(keyfile)) => {
                return Err(path_error(
                    "certfile",
                    std::path::Path::new(""),
                    format!(
                        "the PEM certificate of cluster.ssl_options.keyfile ({}): set both or \
                         neither",
                        keyfile.display()
                    ),
                ));
            }
        };
        let files = certs::ClusterTlsFiles {
            certfile,
            keyfile,
            cacertfile: ssl.cacertfile.as_deref(),
            fail_if_no_peer_cert: ssl.fail_if_no_peer_cert,
            node_host: self.node.host(),
        };
        certs::load(&files).map(Some).map_err(|e| {
            let path = match e.field {
                "certfile" => certfile,
                "keyfile" => keyfile,
                _ => ssl.cacertfile.as_deref().unwrap_or(certfile),
            };
            path_error(e.field, path, e.message)
        })
    }
}

fn de_cluster_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a non-empty string of at most {} bytes of letters, digits, '_', '-' and '.'",
        limits::CLUSTER_NAME_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| {
        !s.is_empty()
            && s.len() <= limits::CLUSTER_NAME_LEN_MAX_BYTES
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    })
}

fn de_strategy<'de, D: Deserializer<'de>>(d: D) -> Result<DiscoveryStrategy, D::Error> {
    value::one_of(
        d,
        &DiscoveryStrategy::ALL.map(DiscoveryStrategy::as_str),
        DiscoveryStrategy::parse,
    )
}

fn ser_strategy<S: Serializer>(strategy: &DiscoveryStrategy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(strategy.as_str())
}

fn de_record_type<'de, D: Deserializer<'de>>(d: D) -> Result<DnsRecordType, D::Error> {
    value::one_of(
        d,
        &DnsRecordType::ALL.map(DnsRecordType::as_str),
        DnsRecordType::parse,
    )
}

fn ser_record_type<S: Serializer>(record_type: &DnsRecordType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(record_type.as_str())
}

fn de_bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    const ALLOWED: &str = "a UDP address \"ip:port\" with an IPv4 or [IPv6] literal and a port \
                           from 1 to 65535, e.g. \"0.0.0.0:4370\"";
    let text = value::string_matching(d, ALLOWED, |s| {
        s.trim()
            .parse::<SocketAddr>()
            .is_ok_and(|addr| addr.port() != 0)
    })?;
    Ok(text.trim().parse().expect("checked by string_matching"))
}

const ADDRESSES_ALLOWED: &str =
    "an array of QUIC addresses \"host:port\" (a host name, an IPv4 address or an [IPv6] \
     address, and a port from 1 to 65535), e.g. [\"10.0.0.1:4370\", \"node2.example.com:4370\"]; \
     from the environment also \"a:4370,b:4370\"";

fn de_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HostPort>, D::Error> {
    let items = value::string_list(d, ADDRESSES_ALLOWED)?;
    if items.len() > limits::CLUSTER_ADDRESSES_MAX {
        return Err(D::Error::invalid_length(
            items.len(),
            &format!("at most {} addresses", limits::CLUSTER_ADDRESSES_MAX).as_str(),
        ));
    }
    items
        .iter()
        .map(|item| {
            HostPort::parse(item).ok_or_else(|| {
                D::Error::invalid_value(serde::de::Unexpected::Str(item), &ADDRESSES_ALLOWED)
            })
        })
        .collect()
}

fn ser_addresses<S: Serializer>(addresses: &[HostPort], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addresses.iter().map(HostPort::to_string))
}

fn de_dns_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a DNS name of at most {} bytes, e.g. \"ringmq.example.com\" (or \"\" for none)",
        limits::CLUSTER_HOST_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| s.is_empty() || is_host_name(s))
}

fn de_nameserver<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    const ALLOWED: &str = "\"\" (the system's resolver) or a DNS server's UDP address \"ip:port\" \
                           with an IPv4 or [IPv6] literal and a port from 1 to 65535, \
                           e.g. \"10.0.0.53:53\"";
    let text = value::string_matching(d, ALLOWED, |s| {
        s.trim().is_empty()
            || s.trim()
                .parse::<SocketAddr>()
                .is_ok_and(|addr| addr.port() != 0)
    })?;
    Ok((!text.trim().is_empty()).then(|| text.trim().parse().expect("checked by string_matching")))
}

fn ser_nameserver<S: Serializer>(nameserver: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match nameserver {
        Some(addr) => s.serialize_str(&addr.to_string()),
        None => s.serialize_str(""),
    }
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = value::string_matching(d, "a file path, or \"\" for none", |_| true)?;
    Ok((!text.trim().is_empty()).then(|| PathBuf::from(text)))
}

fn ser_path<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.serialize_str(&path.display().to_string()),
        None => s.serialize_str(""),
    }
}
