//! The log engine with real files: what is written comes back after a
//! clean close and after a crash (a copy of the files taken while the
//! writer runs), torn tails are cut, damage is refused with the file,
//! epochs fence, and compaction returns the disk to its baseline without
//! losing a live record.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::*;
use crate::durable::builtin::tests::{c, close, put_delivery, put_meta, send, TempDir};
use crate::durable::record::tests::{delivery, message};
use crate::durable::{DeliveryState, Op, StoredSession};

fn reopen(dir: &Path) -> Restored {
    let (handle, restored, writer) = open(dir, 0, SyncMode::Always).unwrap();
    close(handle, writer);
    restored
}

fn seqs(s: &StoredSession) -> Vec<u64> {
    s.deliveries.iter().map(|(q, _)| *q).collect()
}

fn remove(client: &str, seq: u64) -> Op {
    Op::RemoveDelivery {
        client: c(client),
        epoch: 1,
        seq,
    }
}

/// A copy of the store's files now: what a crash at this moment leaves.
fn crash_copy(dir: &Path, tag: &str) -> TempDir {
    let copy = TempDir::new(tag);
    let from = store_dir(dir, 0);
    let to = store_dir(&copy.0, 0);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    copy
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(store_dir(dir, 0))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn kept_state(seq: u64) -> DeliveryState {
    DeliveryState::Inflight {
        packet_id: (seq % 65_535 + 1) as u16,
        awaiting: crate::session::snapshot::AwaitingSnapshot::PubAck,
        transmitted: true,
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

#[test]
fn what_was_written_comes_back_after_a_clean_close_and_after_a_crash() {
    let dir = TempDir::new("log-clean");
    let (mut handle, restored, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
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
        awaiting: crate::session::snapshot::AwaitingSnapshot::PubAck,
        transmitted: true,
    };
    let pubrec = DeliveryState::Inflight {
        packet_id: 300,
        awaiting: crate::session::snapshot::AwaitingSnapshot::PubAck,
        transmitted: false,
    };
    send(
        &mut handle,
        vec![
            remove("a", 3),
            Op::PutDelivery {
                client: c("a"),
                epoch: 1,
                seq: 1,
                record: Box::new(delivery(1, 1, inflight)),
                fresh: false,
            },
            Op::RemoveRetained { topic: c("r/2") },
            // A state alone: six bytes after seq 256's record.
            Op::PutDeliveryState {
                client: c("a"),
                epoch: 1,
                seq: 256,
                state: pubrec,
            },
            // Of a delivery not stored: nothing.
            Op::PutDeliveryState {
                client: c("a"),
                epoch: 1,
                seq: 3,
                state: pubrec,
            },
        ],
    );
    // `always`: the ticket is synced, so a crash now keeps all of it.
    let crashed = crash_copy(&dir.0, "log-crash");
    close(handle, writer);
    for restored in [reopen(&dir.0), reopen(&crashed.0)] {
        assert_eq!(restored.sessions.len(), 2);
        let a = &restored.sessions[0];
        assert_eq!(a.meta.client_id, "a");
        assert_eq!(seqs(a), [1, 256]);
        assert_eq!(a.deliveries[0].1.state, inflight);
        assert_eq!(a.deliveries[1].1.state, pubrec);
        assert_eq!(restored.sessions[1].meta.client_id, "b");
        assert_eq!(restored.retained.len(), 1);
        assert_eq!(restored.retained[0].0, "r/1");
    }
}

/// A group cut anywhere by a crash is dropped whole; the groups before it
/// stay. Fails if the reader refused a torn tail or kept half a group.
#[test]
fn a_torn_tail_is_cut_and_the_earlier_groups_stay() {
    let dir = TempDir::new("log-torn");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    send(&mut handle, vec![put_meta("a", 1), put_delivery("a", 1, 1)]);
    let before = disk_bytes(&dir.0);
    send(
        &mut handle,
        (2..40).map(|s| put_delivery("a", 1, s)).collect(),
    );
    close(handle, writer);
    let seg = segments(&dir.0).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    for end in [
        before + 1,
        before + 17,
        (before + full.len() as u64) / 2,
        full.len() as u64 - 1,
    ] {
        let copy = TempDir::new("log-torn-copy");
        let to = store_dir(&copy.0, 0);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join(seg.file_name().unwrap()), &full[..end as usize]).unwrap();
        let restored = reopen(&copy.0);
        assert_eq!(seqs(&restored.sessions[0]), [1], "cut at {end}");
        // The tail is gone from the file, and new writes follow the rest.
        assert_eq!(disk_bytes(&copy.0), before, "cut at {end}");
    }
}

/// Damage followed by valid data is refused, naming the segment file and
/// the offset; nothing is dropped.
#[test]
fn damage_is_refused_with_the_file() {
    let dir = TempDir::new("log-damage");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Always).unwrap();
    send(&mut handle, vec![put_meta("a", 1), put_delivery("a", 1, 1)]);
    let first = disk_bytes(&dir.0);
    send(&mut handle, vec![put_delivery("a", 1, 2)]);
    close(handle, writer);
    let seg = segments(&dir.0).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = open(&dir.0, 0, SyncMode::Always).err().expect("refused");
    let text = err.to_string();
    assert!(err.is_damage(), "{text}");
    assert!(text.contains(&seg.display().to_string()), "{text}");
    assert!(text.contains("the group at byte 16 is damaged"), "{text}");
    assert!(text.contains("--durable-recover-damaged"), "{text}");
    // Nothing was changed: the file is as damaged as it was.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    assert!(disk_bytes(&dir.0) > first);
}

#[test]
fn a_stale_epoch_is_ignored_and_a_session_put_replaces_everything() {
    let dir = TempDir::new("log-epoch");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    send(
        &mut handle,
        vec![
            put_meta("a", 5),
            put_delivery("a", 5, 1),
            put_delivery("a", 5, 2),
        ],
    );
    // Epoch 4 is stale: ignored.
    send(&mut handle, vec![put_delivery("a", 4, 3), put_meta("a", 4)]);
    assert_eq!(writer.stats().stale_ops.load(Ordering::Relaxed), 2);
    close(handle, writer);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions[0].meta.epoch, 5);
    assert_eq!(seqs(&restored.sessions[0]), [1, 2]);

    // A session put (epoch 6) replaces meta and deliveries; a removal
    // takes everything of another client.
    let (mut handle, restored, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    let stored = restored.sessions[0].clone();
    let snapshot = crate::durable::record::session_snapshot(stored.meta, Vec::new());
    send(
        &mut handle,
        vec![
            put_meta("b", 1),
            put_delivery("b", 1, 7),
            Op::PutSession {
                client: c("a"),
                epoch: 6,
                snapshot: Box::new(snapshot),
            },
            Op::RemoveSession {
                client: c("b"),
                epoch: 1,
            },
        ],
    );
    close(handle, writer);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions.len(), 1);
    assert_eq!(restored.sessions[0].meta.epoch, 6);
    assert!(restored.sessions[0].deliveries.is_empty());
}

