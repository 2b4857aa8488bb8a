//! Admission: whether a client that sent CONNECT is accepted, redirected to
//! another server, or refused. Pure: plain data in, a [`Decision`] out; the
//! shard (`src/shard/conn.rs`) supplies the counts, carries the decision out
//! and commits an admission with [`Count::try_take`].
//!
//! - `mod.rs`: the decision and the Server Reference format.
//! - `node.rs`: what the shards share for it, all lock-free: the live
//!   redirection config (`ArcSwap`), the node-wide connection count and the
//!   round-robin cursor (atomics), and per-shard counters for the admin API.
//! - `cluster.rs`: the cluster's running nodes as admission uses them (the
//!   CONNACK's Server Reference, redirect targets, `least_connections`).
//!
//! See docs/redirection.md for how the shards use it.

mod cluster;
mod node;

#[cfg(test)]
mod tests;

pub use cluster::{ClusterServer, ClusterServers, Effective};
pub use node::{Count, NodeAdmission, ShardCounters, ShardCountersSnapshot};

use crate::codec::{connack_v3, ReasonCode};
use std::net::Ipv6Addr;

/// How a redirect picks among the configured servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly at random (per shard random source).
    Random,
    /// In the configured order, node-wide (one shared cursor).
    RoundRobin,
    /// The running cluster node with the fewest MQTT connections, from the
    /// load figures the nodes exchange (a cluster only).
    LeastConnections,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::Random,
        Strategy::RoundRobin,
        Strategy::LeastConnections,
    ];

    /// The spelling in the config and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
        }
    }

    pub fn parse(text: &str) -> Option<Strategy> {
        let text = text.trim();
        Strategy::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// One server clients may be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectServer {
    /// Host name, IPv4 or IPv6 address (without brackets).
    pub host: String,
    pub port: u16,
    /// For operators only; never sent to clients.
    pub description: Option<String>,
    /// `host:port` or `[v6]:port`, formatted once so a redirect does not
    /// format on the connect path.
    reference: String,
}

impl RedirectServer {
    pub fn new(host: &str, port: u16, description: Option<String>) -> RedirectServer {
        let host = strip_brackets(host).to_string();
        let reference = format_reference(&host, port);
        RedirectServer {
            host,
            port,
            description,
            reference,
        }
    }

    /// This server as one Server Reference: `host:port`, `[v6]:port`.
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// `[::1]` -> `::1`; anything else unchanged.
pub fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// One Server Reference [MQTT 5 §4.11]: `host:port`; an IPv6 address in
/// brackets, `[addr]:port`, so the port is not read as part of it.
pub fn format_reference(host: &str, port: u16) -> String {
    let host = strip_brackets(host);
    if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Several Server References in one property: separated by one space, in
/// the order given (clients try them in order).
pub fn format_references<'a>(servers: impl IntoIterator<Item = &'a RedirectServer>) -> String {
    let mut out = String::new();
    for server in servers {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(server.reference());
    }
    out
}

/// The live `[server_redirection]` settings, as the shards read them.
/// Built from a validated `config::ServerRedirectionConfig`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirection {
    pub enable: bool,
    pub strategy: Strategy,
    /// Node-wide MQTT connections at which redirection starts.
    pub max_connections: usize,
    pub servers: Vec<RedirectServer>,
}

impl Default for Redirection {
    fn default() -> Self {
        Redirection {
            enable: false,
            strategy: Strategy::Random,
            max_connections: 1000,
            servers: Vec::new(),
        }
    }
}

/// The node refuses every new client: it is evacuated, or a rebalance
/// donor past its health-check wait (`src/rebalance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusing {
    /// MQTT 5 clients are sent here with 0x9D (Server moved); without it
    /// they get 0x9C (Use another server) and no reference.
    pub server_reference: Option<String>,
}

