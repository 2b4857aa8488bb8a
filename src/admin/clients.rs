//! `/api/v5/clients` and `/api/v5/subscriptions`: EMQX 5's client
//! management API, answered by asking the shards (`shards.rs`).
//!
//! Listings are paged like EMQX's: `?page=1&limit=100`, answered as
//! `{"data": [...], "meta": {"page", "limit", "count", "hasnext"}}`, where
//! `count` is the node-wide total. The order is shard 0's sessions, then
//! shard 1's, and so on, each shard in the order of its session map, which
//! stays the same while no session comes or goes (like EMQX's table order).
//! On a clustered node the clients routes answer for every running node
//! (`cluster_clients.rs`).

use super::api::{error, AdminState};
use super::shards::{ask, ask_all, plan_page, AskShards, Unavailable};
use crate::limits;
use crate::metrics::{ClientInfo, SubscriptionInfo};
use crate::shard::{AdminAnswer, AdminQuery};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// `page` and `limit` of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1-based.
    pub page: usize,
    pub limit: usize,
}

impl Paging {
    pub(super) fn skip(&self) -> usize {
        (self.page - 1).saturating_mul(self.limit)
    }
}

/// Reads `page` and `limit` from a query string; anything else, or a value
/// out of range, is a message for a 400 naming the parameter.
pub fn parse_paging(query: Option<&str>) -> Result<Paging, (&'static str, String)> {
    let mut paging = Paging {
        page: 1,
        limit: limits::ADMIN_PAGE_LIMIT_DEFAULT,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, max, slot): (&'static str, usize, &mut usize) = match key {
            "page" => ("page", limits::ADMIN_PAGE_MAX, &mut paging.page),
            "limit" => ("limit", limits::ADMIN_PAGE_LIMIT_MAX, &mut paging.limit),
            other => {
                return Err((
                    "query",
                    format!("unknown query parameter {other:?}; known: page, limit"),
                ))
            }
        };
        *slot = value
            .parse::<usize>()
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                (
                    name,
                    format!("{name}: invalid value {value:?}; allowed: an integer from 1 to {max}"),
                )
            })?;
    }
    Ok(paging)
}

pub(super) fn unavailable(e: Unavailable) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        None,
        &format!("the shards cannot answer now ({}); try again", e.0),
    )
}

pub(super) fn client_not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "CLIENTID_NOT_FOUND",
        None,
        "Client ID not found",
    )
}

pub(super) fn unexpected(answer: &AdminAnswer) -> Unavailable {
    Unavailable(format!("a shard answered out of turn: {answer:?}"))
}

pub(super) fn count_of(answer: AdminAnswer) -> Result<usize, Unavailable> {
    match answer {
        AdminAnswer::Count(n) => Ok(n),
        other => Err(unexpected(&other)),
    }
}

/// One page of a node-wide listing: each shard's count, then the rows of
/// the shards the page touches. Returns (rows, node-wide count).
async fn list_page<T>(
    shards: &dyn AskShards,
    count: AdminQuery,
    list: impl Fn(usize, usize) -> AdminQuery,
    rows_of: impl Fn(AdminAnswer) -> Result<Vec<T>, Unavailable>,
    paging: Paging,
) -> Result<(Vec<T>, usize), Unavailable> {
    list_range(shards, count, list, rows_of, paging.skip(), paging.limit).await
}

/// Rows `skip .. skip + limit` of a node-wide listing, and its count.
pub(super) async fn list_range<T>(
    shards: &dyn AskShards,
    count: AdminQuery,
    list: impl Fn(usize, usize) -> AdminQuery,
    rows_of: impl Fn(AdminAnswer) -> Result<Vec<T>, Unavailable>,
    skip: usize,
    limit: usize,
) -> Result<(Vec<T>, usize), Unavailable> {
    let counts = ask_all(shards, count)
        .await?
        .into_iter()
        .map(count_of)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for (shard, skip, take) in plan_page(&counts, skip, limit) {
        rows.extend(rows_of(ask(shards, shard, list(skip, take)).await?)?);
    }
    // Sessions that came or went between the two questions can make a
    // page a little shorter or longer than the plan; never longer than
    // the limit.
    rows.truncate(limit);
    Ok((rows, counts.iter().sum()))
}

