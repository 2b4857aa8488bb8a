//! Fan-out micro-benchmarks: what one PUBLISH costs between "decoded" and
//! "queued for each subscriber", without sockets.
//!
//! - `fanout_pure`: on one shard, `Router::route`, `Router::local_recipients`
//!   and one `Delivery` per recipient (an `Arc<Message>` clone each), as
//!   `Shard::publish` / `deliver_local` do; the deliveries are then dropped.
//!   Throughput is deliveries per second.
//! - `channel_hop`: the cross-shard hop. Two glommio executors pinned to CPUs
//!   0 and 1, joined by the same kind of mesh the shards use
//!   (`channel_mesh::MeshBuilder::full`, `limits::SHARD_CHANNEL_CAPACITY`
//!   deep), move `Arc<Message>`s from shard 0 to shard 1. One Criterion
//!   iteration moves `HOP_BATCH_MESSAGES` messages; the time runs from the
//!   command to the producer until the consumer has received the last one.
//!   Sent one message per channel item (what the broker does today) and
//!   64 per item (a `Vec`), to show what batching the hop would save.
//!
//! `src/shard` is crate-private, so this drives glommio's channels directly,
//! with the shards' settings (`io_memory`, placement, capacity).
//!
//! Run: `cargo bench --bench fanout`; docs/microbenchmarks.md has results.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::codec::{ByteStr, QoS, SubscriptionOptions};
use ringmq::limits::{IO_MEMORY_BYTES_PER_SHARD, SHARD_CHANNEL_CAPACITY};
use ringmq::router::{Location, NodeId, Recipient, Route, Router};
use ringmq::session::{Delivery, Message};

const TOPIC: &str = "site/3/device/17/sensor/5";

