//! The builtin store with real files in a temp dir: what is written comes
//! back, modes, epochs, sessions replaced and removed, stores of a run
//! with more shards moved in. Damage and crashes: `tests_damage.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::durable::record::tests::{delivery, message, meta};
use crate::durable::{DeliveryRecord, DeliveryState, Op, StoredSession};
use crate::session::snapshot::{AwaitingSnapshot, QueuedSnapshot, SessionSnapshot};

/// A directory removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringmq-dstore-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn c(client: &str) -> Arc<str> {
    Arc::from(client)
}

pub(crate) fn put_meta(client: &str, epoch: u64) -> Op {
    Op::PutMeta {
        client: c(client),
        meta: Box::new(meta(client, epoch)),
    }
}

pub(crate) fn put_delivery(client: &str, epoch: u64, seq: u64) -> Op {
    Op::PutDelivery {
        client: c(client),
        epoch,
        seq,
        record: Box::new(delivery(seq, 1, DeliveryState::Queued)),
        fresh: false,
    }
}

/// Sends `ops` as the next batch and waits until its ticket is published.
pub(crate) fn send(handle: &mut StoreHandle, ops: Vec<Op>) -> u64 {
    let batch = handle.seal(ops);
    let ticket = batch.ticket;
    handle.batches.blocking_send(batch).unwrap();
    wait_for(handle, ticket);
    ticket
}

