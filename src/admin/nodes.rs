//! `/api/v5/nodes` and `/api/v5/cluster`: the nodes of the cluster as
//! EMQX 5 shows them, and the manual membership operations `ringmq ctl`
//! drives (`join`, `leave`, `force_leave`).
//!
//! This node's entry is built here from the shards' statistics (asked
//! through their inboxes, like the client listings) and a few process
//! figures read from `/proc`. Other nodes' entries, and every membership
//! change, come from a [`ClusterControl`] the cluster thread hands to the
//! admin thread at start: without one (a single node, or a node whose
//! cluster thread is not running) the list has this node only and the
//! membership operations answer 503.

use super::api::{error, AdminState};
use super::shards::ask_all;
use crate::limits;
use crate::metrics::ShardStats;
use crate::shard::{AdminAnswer, AdminQuery};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Whether a node is up, as EMQX's `node_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Running,
    /// Known to the membership but not reachable (failed or left).
    Stopped,
}

/// One node of `GET /api/v5/nodes`, field for field as EMQX 5's
/// `node_info` (the fields ringmq has; docs/admin-api.md). The figures a
/// stopped node cannot give are absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `node.name`, `name@host`.
    pub node: String,
    pub node_status: NodeStatus,
    /// `core` or `replicant` (`node.role`).
    pub role: String,
    /// MQTT connections open on the node (what the issue asks `ringmq ctl
    /// cluster status` to show; EMQX counts sessions here, see
    /// `sessions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// The same count under EMQX's name for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_connections: Option<u64>,
    /// Sessions held: connected clients and offline sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    /// The ringmq release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Milliseconds since the node started (EMQX: `uptime`, milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// The process's open-file limit (soft `RLIMIT_NOFILE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fds: Option<u64>,
    /// Resident memory of the process, EMQX-formatted (`"12.34M"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used: Option<String>,
    /// The host's load averages over 1, 5 and 15 minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load15: Option<f64>,
}

impl NodeInfo {
    /// A node the membership knows by name only (stopped, or nothing
    /// else known yet).
    pub fn named(node: &str, node_status: NodeStatus, role: &str) -> NodeInfo {
        NodeInfo {
            node: node.to_string(),
            node_status,
            role: role.to_string(),
            connections: None,
            live_connections: None,
            sessions: None,
            version: None,
            uptime: None,
            max_fds: None,
            memory_used: None,
            load1: None,
            load5: None,
            load15: None,
        }
    }
}

/// Why the cluster thread did not do what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The request cannot be done as given (400), e.g. an address that is
    /// this node's own.
    BadRequest(String),
    /// No such node in the membership (404).
    NotFound(String),
    /// The cluster thread cannot do it now (503).
    Unavailable(String),
}

/// What a cluster operation's future gives.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, ControlError>> + Send>>;

