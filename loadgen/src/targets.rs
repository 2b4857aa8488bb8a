//! Which broker each client connects to: `--pub-addrs` and `--sub-addrs`
//! put publishers and subscribers on different servers (nodes of one
//! cluster), round robin over each list in plan order, so cross-node
//! throughput and latency are measured like in-node ones. Without them
//! every client goes to `--host`:`--port`. Pure but for `resolve`.

use crate::plan::{ClientSpec, Role};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// One `host:port` of a list, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// A DNS name or an IP literal (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `host:port`, `[v6]:port`; the port 1..=65535.
pub fn parse_server_addr(s: &str) -> Result<ServerAddr, String> {
    let bad = || format!("{s:?}: expected host:port (IPv6 as [addr]:port)");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(bad)?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return Err(bad());
    }
    Ok(ServerAddr {
        host: host.to_string(),
        port,
    })
}

impl ServerAddr {
    /// The first address the name resolves to; `option` names the list in
    /// the error.
    pub fn resolve(&self, option: &str) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{option} {self}: {e}"))?
            .next()
            .ok_or_else(|| format!("{option} {self} resolves to no address"))
    }
}

/// Sets each client's server: publishers (and the `conn` scenario's idle
/// clients) round robin over `pubs`, subscribers over `subs`, each in plan
/// order, so pair i of p2p is publisher i on `pubs[i % len]` and subscriber
/// i on `subs[i % len]`. An empty list leaves those clients on the default
/// target.
pub fn assign(clients: &mut [ClientSpec], pubs: &[SocketAddr], subs: &[SocketAddr]) {
    let (mut p, mut s) = (0usize, 0usize);
    for c in clients {
        let (list, next) = match c.role {
            Role::Subscriber { .. } => (subs, &mut s),
            Role::Publisher { .. } | Role::Idle => (pubs, &mut p),
        };
        if !list.is_empty() {
            c.target = Some(list[*next % list.len()]);
            *next += 1;
        }
    }
}

/// How the report names the target: the one server, or both lists.
pub fn describe(default: SocketAddr, pubs: &[SocketAddr], subs: &[SocketAddr]) -> String {
    if pubs.is_empty() && subs.is_empty() {
        return default.to_string();
    }
    let list = |l: &[SocketAddr]| {
        if l.is_empty() {
            default.to_string()
        } else {
            l.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    format!("pub {} sub {}", list(pubs), list(subs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role) -> ClientSpec {
        ClientSpec {
            client_id: String::new(),
            role,
            thread: 0,
            target: None,
        }
    }

    fn sub() -> ClientSpec {
        spec(Role::Subscriber {
            filter: "t".into(),
            slot: 0,
        })
    }

    fn publ(id: u32) -> ClientSpec {
        spec(Role::Publisher {
            id,
            topic: "t".into(),
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn server_addresses_parse() {
        let a = parse_server_addr("127.0.0.1:1883").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1883));
        let a = parse_server_addr("[::1]:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1884));
        assert_eq!(a.to_string(), "[::1]:1884");
        let a = parse_server_addr("node-2.example.com:8883").unwrap();
        assert_eq!(a.to_string(), "node-2.example.com:8883");
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            ":1883",
            "h:0",
            "h:65536",
            "h:x",
            "::1:1883",
            "[::1:1883",
            "a b:1",
        ] {
            let e = parse_server_addr(bad).unwrap_err();
            assert!(e.contains("host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn p2p_pairs_spread_over_both_lists() {
        // p2p's plan order: subscriber i, then publisher i.
        let mut clients: Vec<ClientSpec> = (0..3).flat_map(|i| [sub(), publ(i)]).collect();
        assign(
            &mut clients,
            &[addr(1), addr(2)],
            &[addr(3), addr(4), addr(5)],
        );
        let got: Vec<u16> = clients.iter().map(|c| c.target.unwrap().port()).collect();
        assert_eq!(got, [3, 1, 4, 2, 5, 1]);
    }

    #[test]
    fn an_empty_list_keeps_the_default() {
        let mut clients = vec![sub(), publ(0), spec(Role::Idle)];
        assign(&mut clients, &[], &[addr(9)]);
        let got: Vec<Option<u16>> = clients.iter().map(|c| c.target.map(|a| a.port())).collect();
        assert_eq!(got, [Some(9), None, None]);
        let mut idle = vec![spec(Role::Idle), spec(Role::Idle)];
        assign(&mut idle, &[addr(1), addr(2)], &[]);
        assert_eq!(idle[1].target, Some(addr(2)));
    }

    #[test]
    fn the_report_names_both_lists() {
        assert_eq!(describe(addr(1), &[], &[]), "127.0.0.1:1");
        assert_eq!(
            describe(addr(1), &[addr(2), addr(3)], &[]),
            "pub 127.0.0.1:2,127.0.0.1:3 sub 127.0.0.1:1"
        );
    }

    #[test]
    fn resolution_names_the_option() {
        let a = parse_server_addr("127.0.0.1:7").unwrap();
        assert_eq!(a.resolve("--pub-addrs").unwrap(), addr(7));
        let e = ServerAddr {
            host: "no-such-host.invalid".into(),
            port: 1,
        }
        .resolve("--sub-addrs")
        .unwrap_err();
        assert!(e.starts_with("--sub-addrs no-such-host.invalid:1"), "{e}");
    }
}
