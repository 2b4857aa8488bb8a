//! The Redis backend of durable sessions against a real Redis Cluster
//! (scripts/redis-cluster.py: 3 masters, 3 replicas on loopback): round
//! trips, replacement, removal, idempotent retries, fencing, TTLs,
//! retained buckets, a node's restart, a master killed mid-run; and on
//! every node, no `KEYS` ever ran and no command was refused CROSSSLOT.

mod redis_cluster;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis_cluster::{available, RedisCluster};
use ringmq::durable::redis::{start, Error, RedisHandle, RedisSettings};
use ringmq::durable::{DeliveryRecord, DeliveryState, Op, SessionMeta, StoreHandle};
use ringmq::session::snapshot::{
    AwaitingSnapshot, DeliverySnapshot, DropsSnapshot, InflightSnapshot, MessageSnapshot,
    QueuedSnapshot, SubscriptionSnapshot,
};
use ringmq::session::SessionSnapshot;

/// One cluster for the tests that do not kill a node (each uses its own
/// client ids and node names).
fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn settings(cluster: &RedisCluster, replica_acks: u32) -> RedisSettings {
    RedisSettings {
        cluster: true,
        servers: cluster.seeds[..3].to_vec(),
        password: String::new(),
        replica_acks,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn message(topic: &str, payload: &str) -> MessageSnapshot {
    MessageSnapshot {
        topic: topic.into(),
        payload: Bytes::from(payload.to_string()),
        qos: 1,
        retain: false,
        payload_format_indicator: None,
        message_expiry_interval_s: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![("k".into(), "v".into())],
        content_type: None,
        origin: Some("node-x".into()),
        expires_at_unix_ms: None,
    }
}

fn delivery(payload: &str) -> DeliverySnapshot {
    DeliverySnapshot {
        message: message("t/1", payload),
        qos: 1,
        retain: false,
        subscription_ids: vec![3],
        id: None,
    }
}

fn queued(payload: &str) -> Box<DeliveryRecord> {
    Box::new(DeliveryRecord {
        delivery: delivery(payload),
        state: DeliveryState::Queued,
    })
}

/// A session with one inflight delivery (seq 4) and two queued (5, 6).
fn snapshot(client: &str, expires_at_unix_ms: Option<u64>) -> SessionSnapshot {
    SessionSnapshot {
        client_id: client.into(),
        expiry_interval_s: 3600,
        expires_at_unix_ms,
        subscriptions: vec![SubscriptionSnapshot {
            filter: "t/#".into(),
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            identifier: Some(3),
        }],
        inflight: vec![InflightSnapshot {
            packet_id: 9,
            seq: 4,
            awaiting: AwaitingSnapshot::PubAck,
            transmitted: true,
            delivery: delivery("in-flight"),
        }],
        next_packet_id: 10,
        next_seq: 7,
        queue: vec![
            QueuedSnapshot {
                seq: 5,
                delivery: delivery("q5"),
            },
            QueuedSnapshot {
                seq: 6,
                delivery: delivery("q6"),
            },
        ],
        queue_len_max: 100,
        incoming_qos2: vec![2],
        drops: DropsSnapshot::default(),
        will: None,
    }
}

fn meta_of(s: &SessionSnapshot, epoch: u64) -> SessionMeta {
    SessionMeta {
        client_id: s.client_id.clone(),
        epoch,
        expiry_interval_s: s.expiry_interval_s,
        expires_at_unix_ms: s.expires_at_unix_ms,
        subscriptions: s.subscriptions.clone(),
        next_packet_id: s.next_packet_id,
        next_seq: s.next_seq,
        queue_len_max: s.queue_len_max,
        incoming_qos2: s.incoming_qos2.clone(),
        drops: s.drops,
        will: s.will.clone(),
    }
}

fn put_session(client: &str, epoch: u64, expires: Option<u64>) -> Op {
    Op::PutSession {
        client: client.into(),
        epoch,
        snapshot: Box::new(snapshot(client, expires)),
    }
}

/// Sends `ops` as one batch and waits until Redis acknowledged it.
fn write(store: &mut StoreHandle, ops: Vec<Op>) {
    let batch = store.seal(ops);
    let ticket = batch.ticket;
    store
        .batches
        .blocking_send(batch)
        .expect("redis thread alive");
    wait_synced(store, ticket);
}

fn wait_synced(store: &StoreHandle, ticket: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.synced.ticket() < ticket {
        assert!(
            Instant::now() < deadline,
            "ticket {ticket} not synced in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn open(cluster: &RedisCluster, node: &str, shards: usize) -> (Vec<StoreHandle>, RedisHandle) {
    start(&settings(cluster, 1), node, shards).expect("connect to the test cluster")
}

fn close(stores: Vec<StoreHandle>, handle: RedisHandle) {
    drop(stores);
    handle.join();
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn seqs(handle: &RedisHandle, client: &str, epoch: u64) -> Vec<(u64, String)> {
    let s = block(handle.load_session(client, epoch))
        .expect("load")
        .expect("session stored");
    s.deliveries
        .iter()
        .map(|(seq, d)| {
            let p = String::from_utf8_lossy(&d.delivery.message.payload).into_owned();
            (*seq, p)
        })
        .collect()
}

fn put_delivery(client: &str, epoch: u64, seq: u64, record: Box<DeliveryRecord>) -> Op {
    Op::PutDelivery {
        client: client.into(),
        epoch,
        seq,
        record,
        fresh: false,
    }
}

fn remove_delivery(client: &str, epoch: u64, seq: u64) -> Op {
    Op::RemoveDelivery {
        client: client.into(),
        epoch,
        seq,
    }
}

#[test]
fn round_trip_of_a_session_and_its_deliveries() {
    if !available("round_trip_of_a_session_and_its_deliveries") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "rt-node", 1);
    let c = "rt-client";
    write(
        &mut stores[0],
        vec![
            put_session(c, 1, None),
            put_delivery(c, 1, 7, queued("d7")),
            remove_delivery(c, 1, 5),
        ],
    );
    let snap = snapshot(c, None);
    let mut meta = meta_of(&snap, 2);
    meta.next_seq = 8;
    write(
        &mut stores[0],
        vec![Op::PutMeta {
            client: c.into(),
            meta: Box::new(meta.clone()),
        }],
    );
    let s = block(handle.load_session(c, 3)).unwrap().unwrap();
    meta.epoch = 3;
    assert_eq!(s.meta, meta);
    let got: Vec<u64> = s.deliveries.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(got, vec![4, 6, 7]);
    assert_eq!(
        s.deliveries[0].1.state,
        DeliveryState::Inflight {
            packet_id: 9,
            awaiting: AwaitingSnapshot::PubAck,
            transmitted: true
        }
    );
    assert_eq!(s.deliveries[0].1.delivery, delivery("in-flight"));
    assert_eq!(s.deliveries[2].1, *queued("d7"));
    let counters = handle.counters();
    assert!(
        counters.scripts >= 2 && counters.fenced == 0,
        "{counters:?}"
    );
    close(stores, handle);
    cluster.assert_no_keys_and_no_crossslot();
}

#[test]
fn put_session_replaces_everything_stored() {
    if !available("put_session_replaces_everything_stored") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "replace-node", 1);
    let c = "replace-client";
    write(
        &mut stores[0],
        vec![
            put_session(c, 1, None),
            put_delivery(c, 1, 50, queued("old")),
        ],
    );
    let mut fresh = snapshot(c, None);
    fresh.inflight.clear();
    fresh.queue = vec![QueuedSnapshot {
        seq: 0,
        delivery: delivery("new"),
    }];
    fresh.next_seq = 1;
    write(
        &mut stores[0],
        vec![Op::PutSession {
            client: c.into(),
            epoch: 1,
            snapshot: Box::new(fresh),
        }],
    );
    assert_eq!(seqs(&handle, c, 2), vec![(0, "new".to_string())]);
    close(stores, handle);
}

#[test]
fn remove_session_removes_its_keys_and_its_index_entry() {
    if !available("remove_session_removes_its_keys_and_its_index_entry") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "rm-node", 1);
    let c = "rm-client";
    write(&mut stores[0], vec![put_session(c, 1, None)]);
    let index = "ringmq:node:{rm-node}:sessions";
    assert_eq!(cluster.cli_key(&["SISMEMBER", index, c]), "1");
    write(
        &mut stores[0],
        vec![Op::RemoveSession {
            client: c.into(),
            epoch: 1,
        }],
    );
    assert_eq!(cluster.cli_key(&["EXISTS", "{c:rm-client}:meta"]), "0");
    assert_eq!(cluster.cli_key(&["EXISTS", "{c:rm-client}:d"]), "0");
    assert_eq!(cluster.cli_key(&["SISMEMBER", index, c]), "0");
    // The owner record stays a while as a tombstone that fences.
    let ttl: i64 = cluster
        .cli_key(&["PTTL", "{c:rm-client}:own"])
        .parse()
        .unwrap();
    assert!(ttl > 0, "tombstone TTL {ttl}");
    // A stale write after the removal does not bring the session back.
    write(&mut stores[0], vec![put_delivery(c, 1, 9, queued("late"))]);
    assert_eq!(cluster.cli_key(&["EXISTS", "{c:rm-client}:d"]), "0");
    assert!(handle.counters().gone >= 1);
    assert_eq!(block(handle.load_session(c, 2)).unwrap(), None);
    close(stores, handle);
}

#[test]
fn a_retried_batch_never_duplicates_a_delivery() {
    if !available("a_retried_batch_never_duplicates_a_delivery") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "idem-node", 1);
    let c = "idem-client";
    write(&mut stores[0], vec![put_session(c, 1, None)]);
    let ops: Vec<Op> = (10..20)
        .map(|seq| put_delivery(c, 1, seq, queued(&format!("m{seq}"))))
        .chain([remove_delivery(c, 1, 10)])
        .collect();
    write(&mut stores[0], ops.clone());
    write(&mut stores[0], ops);
    let got = seqs(&handle, c, 2);
    let want: Vec<u64> = [4, 5, 6].into_iter().chain(11..20).collect();
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), want);
    assert_eq!(cluster.cli_key(&["HLEN", "{c:idem-client}:d"]), "12");
    close(stores, handle);
}