pub(crate) fn wait_for(handle: &StoreHandle, ticket: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.synced.ticket() < ticket {
        assert!(Instant::now() < deadline, "ticket {ticket} never published");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Closes cleanly (the channel closes, the writer syncs and ends).
pub(crate) fn close(handle: StoreHandle, writer: Writer) {
    drop(handle);
    writer.join().unwrap();
}

pub(crate) fn reopen(dir: &Path) -> Restored {
    let (handle, restored, writer) = open(dir, 0, SyncMode::Batch).unwrap();
    close(handle, writer);
    restored
}

fn seqs(session: &StoredSession) -> Vec<u64> {
    session.deliveries.iter().map(|(s, _)| *s).collect()
}

#[test]
fn what_was_written_comes_back_after_a_clean_close() {
    let dir = TempDir::new("clean");
    let (mut handle, restored, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    assert_eq!(restored, Restored::default());
    send(
        &mut handle,
        vec![
            put_meta("a", 1),
            put_delivery("a", 1, 3),
            put_delivery("a", 1, 1),
            put_delivery("a", 1, 256),
            put_meta("b", 1),
            Op::PutRetained {
                topic: c("r/1"),
                message: Box::new(message("r/1", b"one", 1)),
            },
            Op::PutRetained {
                topic: c("r/2"),
                message: Box::new(message("r/2", b"two", 0)),
            },
        ],
    );
    let inflight = DeliveryState::Inflight {
        packet_id: 9,
        awaiting: AwaitingSnapshot::PubAck,
        transmitted: true,
    };
    send(
        &mut handle,
        vec![
            Op::RemoveDelivery {
                client: c("a"),
                epoch: 1,
                seq: 3,
            },
            Op::PutDelivery {
                client: c("a"),
                epoch: 1,
                seq: 1,
                record: Box::new(delivery(1, 1, inflight)),
                fresh: false,
            },
            Op::RemoveRetained { topic: c("r/2") },
        ],
    );
    close(handle, writer);

    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions.len(), 2);
    let a = &restored.sessions[0];
    assert_eq!(a.meta, meta("a", 1));
    assert_eq!(seqs(a), [1, 256]);
    assert_eq!(a.deliveries[0].1.state, inflight);
    assert_eq!(restored.sessions[1].meta.client_id, "b");
    assert!(restored.sessions[1].deliveries.is_empty());
    assert_eq!(
        restored.retained,
        vec![("r/1".to_string(), message("r/1", b"one", 1))]
    );
}

/// A state-only change reaching the fjall engine (the shard sends these
/// to the log engine only) rewrites the stored delivery with its new
/// state, also when its put is in the same batch, and writes nothing for
/// a delivery not stored. Fails if the state were dropped or a delivery
/// made up.
#[test]
fn a_state_only_change_rewrites_the_stored_delivery() {
    let dir = TempDir::new("state");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    let state = |packet_id| DeliveryState::Inflight {
        packet_id,
        awaiting: crate::session::snapshot::AwaitingSnapshot::PubAck,
        transmitted: true,
    };
    let put_state = |seq, packet_id| Op::PutDeliveryState {
        client: c("a"),
        epoch: 1,
        seq,
        state: state(packet_id),
    };
    send(&mut handle, vec![put_meta("a", 1), put_delivery("a", 1, 1)]);
    send(
        &mut handle,
        vec![
            put_state(1, 7),
            put_delivery("a", 1, 2),
            put_state(2, 8),
            put_state(3, 9),
        ],
    );
    close(handle, writer);
    let restored = reopen(&dir.0);
    let a = &restored.sessions[0];
    assert_eq!(seqs(a), [1, 2]);
    assert_eq!(a.deliveries[0].1.state, state(7));
    assert_eq!(a.deliveries[1].1.state, state(8));
}

#[test]
fn each_mode_publishes_every_ticket_and_syncs_as_it_promises() {
    for mode in [SyncMode::None, SyncMode::Batch, SyncMode::Always] {
        let dir = TempDir::new("modes");
        let (mut handle, _, writer) = open(&dir.0, 0, mode).unwrap();
        let stats = writer.stats().clone();
        for seq in 1..=20 {
            let ticket = send(&mut handle, vec![put_delivery("a", 0, seq)]);
            assert_eq!(handle.synced.ticket(), ticket);
        }
        let syncs = stats.syncs.load(Ordering::Relaxed);
        let writes = stats.batches.load(Ordering::Relaxed);
        assert_eq!(stats.ops.load(Ordering::Relaxed), 20);
        match mode {
            // One sync per write (each send waits, so 20 writes); with
            // `batch` too, as the shard seals a batch per interval.
            SyncMode::Always | SyncMode::Batch => assert_eq!(syncs, writes, "{mode:?}"),
            SyncMode::None => assert_eq!(syncs, 0, "{mode:?}"),
        }
        close(handle, writer);
        // The clean close synced.
        assert_eq!(stats.syncs.load(Ordering::Relaxed), syncs + 1);
        let restored = reopen(&dir.0);
        // No meta record: the deliveries are orphans, dropped at open.
        assert!(restored.sessions.is_empty());
    }
}

/// `batch`: the writer syncs right after the write (the shard already
/// gathered for `batch_interval`; a timer here would add a second
/// interval to the promise), and only when something was written.
/// Failed with the writer's former timer (no sync until the interval).
#[test]
fn batch_mode_syncs_after_each_write_and_not_for_an_empty_batch() {
    let dir = TempDir::new("interval");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    let stats = writer.stats().clone();
    send(&mut handle, vec![put_meta("a", 0)]);
    assert_eq!(
        stats.syncs.load(Ordering::Relaxed),
        1,
        "synced before published"
    );
    send(&mut handle, vec![]);
    close(handle, writer);
    // The write's sync and the close's: none for the empty batch.
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 2);
}

/// `always`: a batch whose ops all cancelled in the shard comes empty;
/// its ticket is published without a sync (everything before it is
/// synced). Fails if the writer syncs every group.
#[test]
fn always_publishes_an_empty_batch_without_a_sync() {
    let dir = TempDir::new("empty");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    let stats = writer.stats().clone();
    send(&mut handle, vec![put_meta("a", 0)]);
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 1);
    let ticket = send(&mut handle, vec![]);
    assert_eq!(handle.synced.ticket(), ticket);
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 1);
    close(handle, writer);
}

#[test]
fn always_groups_the_batches_waiting_under_one_sync() {
    let dir = TempDir::new("group");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    let stats = writer.stats().clone();
    let mut last = 0;
    for seq in 0..500 {
        let batch = handle.seal(vec![put_delivery("a", 0, seq)]);
        last = batch.ticket;
        handle.batches.blocking_send(batch).unwrap();
    }
    wait_for(&handle, last);
    let syncs = stats.syncs.load(Ordering::Relaxed);
    assert!(syncs < 500, "{syncs} syncs for 500 batches sent at once");
    assert_eq!(syncs, stats.batches.load(Ordering::Relaxed));
    close(handle, writer);
}

