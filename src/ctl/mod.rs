//! `ringmq ctl`: operate a running node through its admin API, with the
//! address and credentials of the node's own configuration (the same file
//! and `RINGMQ_*` overlay, `Config::load`).
//!
//! ```text
//! ringmq ctl --config FILE cluster status
//! ringmq ctl --config FILE cluster join HOST:PORT
//! ringmq ctl --config FILE cluster leave
//! ringmq ctl --config FILE cluster force-leave NODE
//! ringmq ctl --config FILE rebalance start --evacuation [...] | start [...] | node-status | stop
//! ```
//!
//! Exit status: 0 done; 1 the API refused (its message is printed) or could
//! not be reached; 2 the configuration cannot be used. docs/clustering.md,
//! "Operations".

mod http;
mod rebalance;

pub use rebalance::{RebalanceCommand, StartArgs};

pub use http::{exchange, parse_response, request_bytes, Endpoint, HttpResponse};

use crate::admin::{NodeInfo, NodeStatus};
use crate::config::Config;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

/// `ringmq ctl` arguments.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// The node's TOML configuration file: the admin API's address
    /// (api.bind) and credentials (api.username, api.password) are read
    /// from it and the RINGMQ_* environment, as the node reads them.
    /// Given as the binary's global `--config` (before or after `ctl`);
    /// `main` sets it.
    #[arg(skip)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCommand {
    /// The cluster this node belongs to.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Node evacuation and cluster rebalance (EMQX's `rebalance` forms).
    #[command(subcommand)]
    Rebalance(RebalanceCommand),
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// List the nodes: role, running or stopped, MQTT connections, uptime.
    Status,
    /// Join the cluster of the node whose QUIC endpoint (cluster.bind) is
    /// at HOST:PORT (cluster.discovery_strategy = "manual" only).
    Join {
        #[arg(value_name = "HOST:PORT")]
        address: String,
    },
    /// Leave the cluster (cluster.discovery_strategy = "manual" only).
    Leave,
    /// Remove another node from the cluster, e.g. one that is gone for
    /// good (cluster.discovery_strategy = "manual" only).
    ForceLeave {
        #[arg(value_name = "NODE")]
        node: String,
    },
}

/// Runs one `ctl` command; what it prints goes to stdout, errors to stderr.
pub fn run(args: CtlArgs) -> ExitCode {
    let endpoint = match endpoint(args.config.as_deref()) {
        Ok(e) => e,
        Err(message) => {
            eprintln!("ringmq ctl: {message}");
            return ExitCode::from(2);
        }
    };
    let (endpoint, node) = endpoint;
    let done = match &args.command {
        CtlCommand::Cluster(command) => cluster(&endpoint, command),
        CtlCommand::Rebalance(command) => rebalance::run(&endpoint, &node, command),
    };
    match done {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ringmq ctl: {message}");
            ExitCode::from(1)
        }
    }
}

/// The admin API's address and credentials from the configuration, and
/// the node's name.
fn endpoint(path: Option<&std::path::Path>) -> Result<(Endpoint, String), String> {
    let config = Config::load(path).map_err(|e| format!("configuration error: {e}"))?;
    let api = &config.api;
    if !api.enable {
        return Err(
            "the admin API is disabled (api.enable = false): ctl talks to the node through it"
                .to_string(),
        );
    }
    let endpoint = Endpoint {
        addr: reachable(api.bind),
        username: api.username.clone(),
        password: api.password.clone(),
    };
    Ok((endpoint, config.node.name.clone()))
}

/// A wildcard bind (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// One `cluster` command: its requests, and what to print.
fn cluster(endpoint: &Endpoint, command: &ClusterCommand) -> Result<String, String> {
    match command {
        ClusterCommand::Status => {
            let cluster = call(endpoint, "GET", "/api/v5/cluster", None)?;
            let nodes = call(endpoint, "GET", "/api/v5/nodes", None)?;
            let nodes: Vec<NodeInfo> = serde_json::from_value(nodes)
                .map_err(|e| format!("GET /api/v5/nodes: unexpected answer: {e}"))?;
            Ok(status_table(&cluster, &nodes))
        }
        ClusterCommand::Join { address } => {
            let body = json!({ "address": address }).to_string();
            call(
                endpoint,
                "PUT",
                "/api/v5/cluster/join",
                Some(body.as_bytes()),
            )?;
            Ok(format!("joined the cluster at {address}\n"))
        }
        ClusterCommand::Leave => {
            call(endpoint, "PUT", "/api/v5/cluster/leave", None)?;
            Ok("left the cluster\n".to_string())
        }
        ClusterCommand::ForceLeave { node } => {
            let path = format!("/api/v5/cluster/{}/force_leave", percent_encode(node));
            call(endpoint, "DELETE", &path, None)?;
            Ok(format!("removed {node} from the cluster\n"))
        }
    }
}

