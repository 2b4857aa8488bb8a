//! Where peers are found: the remembered peers file (manual discovery)
//! and DNS (A/AAAA with the bind port, or SRV). The loop (`node`) decides
//! when to dial; this module only turns sources into addresses.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::Resolver;

use super::settings::DnsRecordType;
use crate::limits;

/// `data_dir/cluster/peers`: one QUIC address a line.
pub fn peers_file(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster").join("peers")
}

/// Reads the remembered peers; a missing file is an empty set, a bad line
/// is skipped (the file is ours, but may be truncated by a crash).
pub fn load_peers(path: &Path) -> BTreeSet<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|l| l.trim().parse().ok())
        .take(limits::CLUSTER_PEERS_MAX)
        .collect()
}

/// Writes the remembered peers atomically (write then rename).
pub fn save_peers(path: &Path, peers: &BTreeSet<SocketAddr>) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Addresses of A/AAAA answers, each with the cluster port.
pub fn addrs_from_ips(ips: impl IntoIterator<Item = IpAddr>, port: u16) -> Vec<SocketAddr> {
    let set: BTreeSet<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    set.into_iter().take(limits::CLUSTER_PEERS_MAX).collect()
}

/// Addresses of SRV answers: each (target, port) with the target's
/// addresses (from the answer's additional section, or resolved).
pub fn addrs_from_srv(targets: &[(Vec<IpAddr>, u16)]) -> Vec<SocketAddr> {
    let set: BTreeSet<SocketAddr> = targets
        .iter()
        .flat_map(|(ips, port)| ips.iter().map(move |ip| SocketAddr::new(*ip, *port)))
        .collect();
    set.into_iter().take(limits::CLUSTER_PEERS_MAX).collect()
}

/// A resolver asking `nameserver`, or the system's (/etc/resolv.conf).
/// No cache: names are re-resolved every discovery interval and must
/// follow the records.
pub fn resolver(
    nameserver: Option<SocketAddr>,
) -> Result<Resolver<TokioConnectionProvider>, String> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = crate::limits::CLUSTER_DNS_QUERY_TIMEOUT;
    let builder = match nameserver {
        Some(addr) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => Resolver::builder_tokio().map_err(|e| format!("system resolver: {e}"))?,
    };
    Ok(builder.with_options(opts).build())
}

/// Resolves the discovery name to QUIC addresses.
pub async fn resolve(
    resolver: &Resolver<TokioConnectionProvider>,
    name: &str,
    record_type: DnsRecordType,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    match record_type {
        DnsRecordType::A => {
            let ips = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
            Ok(addrs_from_ips(ips.iter(), port))
        }
        DnsRecordType::Srv => {
            let srv = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
            let additional: Vec<IpAddr> = srv.ip_iter().collect();
            let mut targets = Vec::new();
            for record in srv.iter().take(limits::CLUSTER_PEERS_MAX) {
                let ips = if additional.is_empty() {
                    match resolver.lookup_ip(record.target().clone()).await {
                        Ok(ips) => ips.iter().collect(),
                        Err(_) => continue,
                    }
                } else {
                    additional.clone()
                };
                targets.push((ips, record.port()));
            }
            Ok(addrs_from_srv(&targets))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_take_the_cluster_port_and_dedup() {
        let ips: Vec<IpAddr> = vec![
            "127.0.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ];
        assert_eq!(
            addrs_from_ips(ips, 4370),
            vec![
                "127.0.0.1:4370".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:4370".parse().unwrap()
            ]
        );
    }

    #[test]
    fn srv_records_carry_their_own_ports() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let targets = vec![(vec![a], 4371), (vec![a], 4372), (vec![], 1)];
        assert_eq!(
            addrs_from_srv(&targets),
            vec![
                "10.0.0.1:4371".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:4372".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_peers_file_round_trips_and_skips_garbage() {
        let dir = std::env::temp_dir().join(format!("ringmq-peers-{}", std::process::id()));
        let path = peers_file(&dir);
        assert!(load_peers(&path).is_empty());
        let peers: BTreeSet<SocketAddr> =
            ["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()].into();
        save_peers(&path, &peers).unwrap();
        assert_eq!(load_peers(&path), peers);
        std::fs::write(&path, "127.0.0.1:1\nnot an address\n").unwrap();
        assert_eq!(load_peers(&path).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