fn message() -> Arc<Message> {
    Arc::new(Message {
        topic: ByteStr::from_static(TOPIC),
        payload: Bytes::from_static(&[0x5a; 64]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
        origin: Some(ringmq::session::Origin::new(&ByteStr::from_static(
            "publisher",
        ))),
        expires_at: None,
        id: None,
    })
}

/// A router of shard 0 of 2 with `subscribers` local clients on `TOPIC`;
/// with `overlapping`, each client also holds `site/3/#`, so two filters
/// match and `local_recipients` merges per client (sort + dedup).
fn router(subscribers: usize, overlapping: bool) -> Router {
    let mut router = Router::new(Location::new(NodeId::from_name("bench@127.0.0.1"), 0), 2);
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    let exact = ByteStr::from_static(TOPIC);
    let wildcard = ByteStr::from_static("site/3/#");
    for i in 0..subscribers {
        let client = ByteStr::from(format!("client-{i:06}"));
        router.subscribe(&client, &exact, options, None);
        if overlapping {
            router.subscribe(&client, &wildcard, options, Some(7));
        }
    }
    router
}

/// What the publishing shard plus the receiving shard do for one message,
/// when both are the same shard.
struct Fanout {
    router: Router,
    route: Route,
    recipients: Vec<Recipient>,
    deliveries: Vec<Delivery>,
}

impl Fanout {
    fn publish(&mut self, message: &Arc<Message>) -> usize {
        self.router.route(
            &message.topic,
            message.origin.as_deref(),
            &mut self.route,
            &mut self.recipients,
        );
        for r in self.recipients.drain(..) {
            self.deliveries.push(Delivery {
                message: message.clone(),
                qos: r.qos.min(message.qos),
                retain: r.retain_as_published && message.retain,
                subscription_ids: r.subscription_ids,
                shared: None,
            });
        }
        let delivered = self.deliveries.len();
        // Dropping is part of the cost: each drop is an atomic decrement.
        self.deliveries.clear();
        delivered
    }
}

fn bench_fanout_pure(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_pure");
    let message = message();
    for overlapping in [false, true] {
        for subscribers in [1usize, 10, 100, 1_000, 10_000] {
            let mut fanout = Fanout {
                router: router(subscribers, overlapping),
                route: Route::default(),
                recipients: Vec::with_capacity(2 * subscribers),
                deliveries: Vec::with_capacity(subscribers),
            };
            assert_eq!(fanout.publish(&message), subscribers);
            let name = if overlapping {
                "two_filters_per_client"
            } else {
                "one_filter_per_client"
            };
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_function(BenchmarkId::new(name, subscribers), |b| {
                b.iter(|| fanout.publish(black_box(&message)))
            });
        }
    }
    group.finish();
}

/// Messages one Criterion iteration moves across the hop.
const HOP_BATCH_MESSAGES: u64 = 1_024;

/// What crosses the channel.
enum Item {
    One(Arc<Message>),
    Many(Vec<Arc<Message>>),
}

impl Item {
    /// What a receiving shard does first with a message: look at its topic.
    fn receive(&self) -> u64 {
        match self {
            Item::One(m) => {
                black_box(&m.topic);
                1
            }
            Item::Many(v) => {
                for m in v {
                    black_box(&m.topic);
                }
                v.len() as u64
            }
        }
    }
}

/// Two pinned executors, alive for the whole benchmark: shard 0 sends what
/// the benchmark thread asks for, shard 1 counts and reports when it has
/// received the target.
struct Hop {
    /// Messages to send next; closing it stops both executors.
    command: Option<mpsc::Sender<u64>>,
    /// One `()` per completed run.
    done: mpsc::Receiver<()>,
    /// Messages shard 1 must receive before reporting; set before each run.
    target: Arc<AtomicU64>,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Hop {
    fn start(messages_per_item: usize) -> Hop {
        let mesh = MeshBuilder::<Item, _>::full(2, SHARD_CHANNEL_CAPACITY);
        let (command_tx, command_rx) = mpsc::channel::<u64>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let target = Arc::new(AtomicU64::new(u64::MAX));

        let producer_mesh = mesh.clone();
        let producer = LocalExecutorBuilder::new(Placement::Fixed(0))
            .name("bench-shard-0")
            .io_memory(IO_MEMORY_BYTES_PER_SHARD)
            .spawn(move || async move {
                let (senders, _receivers) = producer_mesh.join().await.expect("mesh join");
                let peer = 1 - senders.peer_id();
                let message = message();
                // Blocking here is fine: this executor has nothing else to run.
                while let Ok(count) = command_rx.recv() {
                    let mut sent = 0;
                    while sent < count {
                        let n = messages_per_item.min((count - sent) as usize);
                        let item = if messages_per_item == 1 {
                            Item::One(message.clone())
                        } else {
                            Item::Many((0..n).map(|_| message.clone()).collect())
                        };
                        sent += n as u64;
                        if senders.send_to(peer, item).await.is_err() {
                            panic!("consumer closed the channel");
                        }
                    }
                }
                senders.close();
            })
            .expect("start executor on CPU 0");

        let consumer_target = target.clone();
        let consumer = LocalExecutorBuilder::new(Placement::Fixed(1))
            .name("bench-shard-1")
            .io_memory(IO_MEMORY_BYTES_PER_SHARD)
            .spawn(move || async move {
                let (_senders, mut receivers) = mesh.join().await.expect("mesh join");
                let peer = 1 - receivers.peer_id();
                let (_, stream) = receivers
                    .streams()
                    .into_iter()
                    .find(|(from, _)| *from == peer)
                    .expect("stream from shard 0");
                let mut received = 0u64;
                while let Some(item) = stream.recv().await {
                    received += item.receive();
                    if received == consumer_target.load(Ordering::Acquire) {
                        received = 0;
                        if done_tx.send(()).is_err() {
                            break;
                        }
                    }
                }
            })
            .expect("start executor on CPU 1");

        Hop {
            command: Some(command_tx),
            done: done_rx,
            target,
            executors: vec![producer, consumer],
        }
    }

    fn run(&self, messages: u64) -> Duration {
        self.target.store(messages, Ordering::Release);
        let start = Instant::now();
        self.command
            .as_ref()
            .expect("running")
            .send(messages)
            .expect("producer alive");
        self.done.recv().expect("consumer alive");
        start.elapsed()
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.command.take();
        for executor in self.executors.drain(..) {
            executor.join().expect("executor stopped cleanly");
        }
    }
}

fn bench_channel_hop(c: &mut Criterion) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("channel_hop: needs CPUs 0 and 1; skipped");
        return;
    }
    let mut group = c.benchmark_group("channel_hop");
    group.throughput(Throughput::Elements(HOP_BATCH_MESSAGES));
    for messages_per_item in [1usize, 64] {
        let hop = Hop::start(messages_per_item);
        group.bench_function(
            BenchmarkId::new("arc_message_per_item", messages_per_item),
            |b| b.iter_custom(|iters| hop.run(iters * HOP_BATCH_MESSAGES)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_fanout_pure, bench_channel_hop);
criterion_main!(benches);