/// A store whose queues drained goes back to its baseline on disk, and a
/// compaction with live records keeps every one of them (reopened after
/// each step). Fails if compaction dropped a live record, kept a dead
/// segment, or never ran.
#[test]
fn compaction_frees_dead_segments_and_keeps_live_records() {
    let dir = TempDir::new("log-compact");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    send(&mut handle, vec![put_meta("keep", 1), put_meta("a", 1)]);
    let payload = bytes::Bytes::from(vec![0x42; 1000]);
    let mut seq = 0;
    // ~30 MiB of deliveries, each removed a batch later; one in 500 of
    // "keep"'s stays for good.
    for round in 0..300 {
        let mut ops = Vec::new();
        for _ in 0..100 {
            seq += 1;
            let mut r = delivery(seq, 1, DeliveryState::Queued);
            r.delivery.message.payload = payload.clone();
            let client = if seq % 500 == 0 { "keep" } else { "a" };
            ops.push(Op::PutDelivery {
                client: c(client),
                epoch: 1,
                seq,
                record: Box::new(r),
                fresh: false,
            });
            if client == "keep" {
                // Its state goes with it wherever compaction moves it.
                ops.push(Op::PutDeliveryState {
                    client: c(client),
                    epoch: 1,
                    seq,
                    state: kept_state(seq),
                });
            }
        }
        if round > 0 {
            for s in seq - 199..=seq - 100 {
                if s % 500 != 0 {
                    ops.push(remove("a", s));
                }
            }
        }
        send(&mut handle, ops);
    }
    let last: Vec<_> = ((seq - 99)..=seq)
        .filter(|s| s % 500 != 0)
        .map(|s| remove("a", s))
        .collect();
    send(&mut handle, last);
    let stats = writer.stats().clone();
    close(handle, writer);
    assert!(
        stats.compactions.load(Ordering::Relaxed) > 0,
        "never compacted"
    );
    let on_disk = disk_bytes(&dir.0);
    assert!(
        on_disk
            < crate::limits::DURABLE_LOG_COMPACT_MIN_BYTES
                + crate::limits::DURABLE_LOG_SEGMENT_BYTES,
        "{on_disk} bytes left on disk"
    );
    let restored = reopen(&dir.0);
    let keep = restored
        .sessions
        .iter()
        .find(|s| s.meta.client_id == "keep")
        .unwrap();
    assert_eq!(
        seqs(keep),
        (1..=seq).filter(|s| s % 500 == 0).collect::<Vec<_>>()
    );
    let a = restored
        .sessions
        .iter()
        .find(|s| s.meta.client_id == "a")
        .unwrap();
    assert!(a.deliveries.is_empty());
    assert_eq!(keep.deliveries[0].1.delivery.message.payload, payload);
    for (seq, d) in &keep.deliveries {
        assert_eq!(d.state, kept_state(*seq), "seq {seq}");
    }
}

