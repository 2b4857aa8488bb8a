//! Handlers, authentication and JSON of the admin API.

use super::nodes::ClusterAdmin;
use super::shards::AskShards;
use crate::admission::NodeAdmission;
use crate::authn::Authn;
use crate::config::{FieldError, ServerRedirectionConfig};
use crate::limits;
use crate::shard::{CallError, NodeHandle};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the API serves from. Built once in `main`.
pub struct AdminState {
    pub node_name: String,
    /// The shards' inboxes: views of shard state (`/api/v5/status`) are
    /// answers of the shards themselves, asked through these.
    pub node: NodeHandle,
    pub admission: Arc<NodeAdmission>,
    /// The live `[server_redirection]` as configured (the shards read its
    /// converted form from `admission`). Only this thread touches the
    /// mutex, and never across an await.
    redirection: Mutex<ServerRedirectionConfig>,
    /// `Basic base64(username:password)`, compared with each request's
    /// Authorization header.
    expected_authorization: Vec<u8>,
    /// The shards as the client and metrics handlers ask them: `node`
    /// behind a trait their tests can stand in for.
    pub shards: Arc<dyn AskShards>,
    /// `prometheus.enable_basic_auth`: the metrics need the credentials too.
    pub prometheus_basic_auth: bool,
    /// The cluster as the nodes API shows and changes it (`nodes.rs`).
    pub cluster: ClusterAdmin,
    /// When the node started (made at start, before the shards): the
    /// nodes API's `uptime`.
    pub started_at: Instant,
    /// `[authentication]` when configured (`authn.rs`): reload, built-in
    /// users, the failure counter.
    pub authn: Option<Arc<Authn>>,
    /// This node's evacuation (`rebalance.rs`).
    pub rebalancer: Option<Arc<crate::rebalance::Rebalancer>>,
    /// The Redis backend's counters, set once it started (after the API:
    /// the durable store opens later in `main`); empty otherwise.
    pub redis: RedisCountersSlot,
}

/// Where `main` puts the Redis thread's counters once it runs.
pub type RedisCountersSlot = Arc<std::sync::OnceLock<Arc<crate::durable::redis::RedisCounters>>>;

impl AdminState {
    pub fn new(
        node_name: String,
        username: &str,
        password: &str,
        redirection: ServerRedirectionConfig,
        admission: Arc<NodeAdmission>,
        node: NodeHandle,
        prometheus_basic_auth: bool,
    ) -> AdminState {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        AdminState {
            node_name,
            shards: Arc::new(node.clone()),
            node,
            admission,
            redirection: Mutex::new(redirection),
            expected_authorization: format!("Basic {token}").into_bytes(),
            prometheus_basic_auth,
            cluster: ClusterAdmin::default(),
            started_at: Instant::now(),
            authn: None,
            rebalancer: None,
            redis: RedisCountersSlot::default(),
        }
    }

    /// The slot the Redis backend's counters appear in
    /// (`durable_sessions.backend = "redis"`).
    pub fn with_redis(mut self, redis: RedisCountersSlot) -> AdminState {
        self.redis = redis;
        self
    }

    /// Node evacuation through `/api/v5/load_rebalance`.
    pub fn with_rebalancer(mut self, rebalancer: Arc<crate::rebalance::Rebalancer>) -> AdminState {
        self.rebalancer = Some(rebalancer);
        self
    }

    /// The node's authentication state, when `[authentication]` is set.
    pub fn with_authn(mut self, authn: Option<Arc<Authn>>) -> AdminState {
        self.authn = authn;
        self
    }

    /// The cluster's name, this node's role and discovery strategy, and
    /// the cluster thread when it runs (default: a single node).
    pub fn with_cluster(mut self, cluster: ClusterAdmin) -> AdminState {
        self.cluster = cluster;
        self
    }

    fn is_authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        constant_time_eq(given.as_bytes(), &self.expected_authorization)
    }
}