#[test]
fn a_stale_owner_is_fenced_after_another_node_took_the_session() {
    if !available("a_stale_owner_is_fenced_after_another_node_took_the_session") {
        return;
    }
    let cluster = shared_cluster();
    let (mut old_stores, old) = open(cluster, "fence-old", 1);
    let (mut new_stores, new) = open(cluster, "fence-new", 1);
    let c = "fence-client";
    write(&mut old_stores[0], vec![put_session(c, 5, None)]);
    // The new node resumes it: epoch 6 fences epoch 5.
    let taken = block(new.load_session(c, 6)).unwrap().unwrap();
    assert_eq!(taken.meta.epoch, 6);
    assert_eq!(
        block(new.load_session(c, 6)),
        Err(Error::Fenced { stored_epoch: 6 })
    );
    // The paused old owner wakes up and writes with its epoch.
    write(
        &mut old_stores[0],
        vec![
            put_delivery(c, 5, 30, queued("stale")),
            remove_delivery(c, 5, 4),
        ],
    );
    assert_eq!(old.counters().fenced, 2);
    let fenced = old.fenced(0).pop().expect("fenced answer for the shard");
    assert_eq!((&*fenced.client, fenced.stored_epoch), (c, 6));
    // The new owner's writes go through; nothing of the stale one landed.
    write(
        &mut new_stores[0],
        vec![put_delivery(c, 6, 31, queued("fresh"))],
    );
    let got: Vec<u64> = seqs(&new, c, 7).iter().map(|(s, _)| *s).collect();
    assert_eq!(got, vec![4, 5, 6, 31]);
    // The old node's restart no longer finds it (the owner is the new node).
    let restored = block(old.load_node()).unwrap();
    assert!(restored.sessions.iter().all(|s| s.meta.client_id != c));
    close(old_stores, old);
    close(new_stores, new);
}

