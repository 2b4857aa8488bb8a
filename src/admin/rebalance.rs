//! `/api/v5/load_rebalance/...` (and the same under `/api/v4/`): node
//! evacuation and cluster rebalance as EMQX's API has them
//! (`src/rebalance`).
//!
//! - `GET status`: this node's evacuation or rebalance (`{"status":
//!   "disabled"}` or `"enabled"` with `process`, `state`, rates, goals and
//!   `stats`).
//! - `GET global_status`: `{"evacuations": [...], "rebalances": [...]}` of
//!   every running node (a node that does not answer is left out and
//!   named in `unavailable_nodes`).
//! - `GET availability_check`: 200 `{}` while the node takes clients,
//!   503 while it is evacuated or a rebalance donor (for load balancers;
//!   no authentication).
//! - `POST {node}/evacuation/start` (JSON body, EMQX's fields),
//!   `POST {node}/evacuation/stop`, `POST {node}/start` (the node
//!   coordinates a rebalance) and `POST {node}/stop`: for this node or,
//!   over the cluster, for another running one.

use super::api::{error, AdminState};
use crate::rebalance::peer::{Answer, Failure, PeerCommand};
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

fn respond(answer: Answer) -> Response {
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(f) => error(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &f.code,
            f.field.as_deref(),
            &f.message,
        ),
    }
}

pub async fn status(State(state): State<Arc<AdminState>>) -> Response {
    match &state.rebalancer {
        Some(r) => Json(r.status()).into_response(),
        None => Json(json!({ "status": "disabled" })).into_response(),
    }
}

pub async fn global_status(State(state): State<Arc<AdminState>>) -> Response {
    let Some(r) = &state.rebalancer else {
        return Json(json!({ "evacuations": [], "rebalances": [] })).into_response();
    };
    let nodes = r.running_nodes().await;
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let r = r.clone();
        set.spawn(async move {
            let answer = r.ask(&node, PeerCommand::Status).await;
            (i, node, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(Ok(a)) = set.join_next().await {
        answers.push(a);
    }
    answers.sort_by_key(|(i, _, _)| *i);
    let (mut evacuations, mut rebalances, mut unavailable) = (Vec::new(), Vec::new(), Vec::new());
    for (_, node, answer) in answers {
        match answer {
            Ok(v) => {
                for (key, list) in [
                    ("evacuation", &mut evacuations),
                    ("rebalance", &mut rebalances),
                ] {
                    if let Some(e) = v.get(key).filter(|e| !e.is_null()) {
                        list.push(e.clone());
                    }
                }
            }
            Err(_) => unavailable.push(node),
        }
    }
    let mut body = json!({ "evacuations": evacuations, "rebalances": rebalances });
    if !unavailable.is_empty() {
        body["unavailable_nodes"] = json!(unavailable);
    }
    Json(body).into_response()
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

/// The JSON body (none: `null`, every default), or why it is not JSON.
fn parse_body(body: &Bytes) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// `command` for node `node`: served here, or by that node over the
/// cluster; a node that is not running gets a 400 naming it.
async fn command(state: &AdminState, node: &str, command: PeerCommand) -> Response {
    let Some(r) = &state.rebalancer else {
        return bad_request(
            None,
            "evacuation and rebalance are not available on this node",
        );
    };
    if node != state.node_name && !r.running_nodes().await.iter().any(|n| n == node) {
        return respond(Err(Failure::bad_request(
            Some("node"),
            format!("node {node} is not running"),
        )));
    }
    respond(r.ask(node, command).await)
}

pub async fn evacuation_start(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(body) => command(&state, &node, PeerCommand::EvacuationStart { body }).await,
        Err(m) => bad_request(None, &m),
    }
}

pub async fn evacuation_stop(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Response {
    command(&state, &node, PeerCommand::EvacuationStop).await
}

pub async fn rebalance_start(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(body) => command(&state, &node, PeerCommand::RebalanceStart { body }).await,
        Err(m) => bad_request(None, &m),
    }
}

pub async fn rebalance_stop(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Response {
    command(&state, &node, PeerCommand::RebalanceStop).await
}
