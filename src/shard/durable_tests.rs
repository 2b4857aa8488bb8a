//! `shard::durable` against a test writer of its own: a thread that
//! receives the batches of a `StoreHandle`, keeps them, and publishes their
//! tickets synced when the test says so.

use std::sync::{mpsc, Arc, Mutex};

use super::*;
use crate::durable::DeliveryState;
use crate::session::journal::{AwaitingKind, InflightState, Noted, NotedChange};
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

thread_local! {
    /// The client id of the test journal: one `Arc` shared by its notes,
    /// as a `Journal` shares its own (the gathering keys by its address).
    static CLIENT: Arc<str> = Arc::from("c");
}

fn noted(change: NotedChange) -> Noted {
    Noted {
        client: CLIENT.with(Arc::clone),
        epoch: 3,
        change,
    }
}

/// A gather interval no test waits for.
const GATHER: std::time::Duration = std::time::Duration::from_secs(10);

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
    durable.attach(handle, SyncMode::Batch, GATHER);
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

fn put(seq: u64, inflight: Option<InflightState>, fresh: bool) -> Noted {
    noted(NotedChange::Put {
        seq,
        delivery: delivery("x"),
        inflight,
        fresh,
    })
}

fn remove(seq: u64) -> Noted {
    noted(NotedChange::Remove { seq })
}

fn inflight(awaiting: AwaitingKind) -> Option<InflightState> {
    Some(InflightState {
        packet_id: 9,
        awaiting,
        transmitted: true,
    })
}

