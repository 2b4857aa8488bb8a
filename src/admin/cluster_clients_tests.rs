//! The cluster-wide clients handlers against canned shards and canned
//! peers (what the cluster driver would bring back).

use super::*;
use crate::admin::nodes::{ClusterAdmin, ControlError, NodeInfo, Pending};
use crate::admin::shards::Asked;
use crate::admission::NodeAdmission;
use crate::config::ServerRedirectionConfig;
use crate::shard::NodeHandle;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const ME: &str = "a@127.0.0.1";

fn info(id: &str) -> ClientInfo {
    ClientInfo {
        client_id: id.to_string(),
        shard: 0,
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

/// Sessions of one node, answering like a node's shards (or the node
/// itself, for a peer).
fn answer(ids: &[&str], query: AdminQuery) -> AdminAnswer {
    match query {
        AdminQuery::CountClients => AdminAnswer::Count(ids.len()),
        AdminQuery::ListClients { skip, take } => {
            AdminAnswer::Clients(ids.iter().skip(skip).take(take).map(|i| info(i)).collect())
        }
        AdminQuery::Client(id) => {
            AdminAnswer::Client(ids.contains(&id.as_str()).then(|| info(&id)))
        }
        AdminQuery::Kick(id) => AdminAnswer::Kicked(ids.contains(&id.as_str())),
        other => panic!("not asked: {other:?}"),
    }
}

/// This node: one shard.
struct Shards(Vec<&'static str>);

impl AskShards for Shards {
    fn shard_count(&self) -> usize {
        1
    }
    fn ask(&self, _: usize, query: AdminQuery) -> Asked {
        let a = answer(&self.0, query);
        Box::pin(async move { Ok(a) })
    }
}

/// Peers by name; `silent` ones answer nothing. Records the list takes.
#[derive(Default)]
struct Peers {
    nodes: BTreeMap<&'static str, Vec<&'static str>>,
    silent: Vec<&'static str>,
    takes: Mutex<Vec<usize>>,
}

impl ClusterControl for Peers {
    fn peers(&self) -> Pending<Vec<NodeInfo>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn join(&self, _: String) -> Pending<()> {
        Box::pin(async { Err(ControlError::Unavailable("no".into())) })
    }
    fn leave(&self) -> Pending<()> {
        Box::pin(async { Err(ControlError::Unavailable("no".into())) })
    }
    fn force_leave(&self, _: String) -> Pending<()> {
        Box::pin(async { Err(ControlError::Unavailable("no".into())) })
    }
    fn peer_clients(&self, node: Option<String>, query: AdminQuery) -> Pending<Vec<PeerClients>> {
        if let AdminQuery::ListClients { take, .. } = query {
            self.takes.lock().unwrap().push(take);
        }
        let out = self
            .nodes
            .iter()
            .filter(|(n, _)| node.as_deref().is_none_or(|want| want == **n))
            .map(|(n, ids)| PeerClients {
                node: n.to_string(),
                answer: (!self.silent.contains(n)).then(|| answer(ids, query.clone())),
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
}

fn state(local: Vec<&'static str>) -> AdminState {
    let redirection = ServerRedirectionConfig::default();
    let admission = Arc::new(NodeAdmission::new(redirection.to_redirection()));
    let mut state = AdminState::new(
        ME.to_string(),
        "admin",
        "public",
        redirection,
        admission,
        NodeHandle::new(1),
        false,
    )
    .with_cluster(ClusterAdmin::default());
    state.shards = Arc::new(Shards(local));
    state
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = run(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, value)
}

/// `(clientid, node)` of a listing's rows.
fn rows(v: &Value) -> Vec<(String, String)> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["clientid"].as_str().unwrap().to_string(),
                c["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn peers() -> Peers {
    Peers {
        nodes: BTreeMap::from([
            ("c@127.0.0.3", vec!["c1"]),
            ("b@127.0.0.2", vec!["b1", "b2", "b3"]),
        ]),
        ..Peers::default()
    }
}

#[test]
fn pages_run_over_this_node_then_the_peers_by_name() {
    let st = state(vec!["a1", "a2"]);
    let peers = peers();
    let page = |q: &str| json_of(run(list(&st, &peers, Some(q))));
    let (status, v) = page("page=1&limit=3");
    assert_eq!(status, StatusCode::OK);
    let node = |n: &str| n.to_string();
    assert_eq!(
        rows(&v),
        [
            ("a1".into(), node(ME)),
            ("a2".into(), node(ME)),
            ("b1".into(), node("b@127.0.0.2"))
        ]
    );
    assert_eq!(v["meta"]["count"], 6);
    assert_eq!(v["meta"]["hasnext"], true);
    assert_eq!(v["meta"]["unavailable_nodes"], serde_json::json!([]));
    let (_, v) = page("page=2&limit=3");
    assert_eq!(
        rows(&v),
        [
            ("b2".into(), node("b@127.0.0.2")),
            ("b3".into(), node("b@127.0.0.2")),
            ("c1".into(), node("c@127.0.0.3"))
        ]
    );
    assert_eq!(v["meta"]["hasnext"], false);
    let (_, v) = page("page=3&limit=3");
    assert!(rows(&v).is_empty());
    let (status, v) = page("limit=0");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "limit");
}

#[test]
fn a_silent_peer_is_left_out_and_named() {
    let st = state(vec!["a1"]);
    let peers = Peers {
        silent: vec!["b@127.0.0.2"],
        ..peers()
    };
    let (_, v) = json_of(run(list(&st, &peers, None)));
    assert_eq!(
        rows(&v),
        [
            ("a1".into(), ME.into()),
            ("c1".into(), "c@127.0.0.3".into())
        ]
    );
    assert_eq!(v["meta"]["count"], 2);
    assert_eq!(
        v["meta"]["unavailable_nodes"],
        serde_json::json!(["b@127.0.0.2"])
    );
}

#[test]
fn a_peers_rows_are_asked_in_bounded_answers() {
    let many: Vec<&'static str> = (0..1200)
        .map(|i| &*Box::leak(format!("p{i:04}").into_boxed_str()))
        .collect();
    let peers = Peers {
        nodes: BTreeMap::from([("b@127.0.0.2", many)]),
        ..Peers::default()
    };
    let st = state(vec![]);
    let (_, v) = json_of(run(list(&st, &peers, Some("limit=1100"))));
    let got = rows(&v);
    assert_eq!(got.len(), 1100);
    assert_eq!(got[1099].0, "p1099");
    let takes = peers.takes.lock().unwrap().clone();
    assert!(
        takes
            .iter()
            .all(|&t| t <= limits::CLUSTER_CLIENTS_ANSWER_MAX),
        "{takes:?}"
    );
    assert_eq!(takes.len(), 3, "{takes:?}");
}

#[test]
fn a_client_is_found_and_kicked_on_the_node_that_holds_it() {
    let st = state(vec!["a1"]);
    let peers = peers();
    let (status, v) = json_of(run(get(&st, &peers, "b2".into())));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["clientid"].as_str(), v["node"].as_str()),
        (Some("b2"), Some("b@127.0.0.2"))
    );
    let (status, v) = json_of(run(get(&st, &peers, "a1".into())));
    assert_eq!((status, v["node"].as_str()), (StatusCode::OK, Some(ME)));
    let (status, v) = json_of(run(get(&st, &peers, "zz".into())));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "CLIENTID_NOT_FOUND");
    let (status, _) = json_of(run(kick(&st, &peers, "c1".into())));
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = json_of(run(kick(&st, &peers, "zz".into())));
    assert_eq!(status, StatusCode::NOT_FOUND);
}