/// One request; a 2xx answer's JSON, or the server's message.
fn call(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Value, String> {
    let response = exchange(endpoint, method, path, body)?;
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&response.status) {
        return json.ok_or_else(|| format!("{method} {path}: the answer is not JSON"));
    }
    Err(refusal(
        method,
        path,
        response.status,
        json.as_ref(),
        &response.body,
    ))
}

/// `PUT /api/v5/cluster/join: 400 BAD_REQUEST: <message>`.
fn refusal(method: &str, path: &str, status: u16, json: Option<&Value>, raw: &[u8]) -> String {
    let text = |key: &str| json.and_then(|j| j.get(key)).and_then(Value::as_str);
    match (text("code"), text("message")) {
        (Some(code), Some(message)) => format!("{method} {path}: {status} {code}: {message}"),
        _ => {
            let raw = String::from_utf8_lossy(raw);
            format!("{method} {path}: {status}: {}", raw.trim())
        }
    }
}

/// A node name in a URL path: `@` and the host's characters stay, anything
/// else is `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"@.-_~:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The table `cluster status` prints.
pub fn status_table(cluster: &Value, nodes: &[NodeInfo]) -> String {
    let name = cluster.get("name").and_then(Value::as_str).unwrap_or("?");
    let strategy = cluster
        .get("discovery_strategy")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let running = nodes
        .iter()
        .filter(|n| n.node_status == NodeStatus::Running)
        .count();
    let mut out = format!(
        "Cluster {name}: {} node{}, {running} running (discovery: {strategy})\n\n",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
    );
    let header = ["NODE", "ROLE", "STATUS", "CONNECTIONS", "UPTIME"].map(String::from);
    let rows: Vec<[String; 5]> = nodes
        .iter()
        .map(|n| {
            [
                n.node.clone(),
                n.role.clone(),
                match n.node_status {
                    NodeStatus::Running => "running".into(),
                    NodeStatus::Stopped => "stopped".into(),
                },
                n.connections.map_or("-".into(), |c| c.to_string()),
                n.uptime.map_or("-".into(), uptime_text),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `3d 4h`, `2h 5m`, `7m 30s`, `12s`: the two largest units.
fn uptime_text(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        let r = |s: &str| reachable(s.parse().unwrap()).to_string();
        assert_eq!(r("0.0.0.0:18083"), "127.0.0.1:18083");
        assert_eq!(r("[::]:18083"), "[::1]:18083");
        assert_eq!(r("10.0.0.5:18083"), "10.0.0.5:18083");
    }

    #[test]
    fn the_status_table_lines_up() {
        let mut a = NodeInfo::named("ringmq@127.0.0.1", NodeStatus::Running, "core");
        a.connections = Some(3);
        a.uptime = Some(65_000);
        let b = NodeInfo::named(
            "ringmq-long-name@127.0.0.2",
            NodeStatus::Stopped,
            "replicant",
        );
        let cluster = json!({"name": "ringmqcl", "discovery_strategy": "manual"});
        let table = status_table(&cluster, &[a, b]);
        assert_eq!(
            table,
            "Cluster ringmqcl: 2 nodes, 1 running (discovery: manual)\n\n\
             NODE                        ROLE       STATUS   CONNECTIONS  UPTIME\n\
             ringmq@127.0.0.1            core       running  3            1m 5s\n\
             ringmq-long-name@127.0.0.2  replicant  stopped  -            -\n"
        );
    }

    #[test]
    fn uptimes_read_at_a_glance() {
        assert_eq!(uptime_text(999), "0s");
        assert_eq!(uptime_text(12_345), "12s");
        assert_eq!(uptime_text(3_600_000 * 2 + 60_000 * 5), "2h 5m");
        assert_eq!(uptime_text(86_400_000 * 3 + 3_600_000 * 4), "3d 4h");
    }

    #[test]
    fn refusals_carry_the_servers_message() {
        let body = json!({"code": "UNAUTHORIZED", "message": "HTTP basic authentication required"});
        assert_eq!(
            refusal("GET", "/api/v5/nodes", 401, Some(&body), b""),
            "GET /api/v5/nodes: 401 UNAUTHORIZED: HTTP basic authentication required"
        );
        assert_eq!(
            refusal("GET", "/x", 502, None, b"bad gateway\n"),
            "GET /x: 502: bad gateway"
        );
    }

    #[test]
    fn node_names_in_paths() {
        assert_eq!(percent_encode("ringmq@127.0.0.1"), "ringmq@127.0.0.1");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn commands_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            ctl: CtlArgs,
        }
        // `--config` is the binary's global option (main.rs sets
        // `CtlArgs::config` from it), not one of ctl's own.
        let cli = Cli::try_parse_from(["ctl", "cluster", "force-leave", "n@h"]).unwrap();
        assert_eq!(cli.ctl.config, None);
        assert!(Cli::try_parse_from(["ctl", "--config", "f.toml", "cluster", "leave"]).is_err());
        let CtlCommand::Cluster(c) = cli.ctl.command else {
            panic!("a cluster command")
        };
        assert_eq!(c, ClusterCommand::ForceLeave { node: "n@h".into() });
        let cli = Cli::try_parse_from(["ctl", "cluster", "join", "127.0.0.1:4370"]).unwrap();
        let CtlCommand::Cluster(c) = cli.ctl.command else {
            panic!("a cluster command")
        };
        assert_eq!(
            c,
            ClusterCommand::Join {
                address: "127.0.0.1:4370".into()
            }
        );
        assert!(Cli::try_parse_from(["ctl", "cluster", "join"]).is_err());
        assert!(Cli::try_parse_from(["ctl", "cluster", "explode"]).is_err());
    }

    #[test]
    fn rebalance_commands_parse_as_emqx_s() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            ctl: CtlArgs,
        }
        let parse = |args: &[&str]| {
            let mut all = vec!["ctl", "rebalance"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.ctl.command)
        };
        let c = parse(&[
            "start",
            "--evacuation",
            "--redirect-to",
            "a:1 b:2",
            "--conn-evict-rate",
            "10",
            "--migrate-to",
            "n1@h n2@h",
            "--wait-takeover",
            "5",
            "--sess-evict-rate",
            "7",
            "--wait-health-check",
            "0",
        ])
        .unwrap();
        let CtlCommand::Rebalance(RebalanceCommand::Start(a)) = c else {
            panic!("a start")
        };
        assert!(a.evacuation);
        assert_eq!(a.redirect_to.as_deref(), Some("a:1 b:2"));
        assert_eq!((a.conn_evict_rate, a.sess_evict_rate), (Some(10), Some(7)));
        assert_eq!((a.wait_takeover, a.wait_health_check), (Some(5), Some(0)));
        let c = parse(&[
            "start",
            "--nodes",
            "n1@h n2@h",
            "--abs-conn-threshold",
            "10",
            "--rel-conn-threshold",
            "1.2",
            "--abs-sess-threshold",
            "5",
            "--rel-sess-threshold",
            "1.5",
        ])
        .unwrap();
        let CtlCommand::Rebalance(RebalanceCommand::Start(a)) = c else {
            panic!("a start")
        };
        assert!(!a.evacuation);
        assert_eq!(a.rel_conn_threshold, Some(1.2));
        assert!(matches!(
            parse(&["node-status"]),
            Ok(CtlCommand::Rebalance(RebalanceCommand::NodeStatus))
        ));
        assert!(matches!(
            parse(&["stop"]),
            Ok(CtlCommand::Rebalance(RebalanceCommand::Stop))
        ));
        // Evacuation-only and rebalance-only options do not mix.
        assert!(parse(&["start", "--redirect-to", "a:1"]).is_err());
        assert!(parse(&["start", "--evacuation", "--nodes", "a@h"]).is_err());
    }
}