pub(super) fn page_json(data: Vec<Value>, paging: Paging, count: usize) -> Response {
    let hasnext = paging.skip().saturating_add(data.len()) < count;
    Json(json!({
        "data": data,
        "meta": {
            "page": paging.page,
            "limit": paging.limit,
            "count": count,
            "hasnext": hasnext,
        },
    }))
    .into_response()
}

pub(super) fn bad_paging((field, message): (&'static str, String)) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        Some(field),
        &message,
    )
}

pub(super) fn client_json(c: &ClientInfo, node: &str) -> Value {
    serde_json::to_value(c.to_json(node)).expect("a client record serializes")
}

fn subscription_json(s: &SubscriptionInfo, node: &str) -> Value {
    serde_json::to_value(s.to_json(node)).expect("a subscription record serializes")
}

/// What sets one node-wide listing apart from another: the questions each
/// shard is asked and how a row becomes JSON. Paging, asking and the
/// answer's shape are `serve_listing`'s, the same for every listing.
struct Listing<T> {
    count: AdminQuery,
    list: fn(usize, usize) -> AdminQuery,
    /// The rows of a shard's answer; any other answer is out of turn.
    rows_of: fn(AdminAnswer) -> Result<Vec<T>, Unavailable>,
    to_json: fn(&T, &str) -> Value,
}

/// Answers a paged listing: 400 for bad paging, 503 when a shard cannot
/// answer, else one page of rows.
async fn serve_listing<T>(
    state: &AdminState,
    query: Option<&str>,
    listing: Listing<T>,
) -> Response {
    let paging = match parse_paging(query) {
        Ok(p) => p,
        Err(e) => return bad_paging(e),
    };
    let listed = list_page(
        &*state.shards,
        listing.count,
        listing.list,
        listing.rows_of,
        paging,
    )
    .await;
    match listed {
        Ok((rows, count)) => {
            let data = rows
                .iter()
                .map(|row| (listing.to_json)(row, &state.node_name))
                .collect();
            page_json(data, paging, count)
        }
        Err(e) => unavailable(e),
    }
}

/// `GET /api/v5/clients` (the whole cluster's on a clustered node:
/// `cluster_clients.rs`)
pub async fn list_clients(State(state): State<Arc<AdminState>>, RawQuery(q): RawQuery) -> Response {
    if let Some(control) = state.cluster.control.clone() {
        return super::cluster_clients::list(&state, &*control, q.as_deref()).await;
    }
    let listing = Listing {
        count: AdminQuery::CountClients,
        list: |skip, take| AdminQuery::ListClients { skip, take },
        rows_of: |answer| match answer {
            AdminAnswer::Clients(c) => Ok(c),
            other => Err(unexpected(&other)),
        },
        to_json: client_json,
    };
    serve_listing(&state, q.as_deref(), listing).await
}

/// `GET /api/v5/subscriptions`
pub async fn list_subscriptions(
    State(state): State<Arc<AdminState>>,
    RawQuery(q): RawQuery,
) -> Response {
    let listing = Listing {
        count: AdminQuery::CountSubscriptions,
        list: |skip, take| AdminQuery::ListSubscriptions { skip, take },
        rows_of: |answer| match answer {
            AdminAnswer::Subscriptions(Some(s)) => Ok(s),
            other => Err(unexpected(&other)),
        },
        to_json: subscription_json,
    };
    serve_listing(&state, q.as_deref(), listing).await
}