/// What the shard knows when a CONNECT has passed its own checks.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// MQTT 5 (only v5 has reason codes and Server Reference).
    pub v5: bool,
    /// MQTT connections open on the whole node (every listener, every
    /// shard), not counting this one.
    pub node_connections: usize,
    /// Connections open on this client's listener, node-wide.
    pub listener_connections: usize,
    /// `listeners.tcp.<name>.max_connections`.
    pub listener_max: usize,
    /// The node refuses new clients (evacuation, rebalance donor).
    pub evacuating: Option<&'a Refusing>,
    /// The node is stopping.
    pub shutting_down: bool,
}

/// Why a client was refused, for the per-shard counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseCause {
    /// The node reached `server_redirection.max_connections` and the client
    /// speaks MQTT 3.1.1 (which has no Server Reference).
    NodeFull,
    /// The listener reached its `max_connections`.
    ListenerFull,
    /// Evacuating or a rebalance donor, with no server to send clients to,
    /// or a v3.1.1 client.
    Evacuating,
    ShuttingDown,
}

/// The answer to a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// MQTT 5 only: CONNACK with `reason` (0x9C Use another server, or 0x9D
    /// Server moved) and this Server Reference, then close.
    Redirect {
        reason: ReasonCode,
        server_reference: String,
    },
    /// CONNACK with `reason` (a v5 reason code or a v3.1.1 return code,
    /// for the client's protocol), then close.
    Refuse {
        reason: ReasonCode,
        cause: RefuseCause,
    },
}

/// Decides one CONNECT. `pick(n)` chooses the index (below `n`, `n >= 1`)
/// of the server a redirect names; it is called only for a redirect, so a
/// round-robin cursor moves only when a client is actually redirected.
///
/// A redirect carries one Server Reference, the picked server's (as EMQX
/// does): the strategy is what spreads clients, and a client given a list
/// would mostly take the first entry anyway.
///
/// Order: stopping, evacuating (or a rebalance donor), the node-wide
/// redirection cap, the
/// listener's cap. With redirection enabled, a full listener redirects too
/// (there is no room here either way).
pub fn decide(
    request: &Request,
    config: &Redirection,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Decision {
    let refuse = |v5_reason: ReasonCode, cause: RefuseCause| Decision::Refuse {
        reason: if request.v5 {
            v5_reason
        } else {
            connack_v3::SERVER_UNAVAILABLE
        },
        cause,
    };
    let mut redirect = |reason: ReasonCode| {
        let index = pick(config.servers.len());
        assert!(index < config.servers.len(), "pick out of range");
        Decision::Redirect {
            reason,
            server_reference: config.servers[index].reference().to_string(),
        }
    };
    if request.shutting_down {
        return refuse(ReasonCode::SERVER_UNAVAILABLE, RefuseCause::ShuttingDown);
    }
    if let Some(refusing) = request.evacuating {
        // EMQX's evacuation: 0x9D with the operator's `redirect_to`, else
        // 0x9C with no reference (the client picks another server itself);
        // a v3.1.1 client gets return code 3 and reconnects through its
        // load balancer.
        if let (true, Some(reference)) = (request.v5, &refusing.server_reference) {
            return Decision::Redirect {
                reason: ReasonCode::SERVER_MOVED,
                server_reference: reference.clone(),
            };
        }
        return refuse(ReasonCode::USE_ANOTHER_SERVER, RefuseCause::Evacuating);
    }
    let redirecting = config.enable && !config.servers.is_empty();
    if redirecting && request.node_connections >= config.max_connections {
        if request.v5 {
            return redirect(ReasonCode::USE_ANOTHER_SERVER);
        }
        return refuse(ReasonCode::SERVER_UNAVAILABLE, RefuseCause::NodeFull);
    }
    if request.listener_connections >= request.listener_max {
        if redirecting && request.v5 {
            return redirect(ReasonCode::USE_ANOTHER_SERVER);
        }
        return refuse(ReasonCode::QUOTA_EXCEEDED, RefuseCause::ListenerFull);
    }
    Decision::Admit
}
