use super::*;
use crate::codec::{connack_v3, ReasonCode};

fn servers(list: &[(&str, u16)]) -> Vec<RedirectServer> {
    list.iter()
        .map(|(h, p)| RedirectServer::new(h, *p, None))
        .collect()
}

fn enabled(max: usize) -> Redirection {
    Redirection {
        enable: true,
        strategy: Strategy::RoundRobin,
        max_connections: max,
        servers: servers(&[("a.example", 1883), ("10.0.0.2", 1884), ("::1", 1885)]),
    }
}

fn request(v5: bool, node: usize) -> Request<'static> {
    Request {
        v5,
        node_connections: node,
        listener_connections: node,
        listener_max: 100,
        evacuating: None,
        shutting_down: false,
    }
}

fn first(_: usize) -> usize {
    0
}

#[test]
fn reference_formats() {
    assert_eq!(
        format_reference("server1.example.com", 1883),
        "server1.example.com:1883"
    );
    assert_eq!(format_reference("10.0.0.1", 8883), "10.0.0.1:8883");
    assert_eq!(format_reference("::1", 1883), "[::1]:1883");
    assert_eq!(format_reference("[fd00::2]", 1883), "[fd00::2]:1883");
    assert_eq!(format_reference("2001:db8::a:b", 1), "[2001:db8::a:b]:1");
    let list = servers(&[("a", 1), ("fd00::2", 2), ("10.1.1.1", 3)]);
    assert_eq!(format_references(&list), "a:1 [fd00::2]:2 10.1.1.1:3");
    assert_eq!(format_references(&list[..1]), "a:1");
    assert_eq!(format_references(&[]), "");
    // The host is kept without brackets, the reference with them.
    assert_eq!(list[1].host, "fd00::2");
    assert_eq!(RedirectServer::new("[::1]", 5, None).host, "::1");
}

#[test]
fn strategy_names() {
    assert_eq!(Strategy::parse("random"), Some(Strategy::Random));
    assert_eq!(Strategy::parse("ROUND_ROBIN"), Some(Strategy::RoundRobin));
    assert_eq!(Strategy::parse("roundrobin"), None);
    for s in Strategy::ALL {
        assert_eq!(Strategy::parse(s.as_str()), Some(s));
    }
}

#[test]
fn admits_below_the_cap_redirects_at_it() {
    let config = enabled(3);
    for node in 0..3 {
        assert_eq!(
            decide(&request(true, node), &config, &mut first),
            Decision::Admit
        );
    }
    assert_eq!(
        decide(&request(true, 3), &config, &mut first),
        Decision::Redirect {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            server_reference: "a.example:1883".into()
        }
    );
    assert_eq!(
        decide(&request(true, 7), &config, &mut |_| 2),
        Decision::Redirect {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            server_reference: "[::1]:1885".into()
        }
    );
}

#[test]
fn v3_at_the_cap_is_refused_with_return_code_3() {
    let config = enabled(3);
    let mut picked = false;
    let d = decide(&request(false, 3), &config, &mut |_| {
        picked = true;
        0
    });
    assert_eq!(
        d,
        Decision::Refuse {
            reason: connack_v3::SERVER_UNAVAILABLE,
            cause: RefuseCause::NodeFull
        }
    );
    assert!(!picked, "a refusal must not move the round-robin cursor");
    assert_eq!(
        decide(&request(false, 2), &config, &mut first),
        Decision::Admit
    );
}

#[test]
fn disabled_redirection_leaves_only_the_listener_cap() {
    let mut config = enabled(3);
    config.enable = false;
    assert_eq!(
        decide(&request(true, 50), &config, &mut first),
        Decision::Admit
    );
    let mut full = request(true, 100);
    full.listener_connections = 100;
    assert_eq!(
        decide(&full, &config, &mut first),
        Decision::Refuse {
            reason: ReasonCode::QUOTA_EXCEEDED,
            cause: RefuseCause::ListenerFull
        }
    );
    full.v5 = false;
    assert_eq!(
        decide(&full, &config, &mut first),
        Decision::Refuse {
            reason: connack_v3::SERVER_UNAVAILABLE,
            cause: RefuseCause::ListenerFull
        }
    );
}

