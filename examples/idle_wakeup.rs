//! Reproducer for "an idle shard misses its wake-ups" (issue 11 items 9/10):
//! two glommio executors set up like ringmq's shards (pinned, preemption
//! timers off, the active park bound, the same I/O memory), each idle but
//! for a 100 ms ticker, a message from the other executor every few tens
//! of milliseconds, and a wake from a foreign thread (the shard inbox's
//! path: `AtomicWaker` woken from a plain thread). Busy-loop threads load
//! both CPUs. Every wake-up that comes later than `--late-ms` is printed;
//! the exit status is 1 if any did.
//!
//! `cargo run --release --example idle_wakeup -- --secs 30 --load 4`

use futures_lite::future;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::limits;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A foreign wake target, like `shard::inbox::Inbox`.
#[derive(Default)]
struct Foreign {
    sent_ns: AtomicU64,
    waker: atomic_waker::AtomicWaker,
}

struct Args {
    secs: u64,
    load: usize,
    late_ms: u64,
    spin_us: u64,
    cpus: Vec<usize>,
}

fn parse() -> Args {
    let mut a = Args {
        secs: 30,
        load: 4,
        late_ms: 500,
        spin_us: limits::IDLE_POLL_DEFAULT_US as u64,
        cpus: vec![0, 1],
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        let n = &v[i + 1];
        match v[i].as_str() {
            "--secs" => a.secs = n.parse().expect("--secs"),
            "--load" => a.load = n.parse().expect("--load"),
            "--late-ms" => a.late_ms = n.parse().expect("--late-ms"),
            "--spin-us" => a.spin_us = n.parse().expect("--spin-us"),
            "--cpus" => a.cpus = n.split(',').map(|c| c.parse().expect("--cpus")).collect(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn report(what: &str, shard: usize, late: Duration, limit: Duration, bad: &AtomicU64) {
    if late > limit {
        bad.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "LATE {what} shard {shard}: {late:?} at {:.3}s",
            now_ns() as f64 / 1e9
        );
    }
}

fn main() {
    let args = parse();
    now_ns();
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let limit = Duration::from_millis(args.late_ms);
    glommio::set_preemption_timers(false);
    glommio::set_active_park_bound(Some(limits::SHARD_ACTIVE_PARK));

    let loaders: Vec<_> = (0..args.load)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
            })
        })
        .collect();

    let n = args.cpus.len();
    let foreign: Arc<Vec<Foreign>> = Arc::new((0..n).map(|_| Foreign::default()).collect());
    let mesh = MeshBuilder::<u64, _>::full(n, 64);
    let shards: Vec<_> = args
        .cpus
        .iter()
        .map(|&cpu| {
            let (mesh, stop, bad, foreign) =
                (mesh.clone(), stop.clone(), bad.clone(), foreign.clone());
            let mut b = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name("repro-shard")
                .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD);
            if args.spin_us > 0 {
                b = b.spin_before_park(Duration::from_micros(args.spin_us));
            }
            b.spawn(move || async move {
                let (senders, mut receivers) = mesh.join().await.unwrap();
                let me = senders.peer_id();
                // A pending accept, like a shard's listener.
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let _accept = glommio::spawn_local(async move {
                    let _ = listener.accept().await;
                });
                let ticker = {
                    let (stop, bad) = (stop.clone(), bad.clone());
                    glommio::spawn_local(async move {
                        let tick = limits::SHARD_TICK;
                        let (mut max, mut count) = (Duration::ZERO, 0u64);
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            glommio::timer::sleep(tick).await;
                            let late = t.elapsed().saturating_sub(tick);
                            max = max.max(late);
                            count += 1;
                            report("tick", me, late, limit, &bad);
                        }
                        (count, max)
                    })
                };
                let receivers_done: Vec<_> = receivers
                    .streams()
                    .into_iter()
                    .map(|(_, rx)| {
                        let bad = bad.clone();
                        glommio::spawn_local(async move {
                            let mut max = Duration::ZERO;
                            while let Some(sent) = rx.recv().await {
                                if sent == u64::MAX {
                                    break;
                                }
                                let late = Duration::from_nanos(now_ns().saturating_sub(sent));
                                max = max.max(late);
                                report("message", me, late, limit, &bad);
                            }
                            max
                        })
                    })
                    .collect();
                let foreign_rx = {
                    let (foreign, bad, stop) = (foreign.clone(), bad.clone(), stop.clone());
                    glommio::spawn_local(async move {
                        let f = &foreign[me];
                        let mut max = Duration::ZERO;
                        loop {
                            let sent = future::poll_fn(|cx| {
                                f.waker.register(cx.waker());
                                match f.sent_ns.swap(0, Ordering::SeqCst) {
                                    0 if stop.load(Ordering::Relaxed) => Poll::Ready(None),
                                    0 => Poll::Pending,
                                    s => Poll::Ready(Some(s)),
                                }
                            })
                            .await;
                            let Some(sent) = sent else { break };
                            let late = Duration::from_nanos(now_ns().saturating_sub(sent));
                            max = max.max(late);
                            report("foreign", me, late, limit, &bad);
                        }
                        max
                    })
                };
                // Send to every peer now and then, timed by this shard's own
                // timer (so an idle peer has traffic to wake for).
                while !stop.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(fastrand::u64(5..60))).await;
                    for peer in 0..senders.nr_consumers() {
                        if peer != me {
                            let _ = senders.try_send_to(peer, now_ns());
                        }
                    }
                }
                for peer in 0..senders.nr_consumers() {
                    if peer != me {
                        let _ = senders.send_to(peer, u64::MAX).await;
                    }
                }
                let mut msg_max = Duration::ZERO;
                for r in receivers_done {
                    msg_max = msg_max.max(r.await);
                }
                foreign[me].waker.wake();
                let foreign_max = foreign_rx.await;
                let (ticks, tick_max) = ticker.await;
                println!(
                    "shard {me}: {ticks} ticks, latest tick +{tick_max:?}, \
                     latest message {msg_max:?}, latest foreign wake {foreign_max:?}"
                );
            })
            .unwrap()
        })
        .collect();

    // The foreign thread: wakes each shard every few tens of milliseconds.
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(fastrand::u64(5..60)));
        for f in foreign.iter() {
            let _ = f
                .sent_ns
                .compare_exchange(0, now_ns(), Ordering::SeqCst, Ordering::SeqCst);
            f.waker.wake();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for f in foreign.iter() {
        f.waker.wake();
    }
    for s in shards {
        s.join().unwrap();
    }
    for l in loaders {
        l.join().unwrap();
    }
    let late = bad.load(Ordering::Relaxed);
    println!("late wake-ups (> {limit:?}): {late}");
    std::process::exit(i32::from(late > 0));
}
