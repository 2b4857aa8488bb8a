//! The executor's scheduling order that the shards rely on (vendored
//! glommio, vendor/README.md patch 11). glommio polls a task once right
//! where it is spawned, so each task here first waits on a `Gate` and
//! runs from the executor's queue once the gate opens.

use crate::limits;
use crate::limits::SHARD_TICK as TICK;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

type Log = Rc<RefCell<Vec<&'static str>>>;

#[derive(Default)]
struct Gate {
    open: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Gate {
    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.open.get() {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn open(&self) {
        self.open.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }
}

fn run_on_test_executor<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD)
        .make()
        .expect("executor")
        .run(f)
}

/// A task that a delivery wakes (the subscriber's connection) runs right
/// after the task that woke it (the publisher's), ahead of the tasks
/// queued before the wake.
#[test]
fn a_task_woken_by_the_running_task_runs_next() {
    let log = run_on_test_executor(async {
        let log: Log = Rc::default();
        let (start_pub, start_other, delivered) = (
            Rc::new(Gate::default()),
            Rc::new(Gate::default()),
            Rc::new(Gate::default()),
        );
        let (l, g) = (log.clone(), delivered.clone());
        let sub = glommio::spawn_local(async move {
            g.wait().await;
            l.borrow_mut().push("sub");
        });
        let (l, g, d) = (log.clone(), start_pub.clone(), delivered.clone());
        let publisher = glommio::spawn_local(async move {
            g.wait().await;
            l.borrow_mut().push("pub");
            d.open();
        });
        let (l, g) = (log.clone(), start_other.clone());
        let other = glommio::spawn_local(async move {
            g.wait().await;
            l.borrow_mut().push("other");
        });
        // Both queued: the publisher first, then the other task.
        start_pub.open();
        start_other.open();
        publisher.await;
        other.await;
        sub.await;
        Rc::try_unwrap(log).unwrap().into_inner()
    });
    let at = log.iter().position(|&e| e == "pub").unwrap();
    assert_eq!(log.get(at + 1), Some(&"sub"), "order: {log:?}");
}

/// A task that wakes itself to yield still goes behind the others.
#[test]
fn a_task_that_wakes_itself_yields() {
    let log = run_on_test_executor(async {
        let log: Log = Rc::default();
        let (start_y, start_other) = (Rc::new(Gate::default()), Rc::new(Gate::default()));
        let (l, g) = (log.clone(), start_other.clone());
        let other = glommio::spawn_local(async move {
            g.wait().await;
            l.borrow_mut().push("other");
        });
        let (l, g) = (log.clone(), start_y.clone());
        let yielder = glommio::spawn_local(async move {
            g.wait().await;
            l.borrow_mut().push("before yield");
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
            l.borrow_mut().push("after yield");
        });
        // The other task is queued when the yielder yields.
        start_other.open();
        start_y.open();
        yielder.await;
        other.await;
        Rc::try_unwrap(log).unwrap().into_inner()
    });
    let yielded = log.iter().position(|&e| e == "before yield").unwrap();
    let resumed = log.iter().position(|&e| e == "after yield").unwrap();
    let other = log.iter().position(|&e| e == "other").unwrap();
    assert!(yielded < other && other < resumed, "order: {log:?}");
}

/// How long a parking shard may sleep (vendored glommio, patch 13): to
/// its next timer, but at most `SHARD_ACTIVE_SLEEP_MAX` (even with no
/// timer due) while I/O woke it less than `SHARD_ACTIVE_WINDOW` ago.
#[test]
fn sleep_is_bounded_only_soon_after_work() {
    let (max, window) = limits::SHARD_ACTIVE_PARK;
    let tick = Some(TICK);
    let recently = window / 2;
    let long_ago = window * 2;
    let bound = Some(limits::SHARD_ACTIVE_PARK);
    assert_eq!(
        glommio::bounded_park_timeout(tick, recently, bound),
        Some(max)
    );
    assert_eq!(
        glommio::bounded_park_timeout(None, recently, bound),
        Some(max)
    );
    let soon = Some(max / 2);
    assert_eq!(glommio::bounded_park_timeout(soon, recently, bound), soon);
    assert_eq!(glommio::bounded_park_timeout(tick, long_ago, bound), tick);
    assert_eq!(glommio::bounded_park_timeout(None, long_ago, bound), None);
    assert_eq!(glommio::bounded_park_timeout(tick, recently, None), tick);
}

