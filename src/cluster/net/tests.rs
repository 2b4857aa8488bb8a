//! Cluster threads linked on 127.0.0.1 in one process: joining, refusals,
//! failure detection, restarts, framing faults and frame delivery.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

pub(super) fn free_udp_port(ip: &str) -> SocketAddr {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    sock.local_addr().unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringmq-cnet-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Epochs strictly increase within the test process (a restart gets a
/// newer one even within one millisecond).
fn next_epoch() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let prev = LAST.fetch_max(now, Ordering::SeqCst).max(now);
    LAST.fetch_add(1, Ordering::SeqCst).max(prev) + 1
}

pub(super) fn settings(name: &str, bind: SocketAddr, discovery: Discovery) -> NetSettings {
    NetSettings {
        node_name: name.into(),
        node_id: NodeId::from_name(name),
        boot_epoch_ms: next_epoch(),
        role: Role::Core,
        cluster_name: "testcl".into(),
        cookie: "secret".into(),
        bind,
        mqtt_addr: SocketAddr::new(bind.ip(), 1000 + bind.port() % 1000),
        tls: TlsMode::SelfSigned,
        discovery,
        data_dir: temp_dir(name),
        timing: Timing::default(),
    }
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits for an event matching `pred`, keeping the others.
pub(super) async fn wait_event(
    events: &mut ClusterEvents,
    within: Duration,
    mut pred: impl FnMut(&NetEvent) -> bool,
) -> Option<NetEvent> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if pred(&e) => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

fn running(h: &ClusterHandle) -> Vec<String> {
    h.members()
        .into_iter()
        .filter(|m| m.state == MemberState::Running)
        .map(|m| m.name)
        .collect()
}

/// Waits until each handle lists `n` running members.
pub(super) async fn wait_running(handles: &[&ClusterHandle], n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if handles.iter().all(|h| running(h).len() == n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn three_nodes_join_by_static_seeds_and_see_each_other() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp_port("127.0.0.1")).collect();
    let names = ["s1@127.0.0.1", "s2@127.0.0.1", "s3@127.0.0.1"];
    let started = Instant::now();
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            start(settings(
                names[i],
                addrs[i],
                Discovery::Static(addrs.clone()),
            ))
            .unwrap()
        })
        .collect();
    rt().block_on(async {
        let handles: Vec<&ClusterHandle> = nodes.iter().map(|(h, _)| h).collect();
        assert!(
            wait_running(&handles, 3, Duration::from_secs(20)).await,
            "{:?}",
            running(handles[0])
        );
        println!("three nodes converged in {:?}", started.elapsed());
        let members = handles[1].members();
        let s3 = members.iter().find(|m| m.name == names[2]).unwrap();
        assert_eq!(s3.node, NodeId::from_name(names[2]));
        assert_eq!(s3.role, Role::Core);
        assert_eq!(
            s3.mqtt_addr,
            settings(names[2], addrs[2], Discovery::Manual).mqtt_addr
        );
    });
}

#[test]
fn manual_join_is_remembered_and_a_restarted_node_rejoins_with_its_new_epoch() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, mut a_events) = start(settings("m1@127.0.0.1", a_addr, Discovery::Manual)).unwrap();
    let b_settings = settings("m2@127.0.0.1", b_addr, Discovery::Manual);
    let data_dir = b_settings.data_dir.clone();
    let (b, mut b_events) = start(b_settings).unwrap();
    rt().block_on(async {
        // Alone until joined.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(running(&a).len(), 1);
        b.join(a_addr).unwrap();
        let up = wait_event(&mut b_events, Duration::from_secs(10), |e| {
            matches!(e, NetEvent::MemberUp { .. })
        })
        .await;
        assert!(
            matches!(up, Some(NetEvent::MemberUp { ref name, .. }) if name == "m1@127.0.0.1"),
            "{up:?}"
        );
        let up = wait_event(&mut a_events, Duration::from_secs(10), |e| {
            matches!(e, NetEvent::MemberUp { .. })
        })
        .await;
        assert!(
            matches!(up, Some(NetEvent::MemberUp { ref name, .. }) if name == "m2@127.0.0.1"),
            "{up:?}"
        );
        let remembered = std::fs::read_to_string(data_dir.join("cluster/peers")).unwrap();
        assert!(remembered.contains(&a_addr.to_string()), "{remembered}");

        // b crashes; a restarted b (same name and data_dir, new epoch and
        // port) rejoins by itself from the remembered peers.
        b.freeze().unwrap();
        let mut b2_settings = settings(
            "m2@127.0.0.1",
            free_udp_port("127.0.0.1"),
            Discovery::Manual,
        );
        b2_settings.data_dir = data_dir.clone();
        let b2_epoch = b2_settings.boot_epoch_ms;
        let (_b2, _b2_events) = start(b2_settings).unwrap();
        let up = wait_event(
            &mut a_events,
            Duration::from_secs(15),
            |e| matches!(e, NetEvent::MemberUp { epoch, .. } if *epoch == b2_epoch),
        )
        .await;
        assert!(up.is_some(), "the restarted node did not rejoin");
        assert!(wait_running(&[&a], 2, Duration::from_secs(5)).await);
    });
}

