//! From the configuration to a running cluster thread: `[node]` and
//! `[cluster]` mapped onto [`NetSettings`], the thread started, and what
//! the rest of the node keeps of it ([`Cluster`]).
//!
//! Host names are resolved here, once, at start (seeds, core nodes, the
//! node's own host): `NetSettings` takes socket addresses. A seed that
//! does not resolve stops the start naming its key; one that resolves
//! but is down does not (discovery keeps announcing to it).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::load::PeerLoads;
use super::net::{self, ClusterEvents, ClusterHandle, Discovery, NetSettings, Role, TlsMode};
use crate::admission::{format_reference, NodeAdmission};
use crate::config::{Config, DiscoveryStrategy, DnsRecordType, HostPort, NodeRole};
use crate::router::location::NodeId;

/// The started cluster thread: the handle (cloned freely: admin, shards'
/// helpers) and its one event consumer, handed to `run_node` with what
/// the event loop feeds: the peers' load figures table and the node's
/// admission state (whose connection count is this node's load).
pub struct Cluster {
    pub handle: ClusterHandle,
    pub events: ClusterEvents,
    pub loads: Arc<PeerLoads>,
    pub admission: Arc<NodeAdmission>,
    /// The cluster-wide clients API: the admin API holds the port
    /// (`clients.port`), the driver the rest.
    pub clients: super::driver::query::ClientsChannel,
    /// Cross-node evacuation and rebalance commands: the admin thread
    /// takes the port and the inbox, the driver the relay.
    pub rebalance: super::driver::rebalance::RebalanceChannel,
}

/// Why the cluster did not start. The message starts with the
/// configuration key to fix.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    /// A configuration fault (exit 2) rather than the environment's (a
    /// taken port: exit 1).
    pub config: bool,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Maps the configuration, starts the cluster thread and the thread that
/// keeps admission's view of the cluster (`view`). Only call it when
/// `config.cluster.is_clustered()`.
pub fn start(config: &Config, admission: Arc<NodeAdmission>) -> Result<Cluster, StartError> {
    let config_error = |message| StartError {
        message,
        config: true,
    };
    let mqtt_addr = advertised_mqtt_addr(config).map_err(config_error)?;
    let settings = net_settings(config, mqtt_addr).map_err(config_error)?;
    let bind = settings.bind;
    let ca = matches!(settings.tls, TlsMode::Ca { .. });
    let (handle, events) = net::start(settings).map_err(|e| {
        let message = e.to_string();
        if message.contains("cluster.bind") || !ca {
            // Binding (a taken or foreign address) is the environment's.
            StartError {
                message: if message.starts_with("cluster.bind") {
                    message
                } else {
                    format!("cluster.bind {bind}: {message}")
                },
                config: false,
            }
        } else {
            StartError {
                message: format!(
                    "cluster.ssl_options: the certificate files cannot be used: {message}"
                ),
                config: true,
            }
        }
    })?;
    // Until the first view: CONNACKs list this node alone.
    admission.set_local_reference(format_reference(config.node.host(), mqtt_addr.port()));
    let loads = Arc::new(PeerLoads::default());
    super::view::start(handle.clone(), admission.clone(), loads.clone()).map_err(|e| {
        StartError {
            message: format!("cannot start the cluster view thread: {e}"),
            config: false,
        }
    })?;
    Ok(Cluster {
        handle: handle.clone(),
        events,
        loads,
        admission,
        clients: super::driver::query::channel(),
        rebalance: super::driver::rebalance::channel(handle),
    })
}

