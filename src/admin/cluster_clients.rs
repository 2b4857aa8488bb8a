//! `GET /api/v5/clients`, `GET|DELETE /api/v5/clients/{clientid}` for the
//! whole cluster (issue 13, item 6): this node's shards as before, and
//! every running peer asked through the cluster driver
//! ([`ClusterControl::peer_clients`], which sends a `ClientsQuery` frame on
//! each peer's control stream; `cluster::driver::query`).
//!
//! The listing is the union in a fixed order: this node's sessions (its
//! shards in order), then each answering peer's, by node name. Paging
//! (`page`, `limit`) runs over that union with each node's count, like a
//! node's listing runs over its shards'; `meta.count` is the union's size.
//! Each entry's `node` is the node holding the session. A peer that does
//! not answer within `limits::CLUSTER_CLIENTS_TIMEOUT_MS` is left out and
//! named in `meta.unavailable_nodes` (present on a clustered node, empty
//! when every peer answered).
//!
//! The other side, a peer's question answered from this node's shards, is
//! `node_*` below (the driver calls them).

use super::api::AdminState;
use super::clients::{
    bad_client_id, bad_paging, client_json, client_not_found, find, list_range, parse_paging,
    unavailable, unexpected,
};
use super::nodes::ClusterControl;
use super::shards::{plan_page, AskShards, Unavailable};
use crate::limits;
use crate::metrics::ClientInfo;
use crate::shard::{AdminAnswer, AdminQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// One peer's answer to a clients question; `answer: None` when it gave
/// none in time (or its shards could not answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerClients {
    /// The peer's node name.
    pub node: String,
    pub answer: Option<AdminAnswer>,
}

// ------------------------------------------------------------ a peer asks

/// How many sessions this node holds (every shard's).
pub async fn node_count(shards: &dyn AskShards) -> Result<usize, Unavailable> {
    let (_, count) = node_list(shards, 0, 0).await?;
    Ok(count)
}

/// Sessions `skip .. skip + take` of this node's listing, and its count.
pub async fn node_list(
    shards: &dyn AskShards,
    skip: usize,
    take: usize,
) -> Result<(Vec<ClientInfo>, usize), Unavailable> {
    list_range(
        shards,
        AdminQuery::CountClients,
        |skip, take| AdminQuery::ListClients { skip, take },
        |answer| match answer {
            AdminAnswer::Clients(c) => Ok(c),
            other => Err(unexpected(&other)),
        },
        skip,
        take,
    )
    .await
}

/// One client's record, if its session is on this node.
pub async fn node_get(
    shards: &dyn AskShards,
    client_id: String,
) -> Result<Option<ClientInfo>, Unavailable> {
    find(shards, AdminQuery::Client(client_id), |a| match a {
        AdminAnswer::Client(c) => Ok(c),
        other => Err(unexpected(&other)),
    })
    .await
}

/// Kicks the client if its session is on this node.
pub async fn node_kick(shards: &dyn AskShards, client_id: String) -> Result<bool, Unavailable> {
    let kicked = find(shards, AdminQuery::Kick(client_id), |a| match a {
        AdminAnswer::Kicked(true) => Ok(Some(())),
        AdminAnswer::Kicked(false) => Ok(None),
        other => Err(unexpected(&other)),
    })
    .await?;
    Ok(kicked.is_some())
}

// ------------------------------------------------------------ this node asks

/// The peers' answers, or a 503 when the cluster driver cannot take the
/// question.
async fn ask_peers(
    control: &dyn ClusterControl,
    node: Option<String>,
    query: AdminQuery,
) -> Result<Vec<PeerClients>, Response> {
    control.peer_clients(node, query).await.map_err(|e| {
        unavailable(Unavailable(format!(
            "the cluster cannot answer for the other nodes: {e:?}"
        )))
    })
}