/// The ops of `inner`'s gathering, sealed, as short strings.
fn sealed(inner: &mut Inner) -> Vec<String> {
    inner
        .seal(&WallClock::now())
        .unwrap_or_default()
        .iter()
        .map(|op| match op {
            Op::PutDelivery { seq, record, .. } => match record.state {
                DeliveryState::Queued => format!("put {seq} queued"),
                DeliveryState::Inflight { awaiting, .. } => format!("put {seq} {awaiting:?}"),
            },
            Op::RemoveDelivery { seq, .. } => format!("remove {seq}"),
            Op::PutSession { client, .. } => format!("put-session {client}"),
            Op::RemoveSession { client, .. } => format!("remove-session {client}"),
            Op::PutMeta { client, .. } => format!("meta {client}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn inner(mode: SyncMode) -> Inner {
    let (handle, _writer) = TestWriter::start();
    Inner::new(handle, mode, GATHER)
}

/// A delivery that enters and leaves in one gathering writes nothing: its
/// entering put and its removal cancel, with its state puts between.
/// Failed before cancellation (a removal was written for seq 4).
#[test]
fn a_delivery_that_enters_and_leaves_in_one_gathering_writes_nothing() {
    let mut inner = inner(SyncMode::Batch);
    inner.absorb(vec![
        put(4, None, true),
        put(4, inflight(AwaitingKind::PubAck), false),
        remove(4),
        put(5, None, true),
        put(5, inflight(AwaitingKind::PubAck), false),
    ]);
    assert_eq!(sealed(&mut inner), ["put 5 PubAck"]);
    assert_eq!(inner.bytes, 0);
}

/// A delivery that entered in an earlier batch: its removal is written (in
/// place of its state put), as for QoS 2 whose PUBREC and PUBCOMP come in
/// a later gathering than the put. Fails if a removal cancelled a put that
/// did not enter the delivery.
#[test]
fn a_removal_of_a_delivery_from_an_earlier_batch_is_written() {
    let mut inner = inner(SyncMode::Batch);
    inner.absorb(vec![put(8, inflight(AwaitingKind::PubRec), true)]);
    assert_eq!(sealed(&mut inner), ["put 8 PubRec"]);
    inner.absorb(vec![
        put(8, inflight(AwaitingKind::PubComp), false),
        put(9, None, true),
        remove(8),
    ]);
    assert_eq!(sealed(&mut inner), ["remove 8", "put 9 queued"]);
    // A removal with no put gathered is written as it is.
    inner.absorb(vec![remove(9)]);
    assert_eq!(sealed(&mut inner), ["remove 9"]);
}

/// A `PutSession` / `RemoveSession` of the client between a put and its
/// removal: nothing merges or cancels across it and the order is kept (the
/// session op replaces what the store holds: the snapshot may hold the
/// delivery, which the removal after it must still remove). Failed before
/// (the removal took the put's place, before the `PutSession`).
#[test]
fn session_ops_between_a_put_and_its_removal_keep_both_in_order() {
    let mut inner = inner(SyncMode::Batch);
    inner.absorb(vec![put(4, None, true), put(6, None, true)]);
    inner.push(Op::PutSession {
        client: Arc::from("c"),
        epoch: 4,
        snapshot: Box::new(SessionSnapshot::of(
            &Session::new("c".into(), 60, 10),
            None,
            None,
            &WallClock::now(),
        )),
    });
    inner.absorb(vec![
        put(4, inflight(AwaitingKind::PubAck), false),
        remove(4),
    ]);
    inner.push(Op::RemoveSession {
        client: Arc::from("other"),
        epoch: 1,
    });
    // Another client's session op does not stand between c's changes.
    inner.absorb(vec![remove(6)]);
    assert_eq!(
        sealed(&mut inner),
        [
            "put 4 queued",
            "put 6 queued",
            "put-session c",
            "remove 4",
            "remove-session other",
            "remove 6"
        ]
    );
}

/// With `always` a gathering whose changes all cancelled is still sealed
/// (empty): the acknowledgement that waits for its ticket is released
/// once the writer publishes it. With `batch` nothing is sealed. Fails if
/// the seal skips an empty `always` gathering (the ack would wait for a
/// later batch) or sends one in `batch`.
#[test]
fn with_always_a_gathering_that_all_cancelled_still_has_its_ticket() {
    for mode in [SyncMode::Always, SyncMode::Batch] {
        let (handle, _writer) = TestWriter::start();
        let durable = Durable::default();
        durable.attach(handle, mode, GATHER);
        let mut session = Session::new("c".into(), 60, 10);
        session.make_durable(3);
        session.deliver_offline(delivery("a"), std::time::Instant::now());
        session.note(|| crate::session::journal::Change::Remove { seq: 0 });
        match mode {
            SyncMode::Always => {
                assert_eq!(durable.ack_ticket(), Some(1));
                let (batch, _) = durable.take_batch().expect("an empty batch");
                assert_eq!((batch.ticket, batch.ops.len()), (1, 0));
            }
            _ => assert!(durable.take_batch().is_none()),
        }
    }
}

/// A task waiting for `ticket` to be synced, and whether it was released.
fn wait_in_task(durable: &Rc<Durable>, ticket: Ticket) -> (Rc<Cell<bool>>, glommio::Task<()>) {
    let done = Rc::new(Cell::new(false));
    let (d, flag) = (durable.clone(), done.clone());
    let task = glommio::spawn_local(async move {
        d.wait_synced(ticket).await;
        flag.set(true);
    });
    (done, task)
}

#[test]
fn with_always_an_ack_waits_for_its_ticket_and_with_batch_for_nothing() {
    let (handle, writer) = TestWriter::start();
    let durable = Rc::new(Durable::default());
    durable.attach(handle, SyncMode::Always, GATHER);
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
        let (done, waiting) = wait_in_task(&durable, 1);
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!done.get(), "released before the sync");
        writer.sync_to.send(1).unwrap();
        waiting.await;
        assert_eq!(durable.ack_ticket(), None, "synced");
        drop(watcher);
        done.get()
    });
    assert!(released);

    let (handle, _writer) = TestWriter::start();
    let batch_mode = Durable::default();
    batch_mode.attach(handle, SyncMode::Batch, GATHER);
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

/// Yields to the executor `n` times (other tasks run between).
async fn turns(n: usize) {
    for _ in 0..n {
        futures_lite::future::yield_now().await;
    }
}

/// `batch`: the store task gathers across executor turns until the
/// interval passed, so a put and its removal made turns apart cancel; the
/// gathering is sealed before the interval once its bytes reach
/// `DURABLE_GATHER_SEAL_BYTES`. Failed before (one batch per turn: the
/// put was sent in the first; and with a 10 s interval, nothing would be
/// sent here without the bytes bound).
#[test]
fn batch_gathers_across_turns_until_the_interval_or_the_bytes_bound() {
    let (handle, writer) = TestWriter::start();
    let sent = run(async move {
        let durable = Rc::new(Durable::default());
        durable.attach(handle, SyncMode::Batch, GATHER);
        let task = {
            let d = durable.clone();
            glommio::spawn_local(async move { d.run_store(0).await })
        };
        let mut session = Session::new("c".into(), 60, 10);
        session.make_durable(3);
        session.deliver_offline(delivery("a"), std::time::Instant::now());
        turns(10).await;
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        session.note(|| crate::session::journal::Change::Remove { seq: 0 });
        durable.push(Op::RemoveRetained {
            topic: Arc::from("r"),
        });
        turns(10).await;
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        let before = writer.batches.lock().unwrap().len();
        // Past the bytes bound: sealed at once.
        let payload = bytes::Bytes::from(vec![0u8; crate::limits::DURABLE_GATHER_SEAL_BYTES]);
        let mut big = crate::session::snapshot::MessageSnapshot::of(
            &delivery("b").message,
            &WallClock::now(),
        );
        big.payload = payload;
        durable.push(Op::PutRetained {
            topic: Arc::from("big"),
            message: Box::new(big),
        });
        turns(10).await;
        let batches = writer.received(1);
        drop(task);
        (before, batches)
    });
    let (before, batches) = sent;
    assert_eq!(before, 0, "sealed before the interval");
    assert_eq!(batches.len(), 1);
    let kinds: Vec<&str> = batches[0]
        .ops
        .iter()
        .map(|op| match op {
            Op::RemoveRetained { .. } => "remove-retained",
            Op::PutRetained { .. } => "put-retained",
            _ => "delivery",
        })
        .collect();
    assert_eq!(kinds, ["remove-retained", "put-retained"]);
}

/// `batch` with a short interval: the gathering is sealed once it passed,
/// with no further change to wake the task; `always` seals in the turn
/// (its 10 s interval is not waited for). Fails if the store task waits
/// only for changes (the batch would never come) or `always` gathered.
#[test]
fn batch_seals_when_the_interval_passed_and_always_every_turn() {
    for (mode, interval_ms) in [(SyncMode::Batch, 20), (SyncMode::Always, 10_000)] {
        let (handle, writer) = TestWriter::start();
        let received = run(async move {
            let durable = Rc::new(Durable::default());
            durable.attach(handle, mode, std::time::Duration::from_millis(interval_ms));
            let task = {
                let d = durable.clone();
                glommio::spawn_local(async move { d.run_store(0).await })
            };
            durable.push(Op::RemoveRetained {
                topic: Arc::from("r"),
            });
            let mut waited_ms = 0;
            while writer.batches.lock().unwrap().is_empty() && waited_ms < 2_000 {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                waited_ms += 5;
            }
            drop(task);
            writer.batches.lock().unwrap().len()
        });
        assert_eq!(received, 1, "{mode:?}");
    }
}

/// A delivery's op says `fresh` when it entered in this batch, even after
/// a state put replaced its entering put (the writer cancels across the
/// batches of one write by it); a state put alone is not fresh. Fails if
/// the merge kept the later note's `fresh: false`.
#[test]
fn a_put_merged_into_its_entering_put_stays_fresh() {
    let mut inner = inner(SyncMode::Always);
    inner.absorb(vec![
        put(1, None, true),
        put(1, inflight(AwaitingKind::PubAck), false),
        put(2, inflight(AwaitingKind::PubAck), false),
    ]);
    let fresh: Vec<(u64, bool)> = inner
        .seal(&WallClock::now())
        .unwrap()
        .iter()
        .map(|op| match op {
            Op::PutDelivery { seq, fresh, .. } => (*seq, *fresh),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fresh, [(1, true), (2, false)]);
}

/// `sync = "batch"` acknowledges at once while the store keeps up, and makes
/// acknowledgements wait for the newest batch still unsynced an interval
/// after its seal once it does not (before: never waited in `batch`, so a
/// slow Redis left any amount acknowledged and unsynced).
#[test]
fn with_batch_acks_wait_only_for_a_store_behind_by_more_than_the_interval() {
    let (handle, writer) = TestWriter::start();
    let interval = std::time::Duration::from_millis(10);
    let mut inner = Inner::new(handle, SyncMode::Batch, interval);
    let ms = std::time::Duration::from_millis;
    let t0 = std::time::Instant::now();
    inner
        .sealed
        .extend([(1, t0), (2, t0 + ms(5)), (3, t0 + ms(20))]);
    assert_eq!(inner.lagging_ticket(t0 + ms(8)), None, "the store keeps up");
    assert_eq!(
        inner.lagging_ticket(t0 + ms(16)),
        Some(2),
        "1 and 2 are late"
    );
    writer.synced.publish(2);
    assert_eq!(inner.lagging_ticket(t0 + ms(16)), None, "caught up");
    assert_eq!(inner.sealed.len(), 1);
    assert_eq!(inner.lagging_ticket(t0 + ms(31)), Some(3));
    // `always` and `none` never keep seals for this.
    let (handle, _writer) = TestWriter::start();
    let durable = Durable::default();
    durable.attach(handle, SyncMode::None, interval);
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    let _ = durable.take_batch().expect("a batch");
    assert!(durable.inner.borrow().as_ref().unwrap().sealed.is_empty());
}

/// The Redis backend keeps the removal of a delivery put and removed in one
/// gathering: every delivery still reaches Redis, whose script checks the
/// owner, so a stale owner learns it is fenced (test_durable_redis.py's
/// `test_paused_stale_owner_is_fenced` failed when the pair vanished).
#[test]
fn with_redis_a_cancelled_delivery_still_writes_its_removal() {
    let mut inner = inner(SyncMode::Batch);
    inner.keep_removals = true;
    inner.absorb(vec![
        put(4, None, true),
        put(4, inflight(AwaitingKind::PubAck), false),
        remove(4),
    ]);
    assert_eq!(sealed(&mut inner), ["remove 4"]);
}

#[test]
fn a_lost_synced_wake_up_is_made_good_by_the_tick() {
    let (handle, writer) = TestWriter::start();
    let durable = Rc::new(Durable::default());
    durable.attach(handle, SyncMode::Always, GATHER);
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    let released = run(async move {
        // No watcher runs (`run_synced`): its wake-up is the one lost.
        let (batch, sender) = durable.take_batch().unwrap();
        sender.send(batch).await.unwrap();
        let (done, waiting) = wait_in_task(&durable, 1);
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!durable.recheck_wakeups(), "nothing synced, nothing late");
        writer.synced.publish(1);
        // The first tick after the publish: woken, not yet called late.
        assert!(!durable.recheck_wakeups());
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert!(done.get(), "the tick woke the waiter");
        waiting.await;
        true
    });
    assert!(released);

    // A waiter still there a whole tick after the publish is reported late.
    let (handle, writer) = TestWriter::start();
    let durable = Rc::new(Durable::default());
    durable.attach(handle, SyncMode::Always, GATHER);
    writer.synced.publish(1);
    assert!(!durable.recheck_wakeups(), "no waiter");
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    let late = run(async move {
        let waiting = {
            let d = durable.clone();
            glommio::spawn_local(async move { d.wait_synced(2).await })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        writer.synced.publish(2);
        assert!(!durable.recheck_wakeups(), "published since the last tick");
        waiting.await;
        // Made late by hand: the watcher saw 1 while the last tick saw 2.
        durable.synced_seen.set(1);
        durable.synced_at_tick.set(2);
        let again = {
            let d = durable.clone();
            glommio::spawn_local(async move { d.wait_synced(3).await })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        writer.synced.publish(3);
        let late = durable.recheck_wakeups();
        again.await;
        late
    });
    assert!(late);
}

#[test]
fn the_tick_leaves_an_idle_store_task_its_waker() {
    let (handle, _writer) = TestWriter::start();
    let durable = Durable::default();
    durable.attach(handle, SyncMode::Always, GATHER);
    let waker = futures_lite::future::block_on(std::future::poll_fn(|cx| {
        std::task::Poll::Ready(cx.waker().clone())
    }));
    durable.inner.borrow_mut().as_mut().unwrap().waker = Some(waker);
    // Nothing gathered: the registration stays for the next `push`.
    durable.recheck_wakeups();
    assert!(durable.inner.borrow().as_ref().unwrap().waker.is_some());
    durable.push(Op::RemoveRetained {
        topic: Arc::from("r"),
    });
    assert!(
        durable.inner.borrow().as_ref().unwrap().waker.is_none(),
        "the push woke it"
    );
}

fn state(seq: u64, awaiting: AwaitingKind) -> Noted {
    noted(NotedChange::State {
        seq,
        inflight: inflight(awaiting).unwrap(),
    })
}

/// State-only notes (a store that takes them: the log engine): merged into
/// a put gathered for the same delivery (which keeps its message and takes
/// the state), a later state replaces an earlier one, a state alone is its
/// own op, and a removal replaces a state alone or cancels with the fresh
/// put a state merged into. Fails if a state were gathered beside its put
/// (two writes), or a state of a delivery entered in an earlier batch were
/// dropped.
#[test]
fn a_state_note_merges_into_its_put_or_stands_alone() {
    let mut inner = inner(SyncMode::Batch);
    inner.absorb(vec![
        put(1, None, true),
        state(1, AwaitingKind::PubAck),
        state(2, AwaitingKind::PubRec),
        state(2, AwaitingKind::PubComp),
        state(3, AwaitingKind::PubAck),
        remove(3),
        put(4, None, true),
        state(4, AwaitingKind::PubAck),
        remove(4),
    ]);
    let ops = inner.seal(&WallClock::now()).unwrap();
    let shown: Vec<String> = ops
        .iter()
        .map(|op| match op {
            Op::PutDelivery {
                seq, record, fresh, ..
            } => format!("put {seq} {:?} fresh={fresh}", record.state),
            Op::PutDeliveryState { seq, state, .. } => format!("state {seq} {state:?}"),
            Op::RemoveDelivery { seq, .. } => format!("remove {seq}"),
            other => format!("{other:?}"),
        })
        .collect();
    let inflight = |awaiting: &str| {
        format!("Inflight {{ packet_id: 9, awaiting: {awaiting}, transmitted: true }}")
    };
    assert_eq!(
        shown,
        [
            format!("put 1 {} fresh=true", inflight("PubAck")),
            format!("state 2 {}", inflight("PubComp")),
            "remove 3".to_string(),
        ]
    );
    assert_eq!(inner.bytes, 0);
}
