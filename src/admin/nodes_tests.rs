//! The nodes and cluster handlers against canned shards and a canned
//! cluster thread.

use super::*;
use crate::admin::shards::{AskShards, Asked, Unavailable};
use crate::admission::NodeAdmission;
use crate::config::ServerRedirectionConfig;
use crate::shard::NodeHandle;
use serde_json::Value;
use std::sync::Mutex;

/// Shards answering statistics with fixed connection and session counts.
struct Shards(Vec<(u64, u64)>);

impl AskShards for Shards {
    fn shard_count(&self) -> usize {
        self.0.len()
    }

    fn ask(&self, shard: usize, query: AdminQuery) -> Asked {
        assert!(matches!(query, AdminQuery::Stats), "{query:?}");
        let (connections, sessions) = self.0[shard];
        let stats = ShardStats {
            shard: shard as u16,
            connections,
            sessions,
            ..ShardStats::default()
        };
        Box::pin(async move { Ok::<_, Unavailable>(AdminAnswer::Stats(Box::new(stats))) })
    }
}

/// A cluster thread with fixed peers that records what it was asked.
#[derive(Default)]
struct Control {
    peers: Vec<NodeInfo>,
    asked: Mutex<Vec<String>>,
    /// The answer to join, leave and force-leave.
    fail: Option<ControlError>,
}

impl Control {
    fn answer(&self, what: String) -> Pending<()> {
        self.asked.lock().unwrap().push(what);
        let answer = self.fail.clone().map_or(Ok(()), Err);
        Box::pin(async move { answer })
    }
}

impl ClusterControl for Control {
    fn peers(&self) -> Pending<Vec<NodeInfo>> {
        let peers = self.peers.clone();
        Box::pin(async move { Ok(peers) })
    }
    fn join(&self, address: String) -> Pending<()> {
        self.answer(format!("join {address}"))
    }
    fn leave(&self) -> Pending<()> {
        self.answer("leave".into())
    }
    fn force_leave(&self, node: String) -> Pending<()> {
        self.answer(format!("force_leave {node}"))
    }
}

const ME: &str = "a@127.0.0.1";

fn state(strategy: &str, control: Option<Arc<Control>>) -> Arc<AdminState> {
    let redirection = ServerRedirectionConfig::default();
    let admission = Arc::new(NodeAdmission::new(redirection.to_redirection()));
    let mut state = AdminState::new(
        ME.to_string(),
        "admin",
        "public",
        redirection,
        admission,
        NodeHandle::new(2),
        false,
    )
    .with_cluster(ClusterAdmin {
        discovery_strategy: strategy.to_string(),
        control: control.map(|c| c as Arc<dyn ClusterControl>),
        ..ClusterAdmin::default()
    });
    state.shards = Arc::new(Shards(vec![(2, 3), (1, 4)]));
    Arc::new(state)
}

fn run<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// Status and JSON body of a handler's response.
fn answer(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = run(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn peer(name: &str, status: NodeStatus) -> NodeInfo {
    NodeInfo {
        connections: (status == NodeStatus::Running).then_some(7),
        ..NodeInfo::named(name, status, "replicant")
    }
}

#[test]
fn a_single_node_lists_itself_with_its_shards_connections() {
    let (status, body) = answer(run(list_nodes(State(state("singleton", None)))));
    assert_eq!(status, StatusCode::OK);
    let nodes = body.as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    let me = &nodes[0];
    assert_eq!(me["node"], ME);
    assert_eq!(me["node_status"], "running");
    assert_eq!(me["role"], "core");
    assert_eq!(me["connections"], 3);
    assert_eq!(me["live_connections"], 3);
    assert_eq!(me["sessions"], 7);
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert!(me["uptime"].is_u64());
    assert!(me["max_fds"].as_u64().unwrap() > 0);
    assert!(me["memory_used"].as_str().unwrap().ends_with('M'));
}

#[test]
fn peers_follow_this_node_and_stopped_ones_have_no_figures() {
    let control = Arc::new(Control {
        peers: vec![
            peer("b@127.0.0.2", NodeStatus::Running),
            peer("c@127.0.0.3", NodeStatus::Stopped),
        ],
        ..Control::default()
    });
    let (_, body) = answer(run(list_nodes(State(state("static", Some(control))))));
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ME, "b@127.0.0.2", "c@127.0.0.3"]);
    assert_eq!(body[1]["connections"], 7);
    assert_eq!(body[2]["node_status"], "stopped");
    assert!(body[2].get("connections").is_none(), "{}", body[2]);
}