#[test]
fn ttl_follows_session_expiry_and_keys_are_gone_after_it() {
    if !available("ttl_follows_session_expiry_and_keys_are_gone_after_it") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "ttl-node", 1);
    let c = "ttl-client";
    let keys = [
        "{c:ttl-client}:own",
        "{c:ttl-client}:meta",
        "{c:ttl-client}:d",
    ];
    write(&mut stores[0], vec![put_session(c, 1, None)]);
    for k in keys {
        assert_eq!(cluster.cli_key(&["PTTL", k]), "-1", "{k} online: no TTL");
    }
    // Offline: expires in 20 s (room for a loaded machine).
    let mut meta = meta_of(&snapshot(c, None), 1);
    meta.expires_at_unix_ms = Some(now_ms() + 20_000);
    write(
        &mut stores[0],
        vec![Op::PutMeta {
            client: c.into(),
            meta: Box::new(meta.clone()),
        }],
    );
    for k in keys {
        let ttl: i64 = cluster.cli_key(&["PTTL", k]).parse().unwrap();
        assert!((1..=20_000).contains(&ttl), "{k} offline: TTL {ttl}");
    }
    // Back online before it expires: the TTL is removed.
    meta.expires_at_unix_ms = None;
    write(
        &mut stores[0],
        vec![Op::PutMeta {
            client: c.into(),
            meta: Box::new(meta.clone()),
        }],
    );
    for k in keys {
        assert_eq!(cluster.cli_key(&["PTTL", k]), "-1", "{k} online again");
    }
    meta.expires_at_unix_ms = Some(now_ms() + 1_000);
    write(
        &mut stores[0],
        vec![
            Op::PutMeta {
                client: c.into(),
                meta: Box::new(meta),
            },
            put_delivery(c, 1, 7, queued("x")),
        ],
    );
    std::thread::sleep(Duration::from_millis(1_600));
    for k in keys {
        assert_eq!(cluster.cli_key(&["EXISTS", k]), "0", "{k} after expiry");
    }
    let restored = block(handle.load_node()).unwrap();
    assert!(restored.sessions.iter().all(|s| s.meta.client_id != c));
    assert_eq!(
        cluster.cli_key(&["SISMEMBER", "ringmq:node:{ttl-node}:sessions", c]),
        "0",
        "load_node cleans the index of expired sessions"
    );
    close(stores, handle);
}