#[test]
fn ops_below_the_stored_epoch_are_ignored() {
    let dir = TempDir::new("epoch");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    let stats = writer.stats().clone();
    send(&mut handle, vec![put_meta("a", 5), put_delivery("a", 5, 1)]);
    send(
        &mut handle,
        vec![
            put_meta("a", 4),
            put_delivery("a", 4, 2),
            Op::RemoveDelivery {
                client: c("a"),
                epoch: 4,
                seq: 1,
            },
            Op::RemoveSession {
                client: c("a"),
                epoch: 4,
            },
        ],
    );
    assert_eq!(stats.stale_ops.load(Ordering::Relaxed), 4);
    close(handle, writer);
    // Also across a restart: the epoch is read back.
    let (mut handle, restored, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    assert_eq!(restored.sessions[0].meta.epoch, 5);
    assert_eq!(seqs(&restored.sessions[0]), [1]);
    send(&mut handle, vec![put_delivery("a", 3, 7), put_meta("a", 6)]);
    assert_eq!(writer.stats().stale_ops.load(Ordering::Relaxed), 1);
    close(handle, writer);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions[0].meta.epoch, 6);
    assert_eq!(seqs(&restored.sessions[0]), [1]);
}

fn snapshot_of(client: &str, next_seq: u64, queued: usize) -> SessionSnapshot {
    let m = meta(client, 0);
    SessionSnapshot {
        client_id: client.into(),
        expiry_interval_s: m.expiry_interval_s,
        expires_at_unix_ms: m.expires_at_unix_ms,
        subscriptions: m.subscriptions,
        inflight: Vec::new(),
        next_packet_id: 1,
        next_seq,
        queue: (0..queued)
            .map(|i| QueuedSnapshot {
                seq: next_seq - queued as u64 + i as u64,
                delivery: delivery(i as u64, 2, DeliveryState::Queued).delivery,
            })
            .collect(),
        queue_len_max: 100,
        incoming_qos2: Vec::new(),
        drops: Default::default(),
        will: None,
    }
}

#[test]
fn put_session_replaces_everything_of_the_client_and_remove_session_removes_it() {
    let dir = TempDir::new("session");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    send(
        &mut handle,
        vec![
            put_meta("a", 1),
            put_delivery("a", 1, 1),
            put_meta("ab", 1),
            put_delivery("ab", 1, 1),
        ],
    );
    send(
        &mut handle,
        vec![
            // Written in the same batch before the session replaces it.
            put_delivery("a", 1, 2),
            Op::PutSession {
                client: c("a"),
                epoch: 2,
                snapshot: Box::new(snapshot_of("a", 50, 2)),
            },
            put_delivery("a", 2, 50),
        ],
    );
    close(handle, writer);
    let restored = reopen(&dir.0);
    let a = &restored.sessions[0];
    assert_eq!(a.meta.epoch, 2);
    assert_eq!(a.meta.next_seq, 50);
    assert_eq!(seqs(a), [48, 49, 50]);
    // "ab" shares the prefix "a" of the key, not its deliveries.
    assert_eq!(seqs(&restored.sessions[1]), [1]);

    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    send(
        &mut handle,
        vec![
            put_delivery("a", 2, 51),
            Op::RemoveSession {
                client: c("a"),
                epoch: 2,
            },
        ],
    );
    close(handle, writer);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions.len(), 1);
    assert_eq!(restored.sessions[0].meta.client_id, "ab");
}

#[test]
fn deliveries_without_a_session_are_dropped_at_open() {
    let dir = TempDir::new("orphans");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    send(
        &mut handle,
        vec![
            put_meta("a", 0),
            put_delivery("a", 0, 1),
            put_delivery("gone", 0, 1),
        ],
    );
    close(handle, writer);
    let store = Store::open(&store_dir(&dir.0, 0)).unwrap();
    assert_eq!(store.deliveries.len().unwrap(), 2);
    drop(store);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions.len(), 1);
    assert_eq!(seqs(&restored.sessions[0]), [1]);
    let store = Store::open(&store_dir(&dir.0, 0)).unwrap();
    assert_eq!(store.deliveries.len().unwrap(), 1, "the orphan is removed");
}