#[test]
fn a_store_in_use_is_refused() {
    let dir = TempDir::new("log-locked");
    let (handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    let err = open(&dir.0, 0, SyncMode::Batch).err().expect("refused");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    close(handle, writer);
}

#[test]
fn deliveries_without_a_session_are_dropped_at_open() {
    let dir = TempDir::new("log-orphan");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    send(&mut handle, vec![put_delivery("x", 1, 1), put_meta("a", 1)]);
    close(handle, writer);
    let restored = reopen(&dir.0);
    assert_eq!(restored.sessions.len(), 1);
    // Dropped from the store too, not only from what came back.
    let (handle, _, writer) = open(&dir.0, 0, SyncMode::Batch).unwrap();
    close(handle, writer);
    let bytes = std::fs::read(segments(&dir.0).pop().unwrap()).unwrap();
    let parsed = segment::parse(&bytes, 1, true).unwrap();
    assert!(parsed
        .records
        .iter()
        .any(|r| r.kind == segment::Kind::RemoveSession && r.name == "x"));
}

/// A run with more shards left shard 2's store: shard 0 of a 2-shard run
/// takes it in (the higher epoch wins per client, a retained topic it holds
/// keeps its own record) and the extra store is gone.
#[test]
fn the_stores_of_a_run_with_more_shards_are_moved_in() {
    let dir = TempDir::new("log-absorb");
    let (mut own, _, w) = open(&dir.0, 0, SyncMode::Always).unwrap();
    send(
        &mut own,
        vec![
            put_meta("a", 5),
            Op::PutRetained {
                topic: c("r"),
                message: Box::new(message("r", b"own", 0)),
            },
        ],
    );
    close(own, w);
    let (mut extra, _, w) = open(&dir.0, 2, SyncMode::Always).unwrap();
    send(
        &mut extra,
        vec![
            put_meta("a", 3),
            put_meta("moved", 1),
            put_delivery("moved", 1, 4),
            Op::PutRetained {
                topic: c("r"),
                message: Box::new(message("r", b"extra", 0)),
            },
            Op::PutRetained {
                topic: c("r2"),
                message: Box::new(message("r2", b"extra", 0)),
            },
        ],
    );
    close(extra, w);
    assert_eq!(absorb_extra(&dir.0, 0, 2).unwrap(), 1);
    assert!(!store_dir(&dir.0, 2).exists());
    let restored = reopen(&dir.0);
    let ids: Vec<_> = restored
        .sessions
        .iter()
        .map(|s| (s.meta.client_id.as_str(), s.meta.epoch))
        .collect();
    assert_eq!(ids, [("a", 5), ("moved", 1)]);
    assert_eq!(seqs(&restored.sessions[1]), [4]);
    let retained: Vec<_> = restored
        .retained
        .iter()
        .map(|(t, m)| (t.as_str(), &m.payload[..]))
        .collect();
    assert_eq!(retained, [("r", &b"own"[..]), ("r2", &b"extra"[..])]);
    assert_eq!(absorb_extra(&dir.0, 0, 2).unwrap(), 0);
}

/// A writer that never finds its channel empty, writing about 1 MiB per
/// write: a queue that moves (each delivery removed three writes after
/// its put) and one in 200 deliveries kept for good, so no old segment
/// ever dies whole. The disk stays within twice the live bytes plus the
/// busy slack and two segments after every write, and every kept delivery
/// survives a reopen. Fails if a busy writer never copies (about 16
/// segments pile up against a bound of about 5), or if its compaction lost
/// a kept record.
#[test]
fn a_writer_that_is_never_idle_keeps_its_disk_bounded() {
    use crate::durable::record::tests::meta;
    use crate::durable::record::{append_delivery_for_group, append_meta_for_group};
    use crate::limits::{DURABLE_LOG_BUSY_SLACK_BYTES, DURABLE_LOG_SEGMENT_BYTES};
    use segment::{Group, Kind};

    let dir = TempDir::new("log-busy");
    let path = store_dir(&dir.0, 0);
    let (mut store, _) = store::LogStore::open(&path).unwrap();
    let mut housekeeping = writer::Housekeeping::default();
    let mut record = delivery(0, 1, DeliveryState::Queued);
    record.delivery.message.payload = bytes::Bytes::from(vec![0x42; 2000]);
    let mut group = Group::new();
    store
        .record_with(&mut group, Kind::Meta, "a", 1, |out| {
            append_meta_for_group(&meta("a", 1), out)
        })
        .unwrap();
    let (writes, per_write) = (80u64, 500u64);
    let kept = |seq: u64| seq % 200 == 0;
    let mut steps = 0;
    for write in 0..writes {
        for seq in write * per_write..(write + 1) * per_write {
            store
                .record_with(&mut group, Kind::Delivery, "a", seq, |out| {
                    append_delivery_for_group(&record, out)
                })
                .unwrap();
        }
        if let Some(old) = write.checked_sub(3) {
            for seq in (old * per_write..(old + 1) * per_write).filter(|&s| !kept(s)) {
                store.record(&mut group, Kind::RemoveDelivery, "a", seq, &[]);
            }
        }
        let written = std::mem::replace(&mut group, Group::new());
        let appended = store.write(written).unwrap().len() as u64;
        if housekeeping
            .after_write(&mut store, false, appended, std::time::Instant::now())
            .unwrap()
        {
            steps += 1;
        }
        let (total, live) = store.index.bytes();
        let bound = 2 * live + DURABLE_LOG_BUSY_SLACK_BYTES + 2 * DURABLE_LOG_SEGMENT_BYTES;
        assert!(total <= bound, "write {write}: {total} bytes, {live} live");
    }
    assert!(steps > 0, "never compacted");
    drop(store);
    let (_, restored) = store::LogStore::open(&path).unwrap();
    let a = &restored.sessions[0];
    let expect: Vec<u64> = (0..writes * per_write)
        .filter(|&s| kept(s) || s >= (writes - 3) * per_write)
        .collect();
    assert_eq!(seqs(a), expect);
}

/// A state record that does not decode, or whose state does not fit its
/// delivery's QoS, refuses the open with the file, never a guessed state.
/// Fails if a bad state were skipped or applied.
#[test]
fn a_bad_state_record_refuses_the_open() {
    use crate::durable::record::tests::meta;
    use crate::durable::record::{append_delivery_for_group, append_meta_for_group};
    use segment::{Group, Kind};

    for (tag, bad, why) in [
        ("tag", [1u8, 5, 1, 0, 0, 0], "state record tag 5"),
        ("qos", [1u8, 1, 1, 0, 2, 1], "awaits PubComp with QoS 1"),
    ] {
        let dir = TempDir::new(&format!("log-bad-state-{tag}"));
        let path = store_dir(&dir.0, 0);
        let (mut store, _) = store::LogStore::open(&path).unwrap();
        let mut group = Group::new();
        store
            .record_with(&mut group, Kind::Meta, "a", 1, |out| {
                append_meta_for_group(&meta("a", 1), out)
            })
            .unwrap();
        let record = delivery(1, 1, DeliveryState::Queued);
        store
            .record_with(&mut group, Kind::Delivery, "a", 1, |out| {
                append_delivery_for_group(&record, out)
            })
            .unwrap();
        store.record(&mut group, Kind::DeliveryState, "a", 1, &bad);
        store.write(group).unwrap();
        store.sync().unwrap();
        drop(store);
        let err = store::LogStore::open(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(why), "{tag}: {err}");
    }
}
