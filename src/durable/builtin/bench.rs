//! Throughput of the builtin store's writer, and the time to open a store
//! holding a million deliveries (docs/durability.md, "Builtin store
//! throughput"). Ignored: it needs a release build and a quiet disk.
//!
//! ```text
//! cargo test --release --lib durable::builtin::bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! Each engine is measured: `bench_builtin_store` (fjall) and
//! `bench_log_store` (`durable::log`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::tests::{c, close, put_meta, send, TempDir};
use super::*;
use crate::durable::record::tests::delivery;
use crate::durable::{DeliveryState, Op, Restored, StoreHandle};

type Opener = fn(&Path, usize, SyncMode) -> Result<(StoreHandle, Restored, Writer), OpenError>;

/// A QoS 1 delivery of a 64-byte payload, as a shard writes it.
fn put(client: &str, seq: u64) -> Op {
    let mut record = delivery(seq, 1, DeliveryState::Queued);
    record.delivery.message.payload = bytes::Bytes::from(vec![0x42; 64]);
    Op::PutDelivery {
        client: c(client),
        epoch: 0,
        seq,
        record: Box::new(record),
        fresh: false,
    }
}

fn remove(client: &str, seq: u64) -> Op {
    Op::RemoveDelivery {
        client: c(client),
        epoch: 0,
        seq,
    }
}

/// Pushes PutDelivery + RemoveDelivery pairs, `ops_per_batch` ops a batch,
/// for `run`, as fast as the writer takes them (a shard sends a batch a
/// turn and does not wait); returns (ops/s, syncs/s, writes/s).
fn throughput(open: Opener, mode: SyncMode, ops_per_batch: u64, run: Duration) -> (f64, f64, f64) {
    let dir = TempDir::new("bench");
    let (mut handle, _, writer) = open(&dir.0, 0, mode).unwrap();
    send(&mut handle, vec![put_meta("bench", 0)]);
    let stats = writer.stats().clone();
    let (ops0, syncs0, writes0) = (
        stats.ops.load(Ordering::Relaxed),
        stats.syncs.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    let mut i = 0u64;
    let mut last = 0;
    while start.elapsed() < run {
        let ops = (0..ops_per_batch)
            .map(|_| {
                i += 1;
                // Each delivery is removed (acknowledged) right after it
                // is written: the store stays small, as with a live client.
                if i % 2 == 1 {
                    put("bench", i / 2)
                } else {
                    remove("bench", i / 2 - 1)
                }
            })
            .collect();
        let batch = handle.seal(ops);
        last = batch.ticket;
        handle.batches.blocking_send(batch).unwrap();
    }
    super::tests::wait_for(&handle, last);
    let secs = start.elapsed().as_secs_f64();
    let per_s = |now: u64, then: u64| (now - then) as f64 / secs;
    let result = (
        per_s(stats.ops.load(Ordering::Relaxed), ops0),
        per_s(stats.syncs.load(Ordering::Relaxed), syncs0),
        per_s(stats.batches.load(Ordering::Relaxed), writes0),
    );
    close(handle, writer);
    result
}

#[test]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
fn bench_builtin_store() {
    bench(open, |d| store_dir(d, 0));
}

#[test]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
fn bench_log_store() {
    bench(crate::durable::log::open, |d| {
        crate::durable::log::store_dir(d, 0)
    });
}

fn bench(open: Opener, dir_of: fn(&Path) -> std::path::PathBuf) {
    println!("| sync | ops per batch | ops/s | syncs/s | writes/s |");
    println!("|---|---:|---:|---:|---:|");
    for mode in [SyncMode::None, SyncMode::Batch, SyncMode::Always] {
        for ops_per_batch in [1, 10, 100] {
            let (ops, syncs, writes) =
                throughput(open, mode, ops_per_batch, Duration::from_secs(3));
            println!(
                "| {} | {ops_per_batch} | {ops:.0} | {syncs:.0} | {writes:.0} |",
                mode.as_str()
            );
        }
    }

    // A million queued deliveries: 1,000 sessions of 1,000.
    let dir = TempDir::new("bench-open");
    let (mut handle, _, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    let write_start = Instant::now();
    for session in 0..1_000u64 {
        let client = format!("client-{session}");
        let mut ops = vec![put_meta(&client, 0)];
        ops.extend((0..1_000).map(|seq| put(&client, seq)));
        let batch = handle.seal(ops);
        handle.batches.blocking_send(batch).unwrap();
    }
    let write_s = write_start.elapsed().as_secs_f64();
    close(handle, writer);
    let bytes = {
        use std::os::unix::fs::MetadataExt;
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap().path();
                    if e.is_dir() {
                        walk(&e)
                    } else {
                        std::fs::metadata(&e).unwrap().blocks() * 512
                    }
                })
                .sum()
        }
        walk(&dir_of(&dir.0))
    };
    let open_start = Instant::now();
    let (handle, restored, writer) = open(&dir.0, 0, SyncMode::None).unwrap();
    let open_s = open_start.elapsed().as_secs_f64();
    let deliveries: usize = restored.sessions.iter().map(|s| s.deliveries.len()).sum();
    assert_eq!(deliveries, 1_000_000);
    close(handle, writer);
    println!(
        "\n1,000,000 deliveries in 1,000 sessions: written in {write_s:.1} s, {:.0} MiB on disk, \
         open (read and validate all) in {open_s:.2} s",
        bytes as f64 / (1 << 20) as f64
    );
}