fn write_store(data_dir: &Path, shard: usize, ops: Vec<Op>) {
    let (mut handle, _, writer) = open(data_dir, shard, SyncMode::None).unwrap();
    send(&mut handle, ops);
    close(handle, writer);
}

#[test]
fn stores_of_a_run_with_more_shards_are_moved_in_and_removed() {
    let dir = TempDir::new("extra");
    let retained = |topic: &str, body: &[u8]| Op::PutRetained {
        topic: c(topic),
        message: Box::new(message(topic, body, 1)),
    };
    // The last run had 4 shards; this one has 2.
    write_store(
        &dir.0,
        0,
        vec![
            put_meta("a", 1),
            put_delivery("a", 1, 1),
            put_meta("b", 3),
            retained("t", b"own"),
        ],
    );
    write_store(
        &dir.0,
        2,
        vec![
            put_meta("a", 2),
            put_delivery("a", 2, 7),
            put_meta("b", 2),
            put_delivery("b", 2, 1),
            put_meta("c", 0),
            retained("t", b"extra"),
            retained("u", b"extra"),
        ],
    );
    write_store(&dir.0, 3, vec![put_meta("d", 0)]);
    std::fs::create_dir_all(dir.0.join("durable/shard-4.damaged-1")).unwrap();
    assert_eq!(extra_stores(&dir.0, 0, 2).unwrap(), [2]);
    assert_eq!(extra_stores(&dir.0, 1, 2).unwrap(), [3]);
    assert_eq!(extra_stores(&dir.0, 0, 4).unwrap(), Vec::<usize>::new());

    assert_eq!(absorb_extra(&dir.0, 0, 2).unwrap(), 1);
    assert!(!store_dir(&dir.0, 2).exists());
    assert_eq!(absorb_extra(&dir.0, 0, 2).unwrap(), 0);
    let restored = reopen(&dir.0);
    let by_client: Vec<(&str, u64, Vec<u64>)> = restored
        .sessions
        .iter()
        .map(|s| (s.meta.client_id.as_str(), s.meta.epoch, seqs(s)))
        .collect();
    // "a": the extra store's epoch 2 wins; "b": the own store's epoch 3.
    assert_eq!(
        by_client,
        [("a", 2, vec![7]), ("b", 3, vec![]), ("c", 0, vec![])]
    );
    let topics: Vec<(&str, &[u8])> = restored
        .retained
        .iter()
        .map(|(t, m)| (t.as_str(), &m.payload[..]))
        .collect();
    assert_eq!(topics, [("t", &b"own"[..]), ("u", &b"extra"[..])]);

    assert_eq!(absorb_extra(&dir.0, 1, 2).unwrap(), 1);
    let (handle, restored, writer) = open(&dir.0, 1, SyncMode::None).unwrap();
    close(handle, writer);
    assert_eq!(restored.sessions[0].meta.client_id, "d");
}

#[test]
fn a_delivery_record_key_names_its_client_and_seq() {
    // The delivery keys written by the store are the record module's.
    let dir = TempDir::new("keys");
    write_store(&dir.0, 0, vec![put_meta("a", 0), put_delivery("a", 0, 258)]);
    let store = Store::open(&store_dir(&dir.0, 0)).unwrap();
    let keys: Vec<Vec<u8>> = store
        .deliveries
        .iter()
        .map(|g| g.key().unwrap().to_vec())
        .collect();
    assert_eq!(keys, [b"a\0\0\0\0\0\0\0\x01\x02".to_vec()]);
    let record: DeliveryRecord =
        crate::durable::record::decode_delivery(&store.deliveries.get(&keys[0]).unwrap().unwrap())
            .unwrap();
    assert_eq!(record, delivery(258, 1, DeliveryState::Queued));
}

pub(crate) fn delivery_record(seq: u64) -> DeliveryRecord {
    delivery(seq, 1, DeliveryState::Queued)
}
