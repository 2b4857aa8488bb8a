//! `/api/v5/load_rebalance/...` (and the same under `/api/v4/`): node
//! evacuation as EMQX's API has it (`src/rebalance`).
//!
//! - `GET status`: this node's evacuation (`{"status": "disabled"}` or
//!   `"enabled"` with `process`, `state`, rates, goals and `stats`).
//! - `GET global_status`: `{"evacuations": [...], "rebalances": [...]}`.
//! - `GET availability_check`: 200 `{}` while the node takes clients,
//!   503 while it is evacuated (for load balancers; no authentication).
//! - `POST {node}/evacuation/start` (JSON body, EMQX's fields) and
//!   `POST {node}/evacuation/stop`.

use super::api::{error, AdminState};
use super::nodes::NodeStatus;
use crate::rebalance::{EvacuationParams, StartError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn bad_request(field: Option<&str>, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", field, message)
}

pub async fn status(State(state): State<Arc<AdminState>>) -> Response {
    match &state.rebalancer {
        Some(r) => Json(r.status()).into_response(),
        None => Json(json!({ "status": "disabled" })).into_response(),
    }
}

pub async fn global_status(State(state): State<Arc<AdminState>>) -> Response {
    let evacuations: Vec<Value> = state
        .rebalancer
        .as_ref()
        .and_then(|r| r.evacuation_entry())
        .into_iter()
        .collect();
    Json(json!({ "evacuations": evacuations, "rebalances": [] })).into_response()
}

pub async fn availability_check(State(state): State<Arc<AdminState>>) -> Response {
    if state.admission.is_available() {
        Json(json!({})).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NODE_EVACUATING",
            None,
            "Node Evacuating",
        )
    }
}

/// The node a request names must be this one, running. Another running
/// node is evacuated through its own API.
async fn this_node(state: &AdminState, node: &str) -> Result<(), Response> {
    if node == state.node_name {
        return Ok(());
    }
    let peers = match &state.cluster.control {
        Some(control) => control.peers().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let running = peers
        .iter()
        .any(|p| p.node == node && p.node_status == NodeStatus::Running);
    let message = if running {
        format!("{node} is another node: send this request to its own API")
    } else {
        format!("node {node} is not running")
    };
    Err(bad_request(Some("node"), &message))
}

/// `migrate_to` must name running nodes other than this one.
async fn check_migrate_to(state: &AdminState, params: &EvacuationParams) -> Result<(), Response> {
    if params.migrate_to.is_empty() {
        return Ok(());
    }
    let peers = match &state.cluster.control {
        Some(control) => control.peers().await.unwrap_or_default(),
        None => Vec::new(),
    };
    for name in &params.migrate_to {
        let running = peers
            .iter()
            .any(|p| &p.node == name && p.node_status == NodeStatus::Running);
        if !running {
            return Err(bad_request(
                Some("migrate_to"),
                &format!("migrate_to: node {name} is not a running node of the cluster other than this one"),
            ));
        }
    }
    Ok(())
}

pub async fn evacuation_start(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = this_node(&state, &node).await {
        return r;
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_request(None, &format!("the body is not JSON: {e}")),
        }
    };
    let params = match EvacuationParams::from_json(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(Some(&e.field), &e.message),
    };
    if let Err(r) = check_migrate_to(&state, &params).await {
        return r;
    }
    let Some(rebalancer) = &state.rebalancer else {
        return bad_request(None, "evacuation is not available on this node");
    };
    match rebalancer.start_evacuation(params).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(StartError::Storage(m)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            None,
            &m,
        ),
        Err(e) => bad_request(None, &e.to_string()),
    }
}

pub async fn evacuation_stop(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Response {
    if let Err(r) = this_node(&state, &node).await {
        return r;
    }
    let Some(rebalancer) = &state.rebalancer else {
        return bad_request(None, "no evacuation is running on this node");
    };
    match rebalancer.stop_evacuation() {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => bad_request(None, &e.to_string()),
    }
}