#[test]
fn one_node_by_name_or_emqx_404() {
    let control = Arc::new(Control {
        peers: vec![peer("b@127.0.0.2", NodeStatus::Running)],
        ..Control::default()
    });
    let s = state("static", Some(control));
    let (status, body) = answer(run(get_node(State(s.clone()), Path(ME.to_string()))));
    assert_eq!(
        (status, body["connections"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let (status, body) = answer(run(get_node(
        State(s.clone()),
        Path("b@127.0.0.2".to_string()),
    )));
    assert_eq!(
        (status, &body["role"]),
        (StatusCode::OK, &json!("replicant"))
    );
    for unknown in ["x@127.0.0.9", ""] {
        let (status, body) = answer(run(get_node(State(s.clone()), Path(unknown.into()))));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "NOT_FOUND");
        assert_eq!(body["message"], "Node not found");
    }
    // Without a cluster thread too.
    let (status, _) = answer(run(get_node(
        State(state("singleton", None)),
        Path("b@127.0.0.2".into()),
    )));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn the_cluster_names_its_nodes() {
    let control = Arc::new(Control {
        peers: vec![peer("b@127.0.0.2", NodeStatus::Running)],
        ..Control::default()
    });
    let (_, body) = answer(run(get_cluster(State(state("dns", Some(control))))));
    assert_eq!(
        body,
        json!({"name": "ringmqcl", "self": ME, "nodes": [ME, "b@127.0.0.2"],
               "discovery_strategy": "dns"})
    );
}

#[test]
fn membership_changes_need_the_manual_strategy() {
    let control = Arc::new(Control::default());
    for strategy in ["singleton", "static", "dns"] {
        let s = state(strategy, Some(control.clone()));
        let body = Bytes::from_static(br#"{"address": "127.0.0.2:4370"}"#);
        for response in [
            run(join(State(s.clone()), body)),
            run(leave(State(s.clone()))),
            run(force_leave(State(s.clone()), Path("b@127.0.0.2".into()))),
        ] {
            let (status, body) = answer(response);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["field"], "cluster.discovery_strategy");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains(strategy) && message.contains("manual"),
                "{message}"
            );
        }
    }
    assert!(control.asked.lock().unwrap().is_empty());
}

#[test]
fn manual_without_a_cluster_thread_is_503() {
    let s = state("manual", None);
    let (status, body) = answer(run(leave(State(s.clone()))));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["message"], "cluster not running on this node");
    let body = Bytes::from_static(br#"{"address": "127.0.0.2:4370"}"#);
    let (status, _) = answer(run(join(State(s), body)));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn manual_requests_reach_the_cluster_thread() {
    let control = Arc::new(Control::default());
    let s = state("manual", Some(control.clone()));
    let body = Bytes::from_static(br#"{"address": "127.0.0.2:4370"}"#);
    assert_eq!(
        answer(run(join(State(s.clone()), body))).1["result"],
        "joined"
    );
    assert_eq!(answer(run(leave(State(s.clone())))).1["result"], "left");
    let (status, _) = answer(run(force_leave(
        State(s.clone()),
        Path("b@127.0.0.2".into()),
    )));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        *control.asked.lock().unwrap(),
        ["join 127.0.0.2:4370", "leave", "force_leave b@127.0.0.2"]
    );
}

#[test]
fn bad_join_requests_are_400_and_never_reach_the_thread() {
    let control = Arc::new(Control::default());
    let s = state("manual", Some(control.clone()));
    for (body, field) in [
        (&br#"{"address": "127.0.0.2"}"#[..], Some("address")),
        (br#"{"address": "host:0"}"#, Some("address")),
        (br#"{"address": ":4370"}"#, Some("address")),
        (br#"{"address": "a b:4370"}"#, Some("address")),
        (br#"{"addr": "127.0.0.2:4370"}"#, None),
        (b"not json", None),
    ] {
        let (status, answer) = answer(run(join(State(s.clone()), Bytes::from_static(body))));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["field"].as_str(), field, "{answer}");
    }
    let (status, body) = answer(run(force_leave(State(s), Path(ME.into()))));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("leave"));
    assert!(control.asked.lock().unwrap().is_empty());
}

#[test]
fn the_threads_refusals_keep_their_status() {
    for (fail, want) in [
        (
            ControlError::NotFound("no node x".into()),
            StatusCode::NOT_FOUND,
        ),
        (
            ControlError::BadRequest("own address".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            ControlError::Unavailable("busy".into()),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let control = Arc::new(Control {
            fail: Some(fail),
            ..Control::default()
        });
        let s = state("manual", Some(control));
        let (status, _) = answer(run(force_leave(State(s), Path("x@1.2.3.4".into()))));
        assert_eq!(status, want);
    }
}

#[test]
fn addresses_are_host_and_port() {
    for good in ["127.0.0.1:4370", "node-2.example.com:1", "[::1]:4370"] {
        assert!(check_address(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "[]:4370",
        "x:port",
    ] {
        assert!(check_address(bad).is_err(), "{bad}");
    }
}

#[test]
fn memory_sizes_as_emqx_writes_them() {
    assert_eq!(kmg(512), "512");
    assert_eq!(kmg(1536), "1.50K");
    assert_eq!(kmg(256 * 1024 * 1024), "256.00M");
    assert_eq!(kmg(3 * 1024 * 1024 * 1024 / 2), "1.50G");
}

#[test]
fn load_averages_from_proc() {
    assert_eq!(
        parse_loadavg("0.52 1.25 2.00 3/412 12345\n"),
        Some((0.52, 1.25, 2.0))
    );
    assert_eq!(parse_loadavg("0.52 x"), None);
    assert_eq!(parse_loadavg(""), None);
}