/// Compares without an early exit on the first differing byte, so the
/// time taken does not tell how much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's routes, authentication included.
pub fn router(state: Arc<AdminState>) -> Router {
    use super::{authn, clients, nodes, prometheus, rebalance};
    let metrics = Router::new().route("/api/v5/prometheus/stats", get(prometheus::stats));
    let mut protected = Router::new()
        .route(
            "/api/v5/config/server_redirection",
            get(get_redirection).put(put_redirection),
        )
        .route("/api/v5/status", get(get_status))
        .route("/api/v5/authentication/reload", post(authn::reload))
        .route(
            authn::USERS_PATH,
            get(authn::list_users).post(authn::add_user),
        )
        .route(
            &format!("{}/{{user_id}}", authn::USERS_PATH),
            get(authn::get_user)
                .put(authn::update_user)
                .delete(authn::delete_user),
        )
        .route("/api/v5/clients", get(clients::list_clients))
        .route(
            "/api/v5/clients/{clientid}",
            get(clients::get_client).delete(clients::kick_client),
        )
        .route(
            "/api/v5/clients/{clientid}/subscriptions",
            get(clients::get_client_subscriptions),
        )
        .route("/api/v5/subscriptions", get(clients::list_subscriptions))
        .route("/api/v5/nodes", get(nodes::list_nodes))
        .route("/api/v5/nodes/{node}", get(nodes::get_node))
        .route("/api/v5/cluster", get(nodes::get_cluster))
        .route("/api/v5/cluster/join", put(nodes::join))
        .route("/api/v5/cluster/leave", put(nodes::leave))
        .route(
            "/api/v5/cluster/{node}/force_leave",
            delete(nodes::force_leave),
        );
    // EMQX answers these under v5 and, from its 4.x API, under v4.
    for version in ["v5", "v4"] {
        let base = format!("/api/{version}/load_rebalance");
        protected = protected
            .route(&format!("{base}/status"), get(rebalance::status))
            .route(
                &format!("{base}/global_status"),
                get(rebalance::global_status),
            )
            .route(
                &format!("{base}/{{node}}/evacuation/start"),
                post(rebalance::evacuation_start),
            )
            .route(
                &format!("{base}/{{node}}/evacuation/stop"),
                post(rebalance::evacuation_stop),
            )
            .route(
                &format!("{base}/{{node}}/start"),
                post(rebalance::rebalance_start),
            )
            .route(
                &format!("{base}/{{node}}/stop"),
                post(rebalance::rebalance_stop),
            );
    }
    // Load balancers' health checks carry no credentials (EMQX's too).
    let mut availability = Router::new();
    for version in ["v5", "v4"] {
        availability = availability.route(
            &format!("/api/{version}/load_rebalance/availability_check"),
            get(rebalance::availability_check),
        );
    }
    let open = if state.prometheus_basic_auth {
        protected = protected.merge(metrics);
        availability
    } else {
        // A scraper without credentials, as EMQX's default.
        metrics.merge(availability)
    };
    let protected = protected
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    open.merge(protected)
        .layer(DefaultBodyLimit::max(limits::ADMIN_BODY_MAX_BYTES))
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.is_authorized(request.headers()) {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
        "HTTP basic authentication with api.username and api.password required",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"ringmq\""),
    );
    response
}

pub(super) fn error(
    status: StatusCode,
    code: &str,
    field: Option<&str>,
    message: &str,
) -> Response {
    let body = json!({ "code": code, "field": field, "message": message });
    (status, Json(body)).into_response()
}

fn bad_request(field: Option<&str>, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", field, message)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", None, "no such API path")
}

fn redirection_json(config: &ServerRedirectionConfig) -> Value {
    serde_json::to_value(config).expect("the config section serializes")
}

async fn get_redirection(State(state): State<Arc<AdminState>>) -> Response {
    let config = state.redirection.lock().expect("not poisoned").clone();
    Json(redirection_json(&config)).into_response()
}

/// Top-level fields of `[server_redirection]`, as the API accepts them.
const REDIRECTION_FIELDS: [&str; 4] = [
    "enable",
    "redirect_strategy",
    "max_connections",
    "redirect_servers",
];

async fn put_redirection(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(None, &format!("the body is not JSON: {e}")),
    };
    let Value::Object(patch) = patch else {
        return bad_request(
            None,
            "the body must be a JSON object with fields of server_redirection",
        );
    };
    if let Some(unknown) = patch
        .keys()
        .find(|k| !REDIRECTION_FIELDS.contains(&k.as_str()))
    {
        return bad_request(
            Some(unknown),
            &format!(
                "server_redirection.{unknown}: unknown field; known fields: {}",
                REDIRECTION_FIELDS.join(", ")
            ),
        );
    }
    let mut guard = state.redirection.lock().expect("not poisoned");
    let clustered = state.cluster.discovery_strategy != "singleton";
    let config = match apply_patch(&guard, patch, clustered) {
        Ok(c) => c,
        Err(e) => {
            let message = format!(
                "server_redirection.{}: invalid value {}; allowed: {}",
                e.field, e.value, e.allowed
            );
            return bad_request(Some(&e.field), &message);
        }
    };
    state.admission.set_config(config.to_redirection());
    tracing::info!(
        enable = config.enable,
        redirect_strategy = config.redirect_strategy.as_str(),
        max_connections = config.max_connections,
        redirect_servers = config.redirect_servers.len(),
        "server_redirection replaced through the admin API"
    );
    *guard = config.clone();
    drop(guard);
    Json(redirection_json(&config)).into_response()
}