#[test]
fn enabled_redirection_also_redirects_from_a_full_listener() {
    let config = enabled(1000);
    let mut r = request(true, 10);
    r.listener_connections = 10;
    r.listener_max = 10;
    assert!(matches!(
        decide(&r, &config, &mut first),
        Decision::Redirect { reason, .. } if reason == ReasonCode::USE_ANOTHER_SERVER
    ));
}

#[test]
fn evacuating_node_answers_server_moved_with_its_own_reference() {
    // The redirection config plays no part: the evacuation's `redirect_to`
    // does, whatever the cap.
    let config = enabled(0);
    let moved = Refusing {
        server_reference: Some("b.example:1883 c.example:1883".into()),
    };
    let mut r = request(true, 0);
    r.evacuating = Some(&moved);
    assert_eq!(
        decide(&r, &config, &mut |_| 1),
        Decision::Redirect {
            reason: ReasonCode::SERVER_MOVED,
            server_reference: "b.example:1883 c.example:1883".into()
        }
    );
    r.v5 = false;
    assert_eq!(
        decide(&r, &config, &mut first),
        Decision::Refuse {
            reason: connack_v3::SERVER_UNAVAILABLE,
            cause: RefuseCause::Evacuating
        }
    );
    // No `redirect_to`: 0x9C without a reference.
    let nowhere = Refusing {
        server_reference: None,
    };
    r.evacuating = Some(&nowhere);
    r.v5 = true;
    assert_eq!(
        decide(&r, &config, &mut first),
        Decision::Refuse {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            cause: RefuseCause::Evacuating
        }
    );
}

#[test]
fn shutting_down_refuses_everyone() {
    let mut r = request(true, 0);
    r.shutting_down = true;
    assert!(matches!(
        decide(&r, &enabled(0), &mut first),
        Decision::Refuse {
            cause: RefuseCause::ShuttingDown,
            ..
        }
    ));
}

#[test]
fn zero_cap_redirects_every_v5_client() {
    assert!(matches!(
        decide(&request(true, 0), &enabled(0), &mut first),
        Decision::Redirect { .. }
    ));
}

#[test]
fn round_robin_follows_the_configured_order_and_restarts_on_a_new_list() {
    let node = NodeAdmission::new(enabled(0));
    let picks: Vec<usize> = (0..7).map(|_| node.pick(Strategy::RoundRobin, 3)).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    let mut changed = enabled(0);
    changed.servers.pop();
    node.set_config(changed);
    assert_eq!(node.pick(Strategy::RoundRobin, 2), 0);
    // Same servers, other settings: the cursor goes on.
    let mut same = enabled(0);
    same.servers.pop();
    same.max_connections = 5;
    node.set_config(same);
    assert_eq!(node.pick(Strategy::RoundRobin, 2), 1);
}

#[test]
fn random_picks_every_server() {
    let node = NodeAdmission::new(enabled(0));
    let mut seen = [0u32; 3];
    for _ in 0..3000 {
        seen[node.pick(Strategy::Random, 3)] += 1;
    }
    // Uniform: each near 1000; a bound loose enough never to fail by chance.
    assert!(seen.iter().all(|&n| n > 700 && n < 1300), "{seen:?}");
}

#[test]
fn count_takes_only_from_the_value_seen() {
    let count = Count::default();
    assert!(count.try_take(0));
    assert!(!count.try_take(0), "stale view must not take a slot");
    assert_eq!(count.load(), 1);
    assert!(count.try_take(1));
    count.release();
    assert_eq!(count.load(), 1);
}