#[test]
fn a_crashed_node_is_declared_down_within_the_detection_time_and_its_restart_rejoins() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp_port("127.0.0.1")).collect();
    let names = ["d1@127.0.0.1", "d2@127.0.0.1", "d3@127.0.0.1"];
    let mut nodes: Vec<_> = (0..3)
        .map(|i| {
            start(settings(
                names[i],
                addrs[i],
                Discovery::Static(addrs.clone()),
            ))
            .unwrap()
        })
        .collect();
    rt().block_on(async {
        let handles: Vec<&ClusterHandle> = nodes.iter().map(|(h, _)| h).collect();
        assert!(wait_running(&handles, 3, Duration::from_secs(20)).await);
        let dead = NodeId::from_name(names[2]);
        nodes[2].0.freeze().unwrap();
        let crashed_at = Instant::now();
        for (h, events) in nodes.iter_mut().take(2) {
            let down = wait_event(events, Duration::from_secs(15), |e| {
                *e == NetEvent::MemberDown { node: dead }
            })
            .await;
            assert!(down.is_some(), "{} never declared {} down", h.node(), dead);
            // Events of the second survivor queue meanwhile: this is when
            // it had declared the node down, at the latest.
            let detection = crashed_at.elapsed();
            println!(
                "failure detection by {}: {detection:?} (spec: 5 s p99)",
                h.node()
            );
            assert!(detection < Duration::from_secs(8), "took {detection:?}");
        }
        let listed = nodes[0].0.members();
        assert_eq!(
            listed.iter().find(|m| m.node == dead).map(|m| m.state),
            Some(MemberState::Stopped)
        );

        // Restart on another port with a newer epoch: it replaces the old
        // incarnation.
        let s = settings(
            names[2],
            free_udp_port("127.0.0.1"),
            Discovery::Static(addrs[..2].to_vec()),
        );
        let epoch = s.boot_epoch_ms;
        let (_c2, _c2_events) = start(s).unwrap();
        let up = wait_event(&mut nodes[0].1, Duration::from_secs(15), |e| {
            matches!(e, NetEvent::MemberUp { node, epoch: ep, .. } if *node == dead && *ep == epoch)
        })
        .await;
        assert!(up.is_some(), "the restarted node did not rejoin");
        let (a, b) = (&nodes[0].0, &nodes[1].0);
        assert!(wait_running(&[a, b], 3, Duration::from_secs(10)).await);
    });
}

/// Sends `kind` frames with bodies `0..n` on `stream` and checks they
/// arrive in order.
#[test]
fn logic_frames_are_delivered_upwards_in_order_per_stream() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, _a_events) = start(settings(
        "f1@127.0.0.1",
        a_addr,
        Discovery::Static(vec![b_addr]),
    ))
    .unwrap();
    let (b, mut b_events) = start(settings(
        "f2@127.0.0.1",
        b_addr,
        Discovery::Static(vec![a_addr]),
    ))
    .unwrap();
    let n: u32 = 500;
    rt().block_on(async {
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(20)).await);
        let streams = [
            StreamId::Control,
            StreamId::Data { shard: 0 },
            StreamId::Data { shard: 3 },
        ];
        for i in 0..n {
            for stream in streams {
                let out = Outgoing {
                    node: b.node(),
                    stream,
                    kind: 16 + (i % 200) as u8,
                    body: Bytes::from(i.to_le_bytes().to_vec()),
                };
                let mut pending = out;
                // The command queue hands a frame back when full: retry.
                while let Err(back) = a.try_send(pending) {
                    pending = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let mut next = std::collections::HashMap::new();
        let mut got = 0;
        while got < n as usize * streams.len() {
            let e = wait_event(&mut b_events, Duration::from_secs(20), |e| {
                matches!(e, NetEvent::PeerFrame { .. })
            })
            .await;
            let Some(NetEvent::PeerFrame {
                from,
                stream,
                kind,
                body,
            }) = e
            else {
                panic!("only {got} frames arrived");
            };
            assert_eq!(from, a.node());
            let i = u32::from_le_bytes(body[..4].try_into().unwrap());
            let expected = next.entry(stream).or_insert(0u32);
            assert_eq!(i, *expected, "out of order on {stream:?}");
            assert_eq!(kind, 16 + (i % 200) as u8);
            *expected += 1;
            got += 1;
        }
        let sent = a.peer_stats(b.node());
        let received = b.peer_stats(a.node());
        assert_eq!(sent.frames_sent, u64::from(n) * 3);
        // The receiver also counts the two data streams' opening frames.
        assert_eq!(received.frames_received, u64::from(n) * 3 + 2);
        assert_eq!(sent.drops_queue_full + sent.drops_no_link, 0);
        // The round trip time gauge is refreshed every discovery interval.
        tokio::time::sleep(Timing::default().discovery_interval * 2).await;
        let rtt_us = a.peer_stats(b.node()).rtt_us;
        assert!(rtt_us > 0 && rtt_us < 1_000_000, "rtt {rtt_us} µs");
        // A frame for a node without a link is dropped and counted.
        let stranger = NodeId::from_name("nobody@127.0.0.9");
        a.try_send(Outgoing {
            node: stranger,
            stream: StreamId::Control,
            kind: 16,
            body: Bytes::new(),
        })
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(a.peer_stats(stranger).drops_no_link, 1);
    });
}

