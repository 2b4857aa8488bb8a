//! The admin HTTP API, on its own OS thread with a current-thread tokio
//! runtime (axum): a control plane that never runs on a shard's executor
//! and is not pinned to a shard's CPU. It reads and replaces the shared
//! lock-free admission state (`admission::NodeAdmission`) and asks the
//! shards for their state through their inboxes (`shard::NodeHandle`: a
//! full inbox, a stopping shard or no answer within
//! `limits::ADMIN_SHARD_CALL_TIMEOUT` is a 503); the shards never wait for
//! it.
//!
//! Routes (behind HTTP basic auth, `api.username` / `api.password`, except
//! the Prometheus endpoint by default):
//! - `GET /api/v5/config/server_redirection`: the live `[server_redirection]`.
//! - `PUT /api/v5/config/server_redirection`: a JSON object with any subset
//!   of its fields; validated like the config file
//!   (`ServerRedirectionConfig::validate`) and applied to every shard at
//!   once. `redirect_servers`, when given, replaces the whole list.
//! - `GET /api/v5/status`: node name, version, per-shard connections,
//!   sessions, retained messages and admission counters, as the shards
//!   answer.
//! - `GET /api/v5/clients`, `GET|DELETE /api/v5/clients/{clientid}`,
//!   `GET /api/v5/clients/{clientid}/subscriptions`,
//!   `GET /api/v5/subscriptions`: EMQX 5's client management, answered
//!   by the shards (`clients.rs`, `shards.rs`); on a clustered node the
//!   clients routes answer for every running node (`cluster_clients.rs`).
//! - `GET /api/v5/nodes`, `GET /api/v5/nodes/{node}`, `GET /api/v5/cluster`,
//!   `PUT /api/v5/cluster/join`, `PUT /api/v5/cluster/leave`,
//!   `DELETE /api/v5/cluster/{node}/force_leave`: the cluster's nodes and
//!   its manual membership (`nodes.rs`; `ringmq ctl cluster ...`).
//! - `POST /api/v5/authentication/reload` and the built-in database's users
//!   `/api/v5/authentication/password_based:built_in_database/users[/{id}]`
//!   (`authn.rs`).
//! - `/api/v5/load_rebalance/...` (and `/api/v4/...`): node evacuation,
//!   its status and the load balancers' `availability_check` (no
//!   authentication) (`rebalance.rs`).
//! - `GET /api/v5/prometheus/stats`: the shards' statistics in Prometheus's
//!   text format; without authentication unless
//!   `prometheus.enable_basic_auth` (`prometheus.rs`).
//!
//! docs/admin-api.md describes every route, field and metric.
//!
//! Errors are JSON: `{"code": "BAD_REQUEST", "field": "redirect_strategy",
//! "message": "server_redirection.redirect_strategy: ..."}`.

mod api;
mod authn;
mod clients;
mod cluster_clients;
mod nodes;
mod prometheus;
mod rebalance;
mod shards;

pub use api::{router, AdminState, RedisCountersSlot};
pub use cluster_clients::{node_count, node_get, node_kick, node_list, PeerClients};
pub use nodes::{kmg, ClusterAdmin, ClusterControl, ControlError, NodeInfo, NodeStatus, Pending};
pub use shards::{AskShards, Asked, Unavailable};

use crate::config::ApiConfig;
use std::net::TcpListener;
use std::sync::Arc;

/// Binds the API's address now (so a taken address stops the start with a
/// clear message) and serves it on a new thread named `ringmq-admin`.
pub fn start(config: &ApiConfig, state: Arc<AdminState>) -> std::io::Result<()> {
    let bind = config.bind;
    let listener = TcpListener::bind(bind)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind api.bind {bind}: {e}")))?;
    listener.set_nonblocking(true)?;
    let state_for_resume = state.rebalancer.clone();
    let app = router(state);
    std::thread::Builder::new()
        .name("ringmq-admin".to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "admin API: cannot start its runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                if let Some(r) = &state_for_resume {
                    r.spawn_services();
                }
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "admin API: cannot use its socket");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "admin API stopped");
                }
            });
        })?;
    tracing::info!(%bind, "admin API listening");
    Ok(())
}
