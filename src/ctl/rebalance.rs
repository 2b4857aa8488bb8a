//! `ringmq ctl rebalance ...`: EMQX's `emqx ctl rebalance` forms, over the
//! admin API's `/api/v5/load_rebalance` routes.
//!
//! ```text
//! ringmq ctl rebalance start --evacuation [--redirect-to "Host1:Port1 Host2:Port2"] \
//!     [--conn-evict-rate N] [--migrate-to "node1@host1 node2@host2"] \
//!     [--wait-takeover SECS] [--sess-evict-rate N] [--wait-health-check SECS]
//! ringmq ctl rebalance start [--nodes "node1@host1 node2@host2"] [--wait-health-check SECS] \
//!     [--conn-evict-rate N] [--abs-conn-threshold N] [--rel-conn-threshold F] \
//!     [--wait-takeover SECS] [--sess-evict-rate N] [--abs-sess-threshold N] [--rel-sess-threshold F]
//! ringmq ctl rebalance node-status
//! ringmq ctl rebalance stop
//! ```

use super::{call, percent_encode, Endpoint};
use crate::rebalance::params::split_list;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum RebalanceCommand {
    /// Start evacuating this node (--evacuation) or a rebalance of the
    /// cluster coordinated by this node.
    Start(Box<StartArgs>),
    /// What this node's evacuation or rebalance is doing.
    NodeStatus,
    /// Stop this node's evacuation, or the rebalance it coordinates.
    Stop,
}

#[derive(Args, Debug, Clone, PartialEq, Default)]
pub struct StartArgs {
    /// Evacuate this node (its clients and sessions move to other nodes).
    #[arg(long)]
    pub evacuation: bool,
    /// Server References given to MQTT 5 clients: "Host1:Port1 Host2:Port2".
    #[arg(long, value_name = "SERVERS", requires = "evacuation")]
    pub redirect_to: Option<String>,
    /// Nodes the remaining sessions move to: "node1@host1 node2@host2".
    #[arg(long, value_name = "NODES", requires = "evacuation")]
    pub migrate_to: Option<String>,
    /// The nodes taking part in a rebalance (default: every running node).
    #[arg(long, value_name = "NODES", conflicts_with = "evacuation")]
    pub nodes: Option<String>,
    /// Connections disconnected per second.
    #[arg(long, value_name = "N")]
    pub conn_evict_rate: Option<u64>,
    /// Sessions moved per second.
    #[arg(long, value_name = "N")]
    pub sess_evict_rate: Option<u64>,
    /// Seconds clients are given to reconnect and take their sessions over.
    #[arg(long, value_name = "SECS")]
    pub wait_takeover: Option<u64>,
    /// Seconds load balancers are given to notice the node is unavailable.
    #[arg(long, value_name = "SECS")]
    pub wait_health_check: Option<u64>,
    #[arg(long, value_name = "N", conflicts_with = "evacuation")]
    pub abs_conn_threshold: Option<u64>,
    #[arg(long, value_name = "F", conflicts_with = "evacuation")]
    pub rel_conn_threshold: Option<f64>,
    #[arg(long, value_name = "N", conflicts_with = "evacuation")]
    pub abs_sess_threshold: Option<u64>,
    #[arg(long, value_name = "F", conflicts_with = "evacuation")]
    pub rel_sess_threshold: Option<f64>,
}

impl StartArgs {
    /// The API's JSON body: the options given, under EMQX's field names;
    /// the API applies the defaults and checks the values.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        let list = |s: &Option<String>| s.as_deref().map(|s| json!(split_list(s)));
        put("redirect_to", self.redirect_to.clone().map(Value::from));
        put("migrate_to", list(&self.migrate_to));
        put("nodes", list(&self.nodes));
        put("conn_evict_rate", self.conn_evict_rate.map(Value::from));
        put("sess_evict_rate", self.sess_evict_rate.map(Value::from));
        put("wait_takeover", self.wait_takeover.map(Value::from));
        put("wait_health_check", self.wait_health_check.map(Value::from));
        put(
            "abs_conn_threshold",
            self.abs_conn_threshold.map(Value::from),
        );
        put(
            "rel_conn_threshold",
            self.rel_conn_threshold.map(Value::from),
        );
        put(
            "abs_sess_threshold",
            self.abs_sess_threshold.map(Value::from),
        );
        put(
            "rel_sess_threshold",
            self.rel_sess_threshold.map(Value::from),
        );
        Value::Object(m)
    }
}

fn base(node: &str) -> String {
    format!("/api/v5/load_rebalance/{}", percent_encode(node))
}