/// The driver's answer to a malformed frame: the link is closed, counted
/// and replaced (the peer still runs).
#[test]
fn close_link_closes_counts_and_the_link_comes_back() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, _a_events) = start(settings(
        "c1@127.0.0.1",
        a_addr,
        Discovery::Static(vec![b_addr]),
    ))
    .unwrap();
    let (b, mut b_events) = start(settings(
        "c2@127.0.0.1",
        b_addr,
        Discovery::Static(vec![a_addr]),
    ))
    .unwrap();
    rt().block_on(async {
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(20)).await);
        // Past the start-up replacement of the link both sides dialed.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while b_events.try_recv().is_some() {}
        b.close_link(a.node(), "forward records layout 9 is not supported".into())
            .unwrap();
        let down = wait_event(
            &mut b_events,
            Duration::from_secs(10),
            |e| matches!(e, NetEvent::LinkDown { node } if *node == a.node()),
        )
        .await;
        assert!(down.is_some(), "the link with a went down");
        assert_eq!(b.peer_stats(a.node()).malformed_frames, 1);
        let up = wait_event(
            &mut b_events,
            Duration::from_secs(20),
            |e| matches!(e, NetEvent::LinkUp { node } if *node == a.node()),
        )
        .await;
        assert!(up.is_some(), "a new link replaced it");
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(5)).await);
    });
}

/// Both sides of a refused link say why; the refused node runs alone.
async fn assert_refused_both_sides(
    a: &ClusterHandle,
    a_events: &mut ClusterEvents,
    b_events: &mut ClusterEvents,
    needle: &str,
) {
    for events in [a_events, b_events] {
        let e = wait_event(events, Duration::from_secs(10), |e| {
            matches!(e, NetEvent::Refused { .. })
        })
        .await;
        match e {
            Some(NetEvent::Refused { reason, .. }) => {
                assert!(
                    reason.contains(needle),
                    "reason {reason:?} does not mention {needle:?}"
                )
            }
            other => panic!("no refusal: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running(a), vec![a.members()[0].name.clone()]);
}

#[test]
fn a_wrong_cookie_is_refused_on_both_sides() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, mut a_events) = start(settings("c1@127.0.0.1", a_addr, Discovery::Manual)).unwrap();
    let mut s = settings("c2@127.0.0.1", b_addr, Discovery::Manual);
    s.cookie = "other".into();
    let (b, mut b_events) = start(s).unwrap();
    rt().block_on(async {
        b.join(a_addr).unwrap();
        assert_refused_both_sides(&a, &mut a_events, &mut b_events, "cookie mismatch").await;
        assert_eq!(running(&b).len(), 1);
    });
}

#[test]
fn a_wrong_cluster_name_is_refused_on_both_sides_once_per_pause() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, mut a_events) = start(settings("n1@127.0.0.1", a_addr, Discovery::Manual)).unwrap();
    // A seed list naming a node of another cluster: discovery dials it
    // every tick, but not again for a while once refused.
    let mut s = settings("n2@127.0.0.1", b_addr, Discovery::Static(vec![a_addr]));
    s.cluster_name = "othercl".into();
    s.timing.discovery_interval = Duration::from_millis(200);
    let (b, mut b_events) = start(s).unwrap();
    rt().block_on(async {
        assert_refused_both_sides(&a, &mut a_events, &mut b_events, "cluster name mismatch").await;
        assert_eq!(running(&b).len(), 1);
        let again = wait_event(&mut a_events, Duration::from_secs(2), |e| {
            matches!(e, NetEvent::Refused { .. })
        })
        .await;
        assert_eq!(again, None, "redialed within the refusal pause");
    });
}