/// The current section with the patch's fields replaced, read by the same
/// field readers as the config file and checked by the same `validate`.
fn apply_patch(
    current: &ServerRedirectionConfig,
    patch: Map<String, Value>,
    clustered: bool,
) -> Result<ServerRedirectionConfig, FieldError> {
    let Value::Object(mut merged) = redirection_json(current) else {
        unreachable!("a struct serializes to an object")
    };
    merged.extend(patch);
    let config: ServerRedirectionConfig = serde_path_to_error::deserialize(Value::Object(merged))
        .map_err(|e| {
        let path = json_path(e.path());
        let inner = e.into_inner().to_string();
        if let Some(name) = unknown_field(&inner) {
            // The path ends at the unknown key, or (serde's choice) at
            // its parent.
            let field = if path == name || path.ends_with(&format!(".{name}")) {
                path
            } else if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let known = inner.split_once(", expected ").map_or("", |(_, k)| k);
            return FieldError {
                field,
                value: format!("unknown field `{name}`"),
                allowed: known.to_string(),
            };
        }
        if let Some(name) = quoted_after(&inner, "missing field `") {
            return FieldError {
                field: if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                },
                value: "nothing".to_string(),
                allowed: "a value: this field is required".to_string(),
            };
        }
        let (value, allowed) = split_serde_message(&inner);
        FieldError {
            field: path,
            value,
            allowed,
        }
    })?;
    config.validate_in(clustered)?;
    Ok(config)
}

/// `redirect_servers[1].port` from serde_path_to_error's path.
fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// serde's "unknown field `x`, expected ..." names the field; the path
/// stops at its parent.
fn unknown_field(message: &str) -> Option<String> {
    quoted_after(message, "unknown field `")
}

/// The name in serde's "<prefix>name`...".
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde's "invalid value: integer `0`, expected an integer from 1 to 5"
/// as (value, allowed).
fn split_serde_message(message: &str) -> (String, String) {
    match message.split_once(", expected ") {
        Some((value, allowed)) => (
            value
                .trim_start_matches("invalid value: ")
                .trim_start_matches("invalid type: ")
                .to_string(),
            allowed.to_string(),
        ),
        None => (String::new(), message.to_string()),
    }
}

/// The answer when a shard cannot answer: 503 for a full inbox, a stopping
/// shard or one that took longer than `ADMIN_SHARD_CALL_TIMEOUT`.
fn shard_unavailable(why: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        None,
        &format!("the shards cannot answer now ({why}); try again"),
    )
}

/// Asks every shard, bounded by `ADMIN_SHARD_CALL_TIMEOUT`.
async fn ask_shards<R: Send + 'static>(
    node: &NodeHandle,
    f: impl Fn(&crate::shard::ShardContext) -> R + Send + Sync + 'static,
) -> Result<Vec<R>, Response> {
    match tokio::time::timeout(limits::ADMIN_SHARD_CALL_TIMEOUT, node.call_all(f)).await {
        Ok(Ok(replies)) => Ok(replies),
        Ok(Err(e @ (CallError::Full | CallError::Stopped | CallError::NoSuchShard))) => {
            Err(shard_unavailable(&e.to_string()))
        }
        Err(_) => Err(shard_unavailable("no answer in time")),
    }
}

async fn get_status(State(state): State<Arc<AdminState>>) -> Response {
    let statuses = match ask_shards(&state.node, |shard| shard.status()).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let mut total = 0usize;
    let shards: Vec<Value> = statuses
        .iter()
        .map(|status| {
            let s = status.admission;
            total += status.connections;
            json!({
                "id": status.id,
                "connections": status.connections,
                "sessions": status.sessions,
                "retained_messages": status.retained_messages,
                "accepted": s.accepted,
                "redirected": {
                    "use_another_server": s.redirected_use_another_server,
                    "server_moved": s.redirected_server_moved,
                },
                "refused": {
                    "quota_exceeded": s.refused_quota_exceeded,
                    "server_unavailable": s.refused_server_unavailable,
                },
            })
        })
        .collect();
    let redirection = state.admission.config();
    Json(json!({
        "node": state.node_name,
        "version": env!("CARGO_PKG_VERSION"),
        "shards": shards,
        "connections": total,
        "node_connections": state.admission.connections.load(),
        "server_redirection": {
            "enable": redirection.enable,
            "max_connections": redirection.max_connections,
        },
    }))
    .into_response()
}