/// The cluster thread as the admin thread reaches it. Given at start
/// (`AdminState::with_cluster`); each call hands a request over and
/// returns at once, its answer comes through the future.
pub trait ClusterControl: Send + Sync + 'static {
    /// Every other node the membership knows, running or stopped, with
    /// the figures it has of them (the exchanged load figures).
    fn peers(&self) -> Pending<Vec<NodeInfo>>;
    /// Join the cluster a node listens for at `address` (its QUIC
    /// address, `host:port`). Only asked with `discovery_strategy =
    /// "manual"`.
    fn join(&self, address: String) -> Pending<()>;
    /// Leave the cluster: tell the peers and stop announcing this node.
    fn leave(&self) -> Pending<()>;
    /// Remove `node` (a stopped node, or one that does not answer) from
    /// the membership of every running node.
    fn force_leave(&self, node: String) -> Pending<()>;
    /// The counters of every peer link, by peer node name (Prometheus).
    /// Read from shared counters: no request to the cluster thread.
    fn peer_stats(&self) -> Vec<(String, crate::cluster::net::PeerStats)> {
        Vec::new()
    }
    /// Asks running peers about their MQTT clients (`CountClients`,
    /// `ListClients`, `Client`, `Kick`): the one named `node`, or every
    /// running peer. One entry per peer asked; a peer that gave no answer
    /// within `limits::CLUSTER_CLIENTS_TIMEOUT_MS` has `answer: None`.
    fn peer_clients(
        &self,
        node: Option<String>,
        query: AdminQuery,
    ) -> Pending<Vec<super::PeerClients>> {
        let _ = (node, query);
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// What the admin thread knows of the cluster and this node's place in it.
#[derive(Clone)]
pub struct ClusterAdmin {
    /// `cluster.name`.
    pub name: String,
    /// `cluster.discovery_strategy` as configured (`manual`, `static`,
    /// `dns`, `singleton`): only `manual` accepts join and leave requests.
    pub discovery_strategy: String,
    /// `node.role` of this node.
    pub role: String,
    /// The cluster thread, when it runs.
    pub control: Option<Arc<dyn ClusterControl>>,
}

impl Default for ClusterAdmin {
    /// The `[cluster]` defaults: a single node, no cluster thread.
    fn default() -> Self {
        ClusterAdmin {
            name: "ringmqcl".to_string(),
            discovery_strategy: "singleton".to_string(),
            role: "core".to_string(),
            control: None,
        }
    }
}

/// This node's entry: the shards' counts and the process's figures.
pub fn local_node(name: &str, role: &str, started_at: Instant, shards: &[ShardStats]) -> NodeInfo {
    let connections: u64 = shards.iter().map(|s| s.connections).sum();
    let (load1, load5, load15) =
        load_average().map_or((None, None, None), |(a, b, c)| (Some(a), Some(b), Some(c)));
    NodeInfo {
        connections: Some(connections),
        live_connections: Some(connections),
        sessions: Some(shards.iter().map(|s| s.sessions).sum()),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        uptime: Some(started_at.elapsed().as_millis() as u64),
        max_fds: max_fds(),
        memory_used: resident_bytes().map(kmg),
        load1,
        load5,
        load15,
        ..NodeInfo::named(name, NodeStatus::Running, role)
    }
}

/// The soft open-file limit.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

/// Resident set size, from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

fn load_average() -> Option<(f64, f64, f64)> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The first three fields of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

/// Bytes as EMQX writes memory sizes (`emqx_mgmt_util:kmg`): `"1.50G"`,
/// `"256.00M"`, `"12.00K"`, or the plain number below a KiB.
pub fn kmg(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b >= K * K * K {
        format!("{:.2}G", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.2}M", b / (K * K))
    } else if b >= K {
        format!("{:.2}K", b / K)
    } else {
        bytes.to_string()
    }
}

/// `ClusterControl` calls wait at most this long.
async fn bounded<T>(pending: Pending<T>) -> Result<T, ControlError> {
    match tokio::time::timeout(limits::ADMIN_CLUSTER_CALL_TIMEOUT, pending).await {
        Ok(answer) => answer,
        Err(_) => Err(ControlError::Unavailable(
            "the cluster thread gave no answer in time".to_string(),
        )),
    }
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", None, &m),
        ControlError::NotFound(m) => error(StatusCode::NOT_FOUND, "NOT_FOUND", None, &m),
        ControlError::Unavailable(m) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            None,
            &m,
        ),
    }
}

fn node_not_found() -> Response {
    // EMQX's answer for an unknown node.
    error(StatusCode::NOT_FOUND, "NOT_FOUND", None, "Node not found")
}

/// This node's entry, from the shards' answers.
async fn local(state: &AdminState) -> Result<NodeInfo, Response> {
    let answers = ask_all(&*state.shards, AdminQuery::Stats)
        .await
        .map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                None,
                &format!("the shards cannot answer now ({}); try again", e.0),
            )
        })?;
    let mut shards = Vec::with_capacity(answers.len());
    for a in answers {
        match a {
            AdminAnswer::Stats(s) => shards.push(*s),
            other => {
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    None,
                    &format!("a shard answered a statistics request with {other:?}"),
                ))
            }
        }
    }
    let cluster = &state.cluster;
    Ok(local_node(
        &state.node_name,
        &cluster.role,
        state.started_at,
        &shards,
    ))
}

/// Every node: this one first, then the peers the cluster thread knows
/// (without a cluster thread, this one only).
async fn all_nodes(state: &AdminState) -> Result<Vec<NodeInfo>, Response> {
    let mut nodes = vec![local(state).await?];
    if let Some(control) = &state.cluster.control {
        let peers = bounded(control.peers()).await.map_err(control_error)?;
        nodes.extend(peers.into_iter().filter(|p| p.node != state.node_name));
    }
    Ok(nodes)
}