#[test]
fn two_names_with_one_node_id_are_refused() {
    // FNV-1a 32 collides often enough to find a pair quickly.
    let mut seen = std::collections::HashMap::new();
    let (first, second) = (0u32..)
        .find_map(|i| {
            let name = format!("x{i}@127.0.0.1");
            let id = NodeId::from_name(&name);
            seen.insert(id, name.clone()).map(|other| (other, name))
        })
        .unwrap();
    assert_eq!(NodeId::from_name(&first), NodeId::from_name(&second));
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, mut a_events) = start(settings(&first, a_addr, Discovery::Manual)).unwrap();
    let (b, mut b_events) = start(settings(&second, b_addr, Discovery::Manual)).unwrap();
    rt().block_on(async {
        b.join(a_addr).unwrap();
        assert_refused_both_sides(&a, &mut a_events, &mut b_events, "node id collision").await;
        assert_eq!(running(&b).len(), 1);
    });
}

/// Threads spinning on every core (as shards at 100 % CPU do) must not
/// make a live node look dead: the cluster thread still gets its turn.
#[test]
fn busy_cores_cause_no_false_down() {
    let _cpu = crate::test_support::cpu_heavy();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp_port("127.0.0.1")).collect();
    let names = ["b1@127.0.0.1", "b2@127.0.0.1", "b3@127.0.0.1"];
    let mut nodes: Vec<_> = (0..3)
        .map(|i| {
            start(settings(
                names[i],
                addrs[i],
                Discovery::Static(addrs.clone()),
            ))
            .unwrap()
        })
        .collect();
    rt().block_on(async {
        let handles: Vec<&ClusterHandle> = nodes.iter().map(|(h, _)| h).collect();
        assert!(wait_running(&handles, 3, Duration::from_secs(20)).await);
    });
    let spin_for = Duration::from_secs(8);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores * 2)
        .map(|_| {
            std::thread::spawn(move || {
                let end = Instant::now() + spin_for;
                let mut x = 0u64;
                while Instant::now() < end {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    for s in spinners {
        s.join().unwrap();
    }
    for (h, events) in nodes.iter_mut() {
        while let Some(e) = events.try_recv() {
            assert!(
                !matches!(e, NetEvent::MemberDown { .. }),
                "{}: false down under load: {e:?}",
                h.node()
            );
        }
        assert_eq!(running(h).len(), 3);
    }
}

#[test]
fn leave_is_seen_at_once_and_join_and_force_leave_come_back() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, mut a_events) = start(settings("l1@127.0.0.1", a_addr, Discovery::Manual)).unwrap();
    let (b, _b_events) = start(settings("l2@127.0.0.1", b_addr, Discovery::Manual)).unwrap();
    let b_id = b.node();
    let is_up = move |e: &NetEvent| matches!(e, NetEvent::MemberUp { node, .. } if *node == b_id);
    let is_down = move |e: &NetEvent| *e == NetEvent::MemberDown { node: b_id };
    rt().block_on(async {
        b.join(a_addr).unwrap();
        assert!(wait_event(&mut a_events, Duration::from_secs(10), is_up)
            .await
            .is_some());
        let left_at = Instant::now();
        b.leave().unwrap();
        assert!(wait_event(&mut a_events, Duration::from_secs(3), is_down)
            .await
            .is_some());
        println!("leave seen after {:?}", left_at.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let listed = b.members();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].state, MemberState::Stopped);
        // No redial while left (b's remembered peers were cleared).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(running(&a), vec!["l1@127.0.0.1".to_string()]);

        b.join(a_addr).unwrap();
        assert!(wait_event(&mut a_events, Duration::from_secs(10), is_up)
            .await
            .is_some());
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(5)).await);

        // Forced out while running: b finds itself down and rejoins.
        a.force_leave(b_id).unwrap();
        assert!(wait_event(&mut a_events, Duration::from_secs(3), is_down)
            .await
            .is_some());
        assert!(wait_event(&mut a_events, Duration::from_secs(15), is_up)
            .await
            .is_some());
    });
}

#[test]
fn a_singleton_has_no_endpoint_and_lists_itself() {
    let addr = free_udp_port("127.0.0.1");
    let (h, mut events) = start(settings("solo@127.0.0.1", addr, Discovery::Singleton)).unwrap();
    assert_eq!(h.join(addr), Err(CommandError::NoCluster));
    let out = Outgoing {
        node: NodeId(1),
        stream: StreamId::Control,
        kind: 16,
        body: Bytes::new(),
    };
    assert_eq!(h.try_send(out.clone()), Err(out));
    assert_eq!(running(&h), vec!["solo@127.0.0.1".to_string()]);
    assert_eq!(events.try_recv(), None);
    // Nothing bound the port.
    UdpSocket::bind(addr).unwrap();
}