/// Rows `skip .. skip + take` of one peer's listing, asked in answers of at
/// most `CLUSTER_CLIENTS_ANSWER_MAX`; `None` if the peer stopped answering.
async fn peer_rows(
    control: &dyn ClusterControl,
    node: &str,
    mut skip: usize,
    mut take: usize,
) -> Result<Option<Vec<ClientInfo>>, Response> {
    let mut rows = Vec::new();
    while take > 0 {
        let query = AdminQuery::ListClients {
            skip,
            take: take.min(limits::CLUSTER_CLIENTS_ANSWER_MAX),
        };
        let answers = ask_peers(control, Some(node.to_string()), query).await?;
        match answers.into_iter().next().and_then(|a| a.answer) {
            Some(AdminAnswer::Clients(got)) if got.is_empty() => break, // fewer now
            Some(AdminAnswer::Clients(got)) => {
                let n = got.len().min(take);
                skip += n;
                take -= n;
                rows.extend(got.into_iter().take(n));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(rows))
}

/// `GET /api/v5/clients` on a clustered node.
pub async fn list(
    state: &AdminState,
    control: &dyn ClusterControl,
    query: Option<&str>,
) -> Response {
    let paging = match parse_paging(query) {
        Ok(p) => p,
        Err(e) => return bad_paging(e),
    };
    let local_count = match node_count(&*state.shards).await {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    let mut peers = match ask_peers(control, None, AdminQuery::CountClients).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    peers.sort_by(|a, b| a.node.cmp(&b.node));
    let mut missing = Vec::new();
    let mut sources = vec![(state.node_name.clone(), local_count)];
    for p in peers {
        match p.answer {
            Some(AdminAnswer::Count(n)) => sources.push((p.node, n)),
            _ => missing.push(p.node),
        }
    }
    let counts: Vec<usize> = sources.iter().map(|(_, n)| *n).collect();
    let mut data: Vec<Value> = Vec::new();
    for (source, skip, take) in plan_page(&counts, paging.skip(), paging.limit) {
        let name = &sources[source].0;
        let rows = if source == 0 {
            match node_list(&*state.shards, skip, take).await {
                Ok((rows, _)) => rows,
                Err(e) => return unavailable(e),
            }
        } else {
            match peer_rows(control, name, skip, take).await {
                Ok(Some(rows)) => rows,
                Ok(None) => {
                    missing.push(name.clone());
                    continue;
                }
                Err(r) => return r,
            }
        };
        data.extend(rows.iter().take(take).map(|c| client_json(c, name)));
    }
    data.truncate(paging.limit);
    let count: usize = counts.iter().sum();
    missing.sort();
    missing.dedup();
    let hasnext = paging.skip().saturating_add(data.len()) < count;
    Json(json!({
        "data": data,
        "meta": {
            "page": paging.page,
            "limit": paging.limit,
            "count": count,
            "hasnext": hasnext,
            "unavailable_nodes": missing,
        },
    }))
    .into_response()
}

/// `GET /api/v5/clients/{clientid}` on a clustered node: this node first,
/// then the peers.
pub async fn get(state: &AdminState, control: &dyn ClusterControl, id: String) -> Response {
    if let Some(r) = bad_client_id(&id) {
        return r;
    }
    match node_get(&*state.shards, id.clone()).await {
        Ok(Some(c)) => return Json(client_json(&c, &state.node_name)).into_response(),
        Ok(None) => {}
        Err(e) => return unavailable(e),
    }
    let peers = match ask_peers(control, None, AdminQuery::Client(id)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    for p in peers {
        if let Some(AdminAnswer::Client(Some(c))) = p.answer {
            return Json(client_json(&c, &p.node)).into_response();
        }
    }
    client_not_found()
}

/// `DELETE /api/v5/clients/{clientid}` on a clustered node: kicked where
/// its session is, this node or a peer.
pub async fn kick(state: &AdminState, control: &dyn ClusterControl, id: String) -> Response {
    if let Some(r) = bad_client_id(&id) {
        return r;
    }
    match node_kick(&*state.shards, id.clone()).await {
        Ok(true) => return StatusCode::NO_CONTENT.into_response(),
        Ok(false) => {}
        Err(e) => return unavailable(e),
    }
    let peers = match ask_peers(control, None, AdminQuery::Kick(id)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if peers
        .iter()
        .any(|p| p.answer == Some(AdminAnswer::Kicked(true)))
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    client_not_found()
}

#[cfg(test)]
#[path = "cluster_clients_tests.rs"]
mod tests;
