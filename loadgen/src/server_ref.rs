//! MQTT 5 Server Reference parsing (CONNACK / DISCONNECT reason 0x9C "Use
//! another server" or 0x9D "Server moved").
//!
//! The spec leaves the format open (MQTT 5.0 section 4.11); the common one,
//! used here: one or more references separated by spaces, each `host:port`,
//! `[ipv6]:port`, or a bare `host` / `[ipv6]` / unbracketed IPv6 literal,
//! which keeps the port of the server that sent the reference.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ServerRef {
    /// First address the host resolves to (IP literals never hit DNS).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {self}: {e}"))?
            .next()
            .ok_or_else(|| format!("{self} resolves to no address"))
    }
}

/// Parse a Server Reference property value. `default_port` is used for
/// references without a port. Errors name the offending reference.
pub fn parse(value: &str, default_port: u16) -> Result<Vec<ServerRef>, String> {
    let refs: Vec<ServerRef> = value
        .split_ascii_whitespace()
        .map(|one| parse_one(one, default_port))
        .collect::<Result<_, _>>()?;
    if refs.is_empty() {
        return Err("empty Server Reference".into());
    }
    Ok(refs)
}

fn parse_one(s: &str, default_port: u16) -> Result<ServerRef, String> {
    let bad = |why: &str| format!("bad server reference {s:?}: {why}");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match after {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':' after ']'"))?
                .parse()
                .map_err(|_| bad("port"))?,
        };
        return Ok(ServerRef {
            host: host.to_string(),
            port,
        });
    }
    match s.matches(':').count() {
        0 => Ok(ServerRef {
            host: s.to_string(),
            port: default_port,
        }),
        1 => {
            let (host, port) = s.split_once(':').unwrap();
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            Ok(ServerRef {
                host: host.to_string(),
                port: port.parse().map_err(|_| bad("port"))?,
            })
        }
        // An unbracketed IPv6 literal: no port.
        _ => {
            if s.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("more than one ':' and not an IPv6 address"));
            }
            Ok(ServerRef {
                host: s.to_string(),
                port: default_port,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, port: u16) -> ServerRef {
        ServerRef {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(
            parse("127.0.0.1:1884", 1).unwrap(),
            vec![r("127.0.0.1", 1884)]
        );
        assert_eq!(
            parse("broker-2.example:8883", 1).unwrap(),
            vec![r("broker-2.example", 8883)]
        );
    }

    #[test]
    fn bracketed_ipv6() {
        assert_eq!(parse("[::1]:1883", 1).unwrap(), vec![r("::1", 1883)]);
        assert_eq!(parse("[fe80::1]", 7).unwrap(), vec![r("fe80::1", 7)]);
        assert_eq!(parse("::1", 7).unwrap(), vec![r("::1", 7)]);
        assert_eq!(r("::1", 1883).to_string(), "[::1]:1883");
    }

    #[test]
    fn several_references() {
        assert_eq!(
            parse("  10.0.0.2:1883 [::1]:1884\tother ", 1999).unwrap(),
            vec![r("10.0.0.2", 1883), r("::1", 1884), r("other", 1999)]
        );
    }

    #[test]
    fn host_without_port_keeps_the_current_port() {
        assert_eq!(parse("node2", 18830).unwrap(), vec![r("node2", 18830)]);
    }

    #[test]
    fn errors() {
        for bad in [
            "", "   ", "[::1", "[]:1", ":1883", "h:99999", "h:x", "[::1]x", "a:b:c",
        ] {
            assert!(parse(bad, 1).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn resolves_literals() {
        // Typed: rkyv (a dependency of ringmq) adds `SocketAddr: PartialEq<_>`
        // impls, so an untyped `parse()` is ambiguous here.
        assert_eq!(
            r("127.0.0.1", 5).resolve().unwrap(),
            "127.0.0.1:5".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            r("::1", 5).resolve().unwrap(),
            "[::1]:5".parse::<SocketAddr>().unwrap()
        );
    }
}