#[test]
fn retained_messages_live_in_buckets_and_load_at_start() {
    if !available("retained_messages_live_in_buckets_and_load_at_start") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "ret-node", 1);
    let mut ops: Vec<Op> = (0..300)
        .map(|i| Op::PutRetained {
            topic: format!("ret-test/{i}").into(),
            message: Box::new(message(&format!("ret-test/{i}"), &format!("v{i}"))),
        })
        .collect();
    ops.push(Op::RemoveRetained {
        topic: "ret-test/0".into(),
    });
    write(&mut stores[0], ops);
    write(
        &mut stores[0],
        vec![Op::PutRetained {
            topic: "ret-test/1".into(),
            message: Box::new(message("ret-test/1", "v1-bis")),
        }],
    );
    close(stores, handle);
    let (stores, handle) = open(cluster, "ret-other-node", 1);
    let restored = block(handle.load_node()).unwrap();
    let mut mine: Vec<(String, String)> = restored
        .retained
        .iter()
        .filter(|(t, _)| t.starts_with("ret-test/"))
        .map(|(t, m)| (t.clone(), String::from_utf8_lossy(&m.payload).into_owned()))
        .collect();
    mine.sort();
    assert_eq!(mine.len(), 299);
    assert!(mine.iter().all(|(t, _)| t != "ret-test/0"));
    assert!(mine.contains(&("ret-test/1".into(), "v1-bis".into())));
    let with_any: usize = (0..ringmq::limits::RETAINED_BUCKETS)
        .filter(|b| cluster.cli_key(&["EXISTS", &format!("ringmq:retained:{{b{b}}}")]) == "1")
        .count();
    assert!(with_any > 100, "300 topics spread over {with_any} buckets");
    close(stores, handle);
    cluster.assert_no_keys_and_no_crossslot();
}