/// Asks the shards in turn until one answers for `client_id`.
pub(super) async fn find<T>(
    shards: &dyn AskShards,
    query: AdminQuery,
    found: impl Fn(AdminAnswer) -> Result<Option<T>, Unavailable>,
) -> Result<Option<T>, Unavailable> {
    for s in 0..shards.shard_count() {
        if let Some(t) = found(ask(shards, s, query.clone()).await?)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// A 400 for a client id no MQTT client can have; `None` for any other.
pub(super) fn bad_client_id(id: &str) -> Option<Response> {
    (id.len() > limits::CLIENT_ID_LEN_MAX_BYTES as usize).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            Some("clientid"),
            "clientid: longer than an MQTT client id can be (65535 bytes)",
        )
    })
}

/// `GET /api/v5/clients/{clientid}`
pub async fn get_client(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    if let Some(control) = state.cluster.control.clone() {
        return super::cluster_clients::get(&state, &*control, id).await;
    }
    if let Some(r) = bad_client_id(&id) {
        return r;
    }
    let found = find(&*state.shards, AdminQuery::Client(id), |a| match a {
        AdminAnswer::Client(c) => Ok(c),
        other => Err(unexpected(&other)),
    })
    .await;
    match found {
        Ok(Some(c)) => Json(client_json(&c, &state.node_name)).into_response(),
        Ok(None) => client_not_found(),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/v5/clients/{clientid}/subscriptions`: a JSON array, as EMQX.
pub async fn get_client_subscriptions(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = bad_client_id(&id) {
        return r;
    }
    let found = find(
        &*state.shards,
        AdminQuery::ClientSubscriptions(id),
        |a| match a {
            AdminAnswer::Subscriptions(s) => Ok(s),
            other => Err(unexpected(&other)),
        },
    )
    .await;
    match found {
        Ok(Some(subs)) => {
            let data: Vec<Value> = subs
                .iter()
                .map(|s| subscription_json(s, &state.node_name))
                .collect();
            Json(Value::Array(data)).into_response()
        }
        Ok(None) => client_not_found(),
        Err(e) => unavailable(e),
    }
}

/// `DELETE /api/v5/clients/{clientid}`: 204 once the kick has started (a
/// v5 client gets DISCONNECT 0x98; the session ends with the connection),
/// 404 for an unknown client.
pub async fn kick_client(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    if let Some(control) = state.cluster.control.clone() {
        return super::cluster_clients::kick(&state, &*control, id).await;
    }
    if let Some(r) = bad_client_id(&id) {
        return r;
    }
    let kicked = find(&*state.shards, AdminQuery::Kick(id), |a| match a {
        AdminAnswer::Kicked(true) => Ok(Some(())),
        AdminAnswer::Kicked(false) => Ok(None),
        other => Err(unexpected(&other)),
    })
    .await;
    match kicked {
        Ok(Some(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(None) => client_not_found(),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::shards::Asked;

    /// Shards with canned sessions; `down` answers nothing.
    struct Fake {
        shards: Vec<Vec<&'static str>>,
        down: Option<usize>,
    }

    fn info(id: &str, shard: usize) -> ClientInfo {
        ClientInfo {
            client_id: id.to_string(),
            shard: shard as u16,
            connected: true,
            username: None,
            proto_ver: 5,
            peer: None,
            keepalive_s: 60,
            clean_start: Some(true),
            expiry_interval_s: 0,
            subscriptions: 0,
            mqueue_len: 0,
            mqueue_max: 10,
            mqueue_dropped: 0,
            inflight_cnt: 0,
            connected_at_ms: None,
            disconnected_at_ms: None,
        }
    }

    impl AskShards for Fake {
        fn shard_count(&self) -> usize {
            self.shards.len()
        }

        fn ask(&self, shard: usize, query: AdminQuery) -> Asked {
            let ids = &self.shards[shard];
            let answer = if self.down == Some(shard) {
                Err(Unavailable("the shard's inbox is full".into()))
            } else {
                Ok(match query {
                    AdminQuery::CountClients => AdminAnswer::Count(ids.len()),
                    AdminQuery::ListClients { skip, take } => AdminAnswer::Clients(
                        ids.iter()
                            .skip(skip)
                            .take(take)
                            .map(|id| info(id, shard))
                            .collect(),
                    ),
                    AdminQuery::Client(id) => {
                        AdminAnswer::Client(ids.contains(&id.as_str()).then(|| info(&id, shard)))
                    }
                    other => panic!("not asked in these tests: {other:?}"),
                })
            };
            Box::pin(async move { answer })
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn page(fake: &Fake, page: usize, limit: usize) -> Result<(Vec<String>, usize), Unavailable> {
        let rows_of = |a: AdminAnswer| match a {
            AdminAnswer::Clients(c) => Ok(c),
            other => Err(unexpected(&other)),
        };
        run(list_page(
            fake,
            AdminQuery::CountClients,
            |skip, take| AdminQuery::ListClients { skip, take },
            rows_of,
            Paging { page, limit },
        ))
        .map(|(rows, count)| (rows.into_iter().map(|c| c.client_id).collect(), count))
    }

    #[test]
    fn pages_cross_shard_boundaries() {
        let fake = Fake {
            shards: vec![vec!["a", "b", "c"], vec![], vec!["d", "e"]],
            down: None,
        };
        assert_eq!(
            page(&fake, 1, 2).unwrap(),
            (vec!["a".into(), "b".into()], 5)
        );
        assert_eq!(page(&fake, 2, 2).unwrap().0, vec!["c", "d"]);
        assert_eq!(page(&fake, 3, 2).unwrap().0, vec!["e"]);
        assert!(page(&fake, 4, 2).unwrap().0.is_empty());
    }

    #[test]
    fn a_shard_that_cannot_answer_fails_the_listing() {
        let fake = Fake {
            shards: vec![vec!["a"], vec!["b"]],
            down: Some(1),
        };
        let e = page(&fake, 1, 10).unwrap_err();
        assert!(e.0.contains("inbox is full"), "{e:?}");
    }

    #[test]
    fn find_stops_at_the_shard_that_has_the_client() {
        let fake = Fake {
            shards: vec![vec!["a"], vec!["b"], vec!["c"]],
            // Never asked: shard 1 has the client.
            down: Some(2),
        };
        let found = run(find(&fake, AdminQuery::Client("b".into()), |a| match a {
            AdminAnswer::Client(c) => Ok(c),
            other => Err(unexpected(&other)),
        }))
        .unwrap();
        assert_eq!(found.map(|c| c.shard), Some(1));
    }

    #[test]
    fn paging_defaults_and_bounds() {
        let d = parse_paging(None).unwrap();
        assert_eq!((d.page, d.limit), (1, limits::ADMIN_PAGE_LIMIT_DEFAULT));
        let p = parse_paging(Some("page=3&limit=20")).unwrap();
        assert_eq!((p.page, p.limit, p.skip()), (3, 20, 40));
        let max = format!("limit={}", limits::ADMIN_PAGE_LIMIT_MAX);
        assert_eq!(
            parse_paging(Some(&max)).unwrap().limit,
            limits::ADMIN_PAGE_LIMIT_MAX
        );
    }

    #[test]
    fn bad_paging_names_the_parameter() {
        for (q, field) in [
            ("page=0", "page"),
            ("page=x", "page"),
            ("page=-1", "page"),
            ("limit=0", "limit"),
            ("limit=", "limit"),
            ("limit=10001", "limit"),
            ("limit=99999999999999999999999", "limit"),
            ("clientid=a", "query"),
        ] {
            let (f, message) = parse_paging(Some(q)).unwrap_err();
            assert_eq!(f, field, "{q}: {message}");
            assert!(message.contains(if field == "query" { "clientid" } else { field }));
        }
        let (_, m) = parse_paging(Some("limit=10001")).unwrap_err();
        assert!(m.contains("from 1 to 10000"), "{m}");
    }
}