#[test]
fn count_is_exact_across_threads() {
    // Eight threads race to admit under a cap of 1000: exactly 1000 win.
    let count = std::sync::Arc::new(Count::default());
    let config = enabled(1000);
    let admitted: usize = (0..8)
        .map(|_| {
            let count = count.clone();
            let config = config.clone();
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..500 {
                    loop {
                        let seen = count.load();
                        let r = Request {
                            listener_max: usize::MAX,
                            ..request(true, seen)
                        };
                        match decide(&r, &config, &mut first) {
                            Decision::Admit if count.try_take(seen) => {
                                admitted += 1;
                                break;
                            }
                            Decision::Admit => continue,
                            _ => break,
                        }
                    }
                }
                admitted
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(admitted, 1000);
    assert_eq!(count.load(), 1000);
}

#[test]
fn counters_by_reason() {
    let c = ShardCounters::default();
    c.record(&Decision::Admit);
    c.record(&Decision::Redirect {
        reason: ReasonCode::USE_ANOTHER_SERVER,
        server_reference: "a:1".into(),
    });
    c.record(&Decision::Redirect {
        reason: ReasonCode::SERVER_MOVED,
        server_reference: "a:1".into(),
    });
    c.record(&Decision::Refuse {
        reason: ReasonCode::QUOTA_EXCEEDED,
        cause: RefuseCause::ListenerFull,
    });
    c.record(&Decision::Refuse {
        reason: connack_v3::SERVER_UNAVAILABLE,
        cause: RefuseCause::NodeFull,
    });
    let s = c.snapshot();
    assert_eq!(
        (
            s.accepted,
            s.redirected_use_another_server,
            s.redirected_server_moved,
            s.refused_quota_exceeded,
            s.refused_server_unavailable
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(s.redirected(), 2);
}

fn cluster_of(loads: &[Option<u64>]) -> ClusterServers {
    let mut servers = vec![ClusterServer {
        server: RedirectServer::new("127.0.0.1", 1883, None),
        connections: Some(0),
        local: true,
    }];
    for (i, load) in loads.iter().enumerate() {
        servers.push(ClusterServer {
            server: RedirectServer::new(&format!("127.0.0.{}", i + 2), 1883, None),
            connections: *load,
            local: false,
        });
    }
    ClusterServers::new(servers).unwrap()
}

#[test]
fn a_clustered_node_lists_the_cluster_and_falls_back_to_itself() {
    let node = NodeAdmission::new(enabled(1000));
    // Not clustered: no Server Reference on a successful CONNACK.
    assert_eq!(node.effective().connack_reference, None);
    node.set_local_reference("127.0.0.1:1883".to_string());
    assert_eq!(
        node.effective().connack_reference.as_deref(),
        Some("127.0.0.1:1883")
    );
    node.set_cluster(Some(cluster_of(&[Some(1), None])));
    assert_eq!(
        node.effective().connack_reference.as_deref(),
        Some("127.0.0.1:1883 127.0.0.2:1883 127.0.0.3:1883")
    );
    // Configured servers stay the redirect targets for round robin.
    assert_eq!(node.effective().redirection.servers, enabled(0).servers);
    // Cluster state gone: this node alone again; redirection off: nothing.
    node.set_cluster(None);
    assert_eq!(
        node.effective().connack_reference.as_deref(),
        Some("127.0.0.1:1883")
    );
    node.set_config(Redirection {
        enable: false,
        ..enabled(1000)
    });
    assert_eq!(node.effective().connack_reference, None);
}

#[test]
fn least_connections_picks_the_least_loaded_peer() {
    let node = NodeAdmission::new(Redirection {
        strategy: Strategy::LeastConnections,
        servers: Vec::new(),
        ..enabled(0)
    });
    node.set_local_reference("127.0.0.1:1883".to_string());
    // Unknown loads count last; the first of equals wins.
    node.set_cluster(Some(cluster_of(&[Some(7), None, Some(3), Some(3)])));
    let effective = node.effective();
    let names: Vec<&str> = effective
        .redirection
        .servers
        .iter()
        .map(|s| s.reference())
        .collect();
    assert_eq!(
        names,
        [
            "127.0.0.2:1883",
            "127.0.0.3:1883",
            "127.0.0.4:1883",
            "127.0.0.5:1883"
        ],
        "the peers, not this node"
    );
    let pick = node.pick_in(&effective, 4);
    assert_eq!(
        effective.redirection.servers[pick].reference(),
        "127.0.0.4:1883"
    );
    match decide(&request(true, 0), &effective.redirection, &mut |n| {
        node.pick_in(&effective, n)
    }) {
        Decision::Redirect {
            server_reference, ..
        } => assert_eq!(server_reference, "127.0.0.4:1883"),
        other => panic!("{other:?}"),
    }
    // No figures at all: round robin over the peers.
    node.set_cluster(Some(cluster_of(&[None, None])));
    let effective = node.effective();
    let picks: Vec<usize> = (0..3).map(|_| node.pick_in(&effective, 2)).collect();
    assert_eq!(picks, [0, 1, 0]);
}