/// `[node]` and `[cluster]` as the cluster thread takes them. Errors start
/// with the key to fix.
pub fn net_settings(config: &Config, mqtt_addr: SocketAddr) -> Result<NetSettings, String> {
    let cluster = &config.cluster;
    let role = match config.node.role {
        NodeRole::Core => Role::Core,
        NodeRole::Replicant => Role::Replicant,
    };
    let resolve_all = |key: &str, list: &[HostPort]| -> Result<Vec<SocketAddr>, String> {
        let mut out = Vec::new();
        for hp in list {
            let addr = resolve(&hp.host, hp.port).map_err(|e| format!("{key}: {hp}: {e}"))?;
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        Ok(out)
    };
    let core_nodes = resolve_all("cluster.core_nodes", &cluster.core_nodes)?;
    let discovery = match cluster.discovery_strategy {
        DiscoveryStrategy::Singleton => Discovery::Singleton,
        // A replicant under manual joins its core nodes by itself.
        DiscoveryStrategy::Manual if role == Role::Replicant => Discovery::Static(core_nodes),
        DiscoveryStrategy::Manual => Discovery::Manual,
        DiscoveryStrategy::Static => {
            let mut seeds = resolve_all("cluster.static.seeds", &cluster.static_discovery.seeds)?;
            if role == Role::Replicant {
                for addr in core_nodes {
                    if !seeds.contains(&addr) {
                        seeds.push(addr);
                    }
                }
            }
            Discovery::Static(seeds)
        }
        DiscoveryStrategy::Dns => Discovery::Dns {
            name: cluster.dns.name.clone(),
            record_type: match cluster.dns.record_type {
                DnsRecordType::A => net::DnsRecordType::A,
                DnsRecordType::Srv => net::DnsRecordType::Srv,
            },
            port: cluster.bind.port(),
            nameserver: cluster.dns.nameserver,
        },
    };
    let ssl = &cluster.ssl_options;
    let tls = match (&ssl.certfile, &ssl.keyfile, &ssl.cacertfile) {
        (Some(certfile), Some(keyfile), Some(cacertfile)) => TlsMode::Ca {
            certfile: certfile.clone(),
            keyfile: keyfile.clone(),
            cacertfile: cacertfile.clone(),
            fail_if_no_peer_cert: ssl.fail_if_no_peer_cert,
        },
        (Some(_), Some(_), None) => {
            // The cluster thread checks a given certificate only against a
            // CA; a certificate alone would authenticate nothing more than
            // the self-signed one does.
            return Err(
                "cluster.ssl_options.cacertfile: not set while certfile and keyfile \
                        are; set it to the CA that issued them (ringmq gen-certs makes one), \
                        or clear certfile and keyfile for self-signed links authenticated by \
                        node.cookie"
                    .to_string(),
            );
        }
        _ => TlsMode::SelfSigned,
    };
    Ok(NetSettings {
        node_name: config.node.name.clone(),
        node_id: NodeId::from_name(&config.node.name),
        boot_epoch_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        role,
        cluster_name: cluster.name.clone(),
        cookie: config.node.cookie.clone(),
        bind: cluster.bind,
        mqtt_addr,
        tls,
        discovery,
        data_dir: config.node.data_dir.clone(),
        timing: net::Timing::default(),
    })
}

/// Where clients reach this node's MQTT: the first enabled plain TCP
/// listener's port, with its IP when it binds a specific one, otherwise
/// the address `node.name`'s host resolves to.
pub fn advertised_mqtt_addr(config: &Config) -> Result<SocketAddr, String> {
    let (name, listener) = config.enabled_tcp_listeners().next().ok_or_else(|| {
        "listeners.tcp: no plain TCP listener enabled; a clustered node advertises its first \
         one's address to its peers (Server Reference)"
            .to_string()
    })?;
    let bind = listener.bind;
    if !bind.ip().is_unspecified() {
        return Ok(bind);
    }
    resolve(config.node.host(), bind.port()).map_err(|e| {
        format!(
            "node.name: its host {:?} (advertised with listeners.tcp.{name}'s port) does not \
             resolve: {e}",
            config.node.host()
        )
    })
}

/// `host:port` to one socket address (an IP literal as it is; a name by
/// the system resolver, its first address).
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::load_from(Some(toml), &[]).unwrap()
    }

    const MQTT: &str = "127.0.0.9:1999";

    #[test]
    fn static_seeds_dns_and_identity_are_mapped() {
        let c = config(
            "[node]\nname = \"a@127.0.0.2\"\ncookie = \"k\"\ndata_dir = \"/tmp/d\"\n\
             [cluster]\nname = \"cl\"\ndiscovery_strategy = \"static\"\n\
             bind = \"127.0.0.2:4999\"\n\
             static.seeds = [\"127.0.0.1:4998\", \"localhost:4997\", \"127.0.0.1:4998\"]\n",
        );
        let s = net_settings(&c, MQTT.parse().unwrap()).unwrap();
        assert_eq!(s.node_id, NodeId::from_name("a@127.0.0.2"));
        assert_eq!(s.cluster_name, "cl");
        assert_eq!(s.cookie, "k");
        assert_eq!(s.bind.to_string(), "127.0.0.2:4999");
        assert_eq!(s.mqtt_addr.to_string(), MQTT);
        assert_eq!(s.data_dir, std::path::PathBuf::from("/tmp/d"));
        assert!(s.boot_epoch_ms > 1_600_000_000_000);
        assert!(matches!(s.tls, TlsMode::SelfSigned));
        let Discovery::Static(seeds) = s.discovery else {
            panic!("static expected")
        };
        assert_eq!(seeds[0].to_string(), "127.0.0.1:4998");
        assert_eq!(seeds.len(), 2, "duplicates removed: {seeds:?}");
        assert_eq!(seeds[1].port(), 4997);

        let c = config(
            "[cluster]\ndiscovery_strategy = \"dns\"\nbind = \"0.0.0.0:4444\"\n\
             dns.name = \"nodes.test\"\ndns.nameserver = \"127.0.0.1:5353\"\n",
        );
        let s = net_settings(&c, MQTT.parse().unwrap()).unwrap();
        let Discovery::Dns {
            name,
            port,
            nameserver,
            record_type,
        } = s.discovery
        else {
            panic!("dns expected")
        };
        assert_eq!(
            (name.as_str(), port, record_type),
            ("nodes.test", 4444, net::DnsRecordType::A)
        );
        assert_eq!(nameserver, Some("127.0.0.1:5353".parse().unwrap()));
    }

    #[test]
    fn a_manual_replicant_joins_its_core_nodes() {
        let c = config(
            "[node]\nrole = \"replicant\"\n[cluster]\ndiscovery_strategy = \"manual\"\n\
             core_nodes = [\"127.0.0.1:4370\"]\n",
        );
        let s = net_settings(&c, MQTT.parse().unwrap()).unwrap();
        assert_eq!(s.role, Role::Replicant);
        assert!(
            matches!(&s.discovery, Discovery::Static(a) if a[0].to_string() == "127.0.0.1:4370")
        );
        let c = config("[cluster]\ndiscovery_strategy = \"manual\"\n");
        let s = net_settings(&c, MQTT.parse().unwrap()).unwrap();
        assert!(matches!(s.discovery, Discovery::Manual));
    }

    #[test]
    fn a_seed_that_does_not_resolve_names_its_key() {
        let c = config(
            "[cluster]\ndiscovery_strategy = \"static\"\n\
             static.seeds = [\"no-such-host.invalid:4370\"]\n",
        );
        let e = net_settings(&c, MQTT.parse().unwrap()).unwrap_err();
        assert!(e.starts_with("cluster.static.seeds: "), "{e}");
    }

    #[test]
    fn the_mqtt_address_is_the_first_listener_with_the_node_host() {
        let c = config(
            "[node]\nname = \"n@127.0.0.3\"\n\
             [listeners.tcp.default]\nbind = \"0.0.0.0:2883\"\n",
        );
        assert_eq!(
            advertised_mqtt_addr(&c).unwrap().to_string(),
            "127.0.0.3:2883"
        );
        let c = config(
            "[node]\nname = \"n@127.0.0.3\"\n\
             [listeners.tcp.default]\nbind = \"127.0.0.5:2883\"\n",
        );
        assert_eq!(
            advertised_mqtt_addr(&c).unwrap().to_string(),
            "127.0.0.5:2883"
        );
        let c = config(
            "[node]\nname = \"n@no-such-host.invalid\"\n\
             [listeners.tcp.default]\nbind = \"0.0.0.0:2883\"\n",
        );
        let e = advertised_mqtt_addr(&c).unwrap_err();
        assert!(e.starts_with("node.name: "), "{e}");
    }
}