/// Loop turns of an executor, run with `bound`, while it sleeps 200 ms
/// right after its socket woke it (or, `with_io` false, with only a
/// timer having woken it).
fn turns_while_asleep(bound: Option<(Duration, Duration)>, with_io: bool) -> u64 {
    use futures_lite::AsyncReadExt;
    use std::io::Write;
    glommio::set_active_park_bound(bound);
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let port: u16 = port_rx.recv().unwrap();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(b"x").unwrap();
        // Held open until the executor is done.
        let mut end = [0u8; 1];
        let _ = std::io::Read::read(&mut client, &mut end);
    });
    let turns = run_on_test_executor(async move {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        let mut stream = listener.accept().await.expect("accept");
        let mut buf = [0u8; 1];
        stream.read_exact(&mut buf).await.expect("read");
        if !with_io {
            // Long enough for the I/O to be out of any window here.
            glommio::timer::sleep(Duration::from_millis(120)).await;
        }
        // Reading the statistics resets them.
        let runs = || glommio::executor().executor_stats().scheduler_runs();
        let _ = runs();
        glommio::timer::sleep(Duration::from_millis(200)).await;
        runs()
    });
    glommio::set_active_park_bound(Some(limits::SHARD_ACTIVE_PARK));
    writer.join().unwrap();
    turns
}

/// An executor whose task its socket just woke and that then has
/// nothing due for a long time does not sleep through in one piece: it
/// wakes by itself every `max_sleep` for `window` (so a wake-up
/// interrupt that never comes is not waited for until its next timer);
/// after a timer it sleeps to its next timer, so an idle shard's tick
/// does not keep the bound on. Counted in loop turns, not timed (a
/// window of 50 ms at 500 us is about 100 turns).
#[test]
fn only_io_bounds_the_sleeps_that_follow() {
    let _cpu = crate::test_support::cpu_heavy();
    let bound = Some((Duration::from_micros(500), Duration::from_millis(50)));
    let unbounded = turns_while_asleep(None, true);
    let after_io = turns_while_asleep(bound, true);
    let after_timer = turns_while_asleep(bound, false);
    assert!(
        after_io >= unbounded + 4,
        "after I/O: {after_io} turns, without the bound {unbounded}"
    );
    assert!(
        after_timer < after_io,
        "after a timer: {after_timer} turns, after I/O {after_io}"
    );
}

/// A shard parked with no timer due wakes for its socket's data: the
/// completion of the readiness poll reaches a sleeping executor (rings
/// with `COOP_TASKRUN`, vendor/README.md patches 1 and 8). Bounded by a
/// generous deadline only so that a broken wake-up fails instead of
/// hanging.
#[test]
fn a_parked_shard_wakes_for_its_socket() {
    use futures_lite::AsyncReadExt;
    use std::io::Write;
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let shard = std::thread::spawn(move || {
        let got = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(limits::IO_MEMORY_BYTES_PER_SHARD)
            .spin_before_park(Duration::from_micros(20))
            .make()
            .expect("executor")
            .run(async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let mut stream = listener.accept().await.expect("accept");
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).await.expect("read");
                buf
            });
        let _ = done_tx.send(got);
    });
    let port = port_rx.recv().unwrap();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Long enough for the shard to be asleep in the kernel; the test
    // passes either way, it only makes the sleeping case the usual one.
    std::thread::sleep(Duration::from_millis(50));
    client.write_all(b"hello").unwrap();
    let got = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the parked shard never woke for its socket");
    assert_eq!(&got, b"hello");
    shard.join().unwrap();
}
