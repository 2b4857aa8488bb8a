//! `GET /api/v5/prometheus/stats`: every shard's statistics in the
//! Prometheus text format (`metrics::prometheus`). Open by default, like
//! EMQX's; `prometheus.enable_basic_auth = true` puts it behind the API's
//! credentials (`api::router`). A clustered node adds a series per peer
//! link (`peer="name@host"`).

use super::api::{error, AdminState};
use super::shards::ask_all;
use crate::metrics::{prometheus, ShardStats};
use crate::shard::AdminAnswer;
use crate::shard::AdminQuery;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn stats(State(state): State<Arc<AdminState>>) -> Response {
    let answers = match ask_all(&*state.shards, AdminQuery::Stats).await {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                None,
                &format!("the shards cannot answer now ({}); try again", e.0),
            )
        }
    };
    let mut shards: Vec<ShardStats> = Vec::with_capacity(answers.len());
    for a in answers {
        match a {
            AdminAnswer::Stats(s) => shards.push(*s),
            other => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    None,
                    &format!("a shard answered a statistics request with {other:?}"),
                )
            }
        }
    }
    let mut text = prometheus::render(&shards);
    if let Some(control) = &state.cluster.control {
        prometheus::render_peers(&mut text, &control.peer_stats());
    }
    if let Some(redis) = state.redis.get() {
        prometheus::render_redis(&mut text, &redis.snapshot());
    }
    // Node-wide, kept by the password workers rather than the shards.
    let failures = state.authn.as_ref().map_or(0, |a| a.failures_total());
    text.push_str(&format!(
        "# HELP ringmq_authentication_failures_total CONNECTs refused by authentication: \
         unknown user or wrong password, throttled address, anonymous when not allowed.
\
         # TYPE ringmq_authentication_failures_total counter
\
         ringmq_authentication_failures_total {failures}
"
    ));
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response()
}