#[test]
fn load_node_after_a_restart_restores_this_nodes_sessions_only() {
    if !available("load_node_after_a_restart_restores_this_nodes_sessions_only") {
        return;
    }
    let cluster = shared_cluster();
    let (mut stores, handle) = open(cluster, "restart-node", 2);
    for i in 0..40 {
        let c = format!("restart-client-{i}");
        let shard = i % 2;
        write(&mut stores[shard], vec![put_session(&c, 1, None)]);
    }
    let (mut other, other_handle) = open(cluster, "restart-other", 1);
    write(
        &mut other[0],
        vec![put_session("restart-elsewhere", 1, None)],
    );
    close(other, other_handle);
    close(stores, handle);
    let (stores, handle) = open(cluster, "restart-node", 2);
    let restored = block(handle.load_node()).unwrap();
    let mut ids: Vec<String> = restored
        .sessions
        .iter()
        .map(|s| s.meta.client_id.clone())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("restart-client-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(restored.sessions.iter().all(|s| s.deliveries.len() == 3));
    close(stores, handle);
}

#[test]
fn a_single_redis_server_works_too() {
    if !available("a_single_redis_server_works_too") {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("ringmq-redis-single-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let settings = RedisSettings {
        cluster: false,
        servers: vec![format!("127.0.0.1:{port}")],
        password: String::new(),
        replica_acks: 0,
    };
    let (mut stores, handle) = start(&settings, "single-node", 1).expect("single redis");
    write(&mut stores[0], vec![put_session("single-client", 1, None)]);
    let restored = block(handle.load_node()).unwrap();
    assert_eq!(restored.sessions.len(), 1);
    close(stores, handle);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_server_list_stops_the_start_naming_the_key() {
    let bad = RedisSettings {
        cluster: true,
        servers: vec!["127.0.0.1".into()],
        password: String::new(),
        replica_acks: 0,
    };
    let e = start(&bad, "n", 1).err().expect("refused").to_string();
    assert!(e.contains("redis.servers[0]"), "{e}");
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = RedisSettings {
        servers: vec![format!("127.0.0.1:{closed_port}")],
        ..bad
    };
    let e = start(&unreachable, "n", 1)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("cannot connect") && e.contains("[redis]"), "{e}");
}

/// A master is killed while batches stream in; the cluster fails over to
/// its replica. Every write whose ticket was published is there after.
#[test]
fn a_master_killed_mid_run_loses_no_published_write() {
    if !available("a_master_killed_mid_run_loses_no_published_write") {
        return;
    }
    let cluster = RedisCluster::start();
    let (mut stores, handle) = open(&cluster, "failover-node", 1);
    let clients: Vec<Arc<str>> = (0..30).map(|i| format!("fo-{i}").into()).collect();
    for c in &clients {
        write(&mut stores[0], vec![put_session(c, 1, None)]);
    }
    let store = &mut stores[0];
    let mut last_ticket = 0;
    let victim = cluster.masters()[0];
    let started = Instant::now();
    let mut killed = false;
    let mut seq = 100u64;
    while started.elapsed() < Duration::from_secs(12) {
        if !killed && started.elapsed() > Duration::from_secs(2) {
            // SIGKILL: no chance to flush anything.
            unsafe { libc::kill(victim.1 as i32, libc::SIGKILL) };
            killed = true;
        }
        let ops = clients
            .iter()
            .map(|c| Op::PutDelivery {
                client: c.clone(),
                epoch: 1,
                seq,
                record: queued(&format!("{c}-{seq}")),
                fresh: false,
            })
            .collect();
        seq += 1;
        let batch = store.seal(ops);
        last_ticket = batch.ticket;
        store.batches.blocking_send(batch).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_synced(store, last_ticket);
    let counters = handle.counters();
    assert!(
        counters.retries > 0
            && counters.errors_io + counters.errors_cluster + counters.errors_timeout > 0,
        "the kill was seen and retried: {counters:?}"
    );
    for c in &clients {
        let got: std::collections::BTreeSet<u64> =
            seqs(&handle, c, 2).iter().map(|(s, _)| *s).collect();
        for s in 100..seq {
            assert!(got.contains(&s), "{c}: published delivery {s} lost");
        }
    }
    eprintln!("failover: {counters:?}");
    close(stores, handle);
    cluster.assert_no_keys_and_no_crossslot();
}

/// Throughput through the backend (docs/durability.md, "The Redis backend", "Measured"):
/// QoS-1-sized deliveries (100-byte payload) written then removed, `n`
/// ops per batch over 100 clients per shard, batches sent as fast as the
/// channel takes them for 3 s. Run with
/// `cargo test --release --test durable_redis -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_ops_per_second() {
    if !available("measure_ops_per_second") {
        return;
    }
    let cluster = shared_cluster();
    let payload = "x".repeat(100);
    println!("| replica_acks | shards | ops/batch | ops/s | batches/s |");
    println!("|---|---|---|---|---|");
    for acks in [1, 0] {
        for shards in [1usize, 2] {
            for per_batch in [1usize, 10, 100] {
                let node = format!("bench-{acks}-{shards}-{per_batch}");
                let (stores, handle) =
                    start(&settings(cluster, acks), &node, shards).expect("connect");
                let threads: Vec<_> = stores
                    .into_iter()
                    .enumerate()
                    .map(|(shard, mut store)| {
                        let payload = payload.clone();
                        std::thread::spawn(move || {
                            let clients: Vec<Arc<str>> = (0..100)
                                .map(|i| format!("bench-{shard}-{i}").into())
                                .collect();
                            let mut ops_done = 0u64;
                            let mut batches = 0u64;
                            for c in &clients {
                                write(&mut store, vec![put_session(c, 1, None)]);
                            }
                            let begin = Instant::now();
                            let mut k = 0u64;
                            let mut last = 0;
                            while begin.elapsed() < Duration::from_secs(3) {
                                let ops: Vec<Op> = (0..per_batch)
                                    .map(|_| {
                                        let client = clients[((k / 2) % 100) as usize].clone();
                                        let seq = 1_000 + k / 2;
                                        let op = if k % 2 == 0 {
                                            Op::PutDelivery {
                                                client,
                                                epoch: 1,
                                                seq,
                                                record: queued(&payload),
                                                fresh: false,
                                            }
                                        } else {
                                            Op::RemoveDelivery {
                                                client,
                                                epoch: 1,
                                                seq,
                                            }
                                        };
                                        k += 1;
                                        op
                                    })
                                    .collect();
                                let batch = store.seal(ops);
                                last = batch.ticket;
                                store.batches.blocking_send(batch).unwrap();
                                ops_done += per_batch as u64;
                                batches += 1;
                            }
                            wait_synced(&store, last);
                            (ops_done, batches, begin.elapsed(), store)
                        })
                    })
                    .collect();
                let mut total_ops = 0;
                let mut total_batches = 0;
                let mut longest = Duration::ZERO;
                let mut stores = Vec::new();
                for t in threads {
                    let (ops, batches, took, store) = t.join().unwrap();
                    total_ops += ops;
                    total_batches += batches;
                    longest = longest.max(took);
                    stores.push(store);
                }
                let secs = longest.as_secs_f64();
                println!(
                    "| {acks} | {shards} | {per_batch} | {:.0} | {:.0} |",
                    total_ops as f64 / secs,
                    total_batches as f64 / secs
                );
                close(stores, handle);
            }
        }
    }
}