/// One `rebalance` command against node `node`'s API.
pub fn run(endpoint: &Endpoint, node: &str, command: &RebalanceCommand) -> Result<String, String> {
    match command {
        RebalanceCommand::Start(args) => {
            let body = args.body().to_string();
            let (path, what) = if args.evacuation {
                (format!("{}/evacuation/start", base(node)), "evacuation")
            } else {
                (format!("{}/start", base(node)), "rebalance")
            };
            call(endpoint, "POST", &path, Some(body.as_bytes()))?;
            Ok(format!("{what} started on {node}\n"))
        }
        RebalanceCommand::NodeStatus => {
            let status = call(endpoint, "GET", "/api/v5/load_rebalance/status", None)?;
            Ok(node_status_text(&status))
        }
        RebalanceCommand::Stop => {
            let status = call(endpoint, "GET", "/api/v5/load_rebalance/status", None)?;
            let evacuating = status.get("process").and_then(Value::as_str) == Some("evacuation");
            let (path, what) = if evacuating {
                (format!("{}/evacuation/stop", base(node)), "evacuation")
            } else {
                (format!("{}/stop", base(node)), "rebalance")
            };
            call(endpoint, "POST", &path, None)?;
            Ok(format!("{what} stopped on {node}\n"))
        }
    }
}

/// `node-status`, as EMQX prints it: one line per field, in its order.
pub fn node_status_text(status: &Value) -> String {
    let mut out = String::new();
    let get = |k: &str| status.get(k);
    if get("status").and_then(Value::as_str) != Some("enabled") {
        return "Rebalance status: disabled\n".to_string();
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let names: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect();
            format!("[{}]", names.join(", "))
        }
        other => other.to_string(),
    };
    if let Some(p) = get("process") {
        let _ = writeln!(out, "Rebalance type: {}", text(p));
    }
    let lines: [(&str, &str, &str); 11] = [
        ("state", "Rebalance state", ""),
        ("coordinator_node", "Coordinator node", ""),
        (
            "connection_eviction_rate",
            "Connection eviction rate",
            " connections/second",
        ),
        (
            "session_eviction_rate",
            "Session eviction rate",
            " sessions/second",
        ),
        ("connection_goal", "Connection goal", ""),
        ("session_goal", "Session goal", ""),
        ("disconnected_session_goal", "Disconnected session goal", ""),
        ("session_recipients", "Session recipient nodes", ""),
        ("recipients", "Recipient nodes", ""),
        ("donors", "Donor nodes", ""),
        ("redirect_to", "Redirect to", ""),
    ];
    for (key, label, unit) in lines {
        match get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let _ = writeln!(out, "{label}: {}{unit}", text(v));
            }
        }
    }
    if let Some(Value::Object(stats)) = get("stats") {
        out.push_str("Channel statistics:\n");
        for key in [
            "initial_connected",
            "current_connected",
            "initial_sessions",
            "current_sessions",
            "current_disconnected_sessions",
        ] {
            if let Some(v) = stats.get(key) {
                let _ = writeln!(out, "  {key}: {v}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_bodies_use_emqx_s_field_names() {
        let args = StartArgs {
            evacuation: true,
            redirect_to: Some("a:1 b:2".into()),
            migrate_to: Some("n1@h n2@h".into()),
            conn_evict_rate: Some(10),
            wait_takeover: Some(0),
            ..StartArgs::default()
        };
        assert_eq!(
            args.body(),
            json!({"redirect_to": "a:1 b:2", "migrate_to": ["n1@h", "n2@h"],
                   "conn_evict_rate": 10, "wait_takeover": 0})
        );
    }

    #[test]
    fn node_status_prints_the_fields_in_emqx_s_order() {
        let status = json!({
            "status": "enabled", "process": "evacuation", "state": "evicting_conns",
            "connection_eviction_rate": 500, "session_eviction_rate": 500,
            "connection_goal": 0, "session_goal": 0, "session_recipients": ["b@h"],
            "stats": {"initial_connected": 3, "current_connected": 1,
                      "initial_sessions": 3, "current_sessions": 3,
                      "current_disconnected_sessions": 2},
        });
        assert_eq!(
            node_status_text(&status),
            "Rebalance type: evacuation\n\
             Rebalance state: evicting_conns\n\
             Connection eviction rate: 500 connections/second\n\
             Session eviction rate: 500 sessions/second\n\
             Connection goal: 0\n\
             Session goal: 0\n\
             Session recipient nodes: [b@h]\n\
             Channel statistics:\n  initial_connected: 3\n  current_connected: 1\n  \
             initial_sessions: 3\n  current_sessions: 3\n  current_disconnected_sessions: 2\n"
        );
        assert_eq!(
            node_status_text(&json!({"status": "disabled"})),
            "Rebalance status: disabled\n"
        );
    }
}
