//! `shard::durable` against a test writer of its own: a thread that
//! receives the batches of a `StoreHandle`, keeps them, and publishes their
//! tickets synced when the test says so.

use std::sync::{mpsc, Arc, Mutex};

use super::*;
use crate::session::journal::{Noted, NotedChange};
use crate::session::{Delivery, Session};

/// The writer thread's end: what it received, and a way to sync.
struct TestWriter {
    batches: Arc<Mutex<Vec<Batch>>>,
    synced: Arc<Synced>,
    sync_to: mpsc::Sender<Ticket>,
}

impl TestWriter {
    fn start() -> (StoreHandle, TestWriter) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let synced = Arc::new(Synced::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (sync_to, sync_rx) = mpsc::channel::<Ticket>();
        let (kept, publish) = (batches.clone(), synced.clone());
        std::thread::spawn(move || {
            while let Some(b) = rx.blocking_recv() {
                kept.lock().unwrap().push(b);
            }
        });
        std::thread::spawn(move || {
            while let Ok(t) = sync_rx.recv() {
                publish.publish(t);
            }
        });
        (
            StoreHandle::new(tx, synced.clone()),
            TestWriter {
                batches,
                synced,
                sync_to,
            },
        )
    }

    fn received(&self, n: usize) -> Vec<Batch> {
        for _ in 0..500 {
            if self.batches.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.batches.lock().unwrap().clone()
    }
}

fn delivery(payload: &'static str) -> Delivery {
    use crate::codec::{ByteStr, QoS};
    Delivery {
        message: Arc::new(crate::session::Message {
            topic: ByteStr::from("t"),
            payload: bytes::Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            origin: None,
            expires_at: None,
            id: None,
        }),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Default::default(),
        shared: None,
    }
}

fn noted(change: NotedChange) -> Noted {
    Noted {
        client: Arc::from("c"),
        epoch: 3,
        change,
    }
}

fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("executor")
        .run(f)
}

#[test]
fn the_changes_of_one_turn_become_one_batch_with_one_put_per_delivery() {
    let (handle, writer) = TestWriter::start();
    let durable = Durable::default();
    durable.attach(handle, SyncMode::Batch);
    let mut session = Session::new("c".into(), 60, 10);
    session.make_durable(3);
    session.deliver_offline(delivery("a"), std::time::Instant::now());
    session.deliver_offline(delivery("b"), std::time::Instant::now());
    durable.push(Op::RemoveSession {
        client: Arc::from("old"),
        epoch: 1,
    });
    let (batch, sender) = durable.take_batch().expect("a batch");
    assert_eq!(batch.ticket, 1);
    let kinds: Vec<String> = batch
        .ops
        .iter()
        .map(|op| match op {
            Op::PutDelivery {
                client, seq, epoch, ..
            } => format!("put {client} {seq} e{epoch}"),
            Op::RemoveSession { client, .. } => format!("remove-session {client}"),
            other => format!("{other:?}"),
        })
        .collect();
    // The session's notes come first: `push` keeps the order of events.
    assert_eq!(kinds, ["put c 0 e3", "put c 1 e3", "remove-session old"]);
    sender.blocking_send(batch).unwrap();
    assert_eq!(writer.received(1).len(), 1);
    assert!(durable.take_batch().is_none(), "nothing left");
}

#[test]
fn a_delivery_put_and_acknowledged_in_one_turn_leaves_only_its_removal() {
    let (handle, _writer) = TestWriter::start();
    let mut inner = Inner {
        handle,
        always: false,
        ops: Vec::new(),
        deliveries: HashMap::new(),
        bytes: 0,
        waker: None,
    };
    let clock = WallClock::now();
    let put = |seq, inflight| NotedChange::Put {
        seq,
        delivery: delivery("x"),
        inflight,
    };
    let sent = crate::session::journal::InflightState {
        packet_id: 9,
        awaiting: crate::session::journal::AwaitingKind::PubAck,
        transmitted: true,
    };
    inner.absorb(
        vec![
            noted(put(4, None)),
            noted(put(4, Some(sent))),
            noted(NotedChange::Remove { seq: 4 }),
            noted(put(5, None)),
            noted(put(5, Some(sent))),
        ],
        &clock,
    );
    assert_eq!(inner.ops.len(), 2, "{:?}", inner.ops);
    assert!(matches!(inner.ops[0], Op::RemoveDelivery { seq: 4, .. }));
    match &inner.ops[1] {
        Op::PutDelivery { seq: 5, record, .. } => assert_eq!(
            record.state,
            DeliveryState::Inflight {
                packet_id: 9,
                awaiting: AwaitingSnapshot::PubAck,
                transmitted: true
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_always_an_ack_waits_for_its_ticket_and_with_batch_for_nothing() {
    let (handle, writer) = TestWriter::start();
    let durable = Rc::new(Durable::default());
    durable.attach(handle, SyncMode::Always);
    assert_eq!(durable.ack_ticket(), None, "nothing written yet");
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    assert_eq!(durable.ack_ticket(), Some(1), "the batch being gathered");
    let synced = writer.synced.clone();
    let released = run(async move {
        let watcher = {
            let d = durable.clone();
            glommio::spawn_local(async move { d.run_synced(synced).await })
        };
        let (batch, sender) = durable.take_batch().unwrap();
        sender.send(batch).await.unwrap();
        // Sent, not synced: still waits for ticket 1.
        assert_eq!(durable.ack_ticket(), Some(1));
        let done = Rc::new(Cell::new(false));
        let waiting = {
            let (d, done) = (durable.clone(), done.clone());
            glommio::spawn_local(async move {
                d.wait_synced(1).await;
                done.set(true);
                true
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!done.get(), "released before the sync");
        writer.sync_to.send(1).unwrap();
        let released = waiting.await;
        assert_eq!(durable.ack_ticket(), None, "synced");
        drop(watcher);
        released
    });
    assert!(released);

    let (handle, _writer) = TestWriter::start();
    let batch_mode = Durable::default();
    batch_mode.attach(handle, SyncMode::Batch);
    batch_mode.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    assert_eq!(batch_mode.ack_ticket(), None);
}

#[test]
fn off_it_writes_nothing_and_no_session_is_durable() {
    let durable = Durable::default();
    assert!(!durable.is_durable_expiry(60));
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    assert!(durable.take_batch().is_none());
    assert_eq!(durable.ack_ticket(), None);
}