/// `GET /api/v5/nodes`: a JSON array of every node.
pub async fn list_nodes(State(state): State<Arc<AdminState>>) -> Response {
    match all_nodes(&state).await {
        Ok(nodes) => Json(nodes).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/v5/nodes/{node}`: one node, or EMQX's 404.
pub async fn get_node(State(state): State<Arc<AdminState>>, Path(node): Path<String>) -> Response {
    if node == state.node_name {
        return match local(&state).await {
            Ok(info) => Json(info).into_response(),
            Err(response) => response,
        };
    }
    let Some(control) = &state.cluster.control else {
        return node_not_found();
    };
    match bounded(control.peers()).await {
        Ok(peers) => match peers.into_iter().find(|p| p.node == node) {
            Some(info) => Json(info).into_response(),
            None => node_not_found(),
        },
        Err(e) => control_error(e),
    }
}

/// `GET /api/v5/cluster`: EMQX's `name`, `nodes` (names) and `self`, plus
/// the discovery strategy (what decides whether `ctl cluster join` can be
/// used).
pub async fn get_cluster(State(state): State<Arc<AdminState>>) -> Response {
    let mut nodes = vec![state.node_name.clone()];
    if let Some(control) = &state.cluster.control {
        match bounded(control.peers()).await {
            Ok(peers) => nodes.extend(
                peers
                    .into_iter()
                    .map(|p| p.node)
                    .filter(|n| *n != state.node_name),
            ),
            Err(e) => return control_error(e),
        }
    }
    Json(json!({
        "name": state.cluster.name,
        "self": state.node_name,
        "nodes": nodes,
        "discovery_strategy": state.cluster.discovery_strategy,
    }))
    .into_response()
}

/// The cluster thread, when membership can be changed by hand: 400 unless
/// `discovery_strategy` is `manual`, 503 when the thread is not running
/// (boxed: a `Response` is large for an error).
fn manual_control(cluster: &ClusterAdmin) -> Result<Arc<dyn ClusterControl>, Box<Response>> {
    if cluster.discovery_strategy != "manual" {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            Some("cluster.discovery_strategy"),
            &format!(
                "this node finds its peers by cluster.discovery_strategy = \"{}\"; \
                 join, leave and force-leave need \"manual\"",
                cluster.discovery_strategy
            ),
        )));
    }
    cluster.control.clone().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            None,
            "cluster not running on this node",
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    address: String,
}

/// Checks `host:port` without resolving it (the cluster thread resolves).
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "address: invalid value {address:?}; allowed: host:port, the QUIC address \
             (cluster.bind) of a node of the cluster to join"
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = !host.is_empty()
        && host.len() <= limits::REDIRECT_HOST_LEN_MAX_BYTES
        && !host.chars().any(|c| c.is_whitespace() || c.is_control());
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn done(action: &str) -> Response {
    Json(json!({ "result": action })).into_response()
}

/// `PUT /api/v5/cluster/join` with `{"address": "host:port"}`: join the
/// cluster of the node whose QUIC endpoint is there.
pub async fn join(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let control = match manual_control(&state.cluster) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                None,
                &format!("the body must be {{\"address\": \"host:port\"}}: {e}"),
            )
        }
    };
    if let Err(message) = check_address(&request.address) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            Some("address"),
            &message,
        );
    }
    tracing::info!(address = %request.address, "cluster join requested through the admin API");
    match bounded(control.join(request.address)).await {
        Ok(()) => done("joined"),
        Err(e) => control_error(e),
    }
}

/// `PUT /api/v5/cluster/leave`: this node leaves its cluster.
pub async fn leave(State(state): State<Arc<AdminState>>) -> Response {
    let control = match manual_control(&state.cluster) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    tracing::info!("cluster leave requested through the admin API");
    match bounded(control.leave()).await {
        Ok(()) => done("left"),
        Err(e) => control_error(e),
    }
}

/// `DELETE /api/v5/cluster/{node}/force_leave` (EMQX's path): remove
/// another node from the cluster.
pub async fn force_leave(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Response {
    let control = match manual_control(&state.cluster) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    if node == state.node_name {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            Some("node"),
            "a node cannot force itself out; use leave (ringmq ctl cluster leave)",
        );
    }
    tracing::info!(%node, "cluster force-leave requested through the admin API");
    match bounded(control.force_leave(node)).await {
        Ok(()) => done("removed"),
        Err(e) => control_error(e),
    }
}

#[cfg(test)]
#[path = "nodes_tests.rs"]
mod tests;
