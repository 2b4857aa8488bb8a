//! The shard watchdog: a thread that notices a shard whose tick stopped
//! and wakes it from outside.
//!
//! Why it exists: on the shared test VM a shard thread was seen, rarely,
//! asleep in `io_uring_enter` long past its 100 ms tick, neither on a CPU
//! nor waiting for one (its tick's report: `on_cpu_ms` and
//! `waiting_for_cpu_ms` near 0, one or two voluntary switches over 24 s),
//! with clients waiting on it; once for 11 minutes. Its own timer and its
//! sockets' completions did not wake it; a wake-up from another thread
//! through the inbox did (the node's stop). The kernel or glommio mechanism
//! that loses the wake-up is not found yet (docs/performance.md, "Idle
//! shard wake-ups"), so the node bounds it: a shard that ran no tick for
//! `SHARD_WATCHDOG_STALL` is woken the way the stop wakes it, and the
//! episode is logged with the thread's state so that each one is evidence.
//!
//! The shard's side costs one relaxed increment per tick
//! (`NodeHandle::note_tick`); the thread wakes every
//! `SHARD_WATCHDOG_PERIOD` and reads one counter per shard.
//!
//! The inbox wake-up alone was not enough (2026-12-07: a shard asleep 58 s
//! while the watchdog woke it every 400 ms). It is glommio's foreign
//! wake: it writes the executor's eventfd only while the executor's
//! `should_notify` says it sleeps, and the first wake-up clears that flag;
//! if that write is the one lost, every later wake-up (the watchdog's,
//! other shards' messages) takes the executor for awake and writes nothing,
//! and the inbox's `AtomicWaker` is empty after its first wake anyway. So
//! a shard found asleep is also sent `NUDGE_SIGNAL` (a handler that does
//! nothing): the signal ends its `io_uring_enter` with `EINTR`, which
//! glommio takes as a wake-up, and its loop then runs its due timers, the
//! queued foreign wake-ups and the task work the kernel held.

use super::inbox::NodeHandle;
use crate::limits::{SHARD_WATCHDOG_PERIOD, SHARD_WATCHDOG_STALL};
use std::time::{Duration, Instant};

/// What the watchdog knows of one shard: its tick count when last seen to
/// change, and when that was.
#[derive(Clone, Copy, Debug)]
struct Seen {
    ticks: u64,
    since: Instant,
    /// Woken for this stall already (one wake-up per stall, then again
    /// after each further `stall` without a tick).
    woken_at: Option<Instant>,
}

/// The watchdog's decisions, without threads or clocks of its own (sans-IO:
/// `handle_sample` in, the shards to wake out).
#[derive(Debug)]
pub struct Watch {
    seen: Vec<Seen>,
    stall: Duration,
}

impl Watch {
    pub fn new(shards: usize, now: Instant, stall: Duration) -> Watch {
        let seen = Seen {
            ticks: 0,
            since: now,
            woken_at: None,
        };
        Watch {
            seen: vec![seen; shards],
            stall,
        }
    }

    /// Takes each shard's tick count at `now`; returns the shards to wake
    /// (no tick for `stall` since the last tick or the last wake-up) with
    /// how long their tick has stopped.
    pub fn handle_sample(&mut self, now: Instant, ticks: &[u64]) -> Vec<(usize, Duration)> {
        let mut wake = Vec::new();
        for (shard, (seen, &count)) in self.seen.iter_mut().zip(ticks).enumerate() {
            if count != seen.ticks {
                *seen = Seen {
                    ticks: count,
                    since: now,
                    woken_at: None,
                };
                continue;
            }
            let quiet_since = seen.woken_at.unwrap_or(seen.since);
            if now.saturating_duration_since(quiet_since) >= self.stall {
                seen.woken_at = Some(now);
                wake.push((shard, now.saturating_duration_since(seen.since)));
            }
        }
        wake
    }
}

/// The state letter of thread `tid` of this process (`S` asleep, `R`
/// running or waiting for a CPU, `D` blocked in the kernel), if readable.
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/thread-self/../{tid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// The signal that interrupts a shard asleep past its tick. `SIGURG` is
/// ignored by default and used by nothing else in the process; a handler
/// is installed (an ignored signal would be discarded without waking the
/// thread), without `SA_RESTART` so that the sleep ends.
const NUDGE_SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn nudged(_: libc::c_int) {}

fn install_nudge_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler does nothing, so
    // it is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nudged as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(NUDGE_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Interrupts thread `tid` of this process with `NUDGE_SIGNAL`.
fn nudge(tid: i32) -> std::io::Result<()> {
    // SAFETY: tgkill only sends a signal; the thread id came from the
    // shard thread itself and the handler does nothing.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, NUDGE_SIGNAL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts the watchdog thread for the node's shards. It runs until the
/// process ends (it holds no resource a stop must release).
pub fn start(node: NodeHandle) -> std::io::Result<()> {
    install_nudge_handler()?;
    std::thread::Builder::new()
        .name("ringmq-watchdog".into())
        .spawn(move || {
            let shards = node.shards();
            let mut watch = Watch::new(shards, Instant::now(), SHARD_WATCHDOG_STALL);
            let mut ticks = vec![0u64; shards];
            loop {
                std::thread::sleep(SHARD_WATCHDOG_PERIOD);
                for (shard, count) in ticks.iter_mut().enumerate() {
                    *count = node.ticks(shard).0;
                }
                for (shard, stopped_for) in watch.handle_sample(Instant::now(), &ticks) {
                    let tid = node.ticks(shard).1;
                    if tid == 0 {
                        // Not running yet (or never ticked): nothing to wake.
                        continue;
                    }
                    let state = thread_state(tid).unwrap_or('?');
                    node.poke(shard);
                    // Asleep past its tick is the lost wake-up; runnable is
                    // a CPU the machine gave to others (the wake-up changes
                    // nothing then, and costs nothing).
                    if state == 'R' {
                        tracing::debug!(shard, stopped_ms = stopped_for.as_millis() as u64,
                            "shard tick stopped: waiting for its CPU");
                    } else {
                        let nudged = nudge(tid);
                        tracing::warn!(shard, stopped_ms = stopped_for.as_millis() as u64,
                            thread_state = %state, signalled = nudged.is_ok(),
                            "shard tick stopped while the shard was not runnable: woken by the watchdog");
                    }
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nudge ends a thread's blocking system call with `EINTR` (the
    /// shard's is `io_uring_enter`; here a `poll` with no descriptors and a
    /// 60 s timeout) and the process lives on. Without the handler the
    /// default action of `SIGURG` (ignore) would drop the signal and the
    /// poll would run its full minute, returning 0.
    #[test]
    fn the_nudge_interrupts_a_thread_blocked_in_the_kernel() {
        install_nudge_handler().unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            // SAFETY: gettid cannot fail; poll with no descriptors only waits.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let rc = unsafe { libc::poll(std::ptr::null_mut(), 0, 60_000) };
            (rc, std::io::Error::last_os_error().raw_os_error())
        });
        let tid = tid_rx.recv().unwrap();
        // Until the poll returns: a signal sent before the thread entered
        // it would be handled and lost, so send again while it runs.
        while !sleeper.is_finished() {
            nudge(tid).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sleeper.join().unwrap(), (-1, Some(libc::EINTR)));
    }

    const STALL: Duration = Duration::from_millis(400);

    #[test]
    fn a_ticking_shard_is_left_alone_and_a_stopped_one_is_woken_once_per_stall() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = Watch::new(2, t0, STALL);
        // Both tick every 100 ms for a while.
        for i in 1..=5u64 {
            assert!(w.handle_sample(ms(i * 100), &[i, i]).is_empty());
        }
        // Shard 1 stops ticking at 500 ms.
        assert!(w.handle_sample(ms(800), &[8, 5]).is_empty());
        assert_eq!(
            w.handle_sample(ms(900), &[9, 5]),
            vec![(1, Duration::from_millis(400))]
        );
        // Not again until another full stall without a tick.
        assert!(w.handle_sample(ms(1000), &[10, 5]).is_empty());
        assert!(w.handle_sample(ms(1200), &[12, 5]).is_empty());
        assert_eq!(
            w.handle_sample(ms(1300), &[13, 5]),
            vec![(1, Duration::from_millis(800))]
        );
        // It ticks again: forgotten.
        assert!(w.handle_sample(ms(1400), &[14, 6]).is_empty());
        assert!(w.handle_sample(ms(1700), &[17, 6]).is_empty());
    }

    #[test]
    fn this_threads_state_reads_as_running() {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        assert_eq!(thread_state(tid), Some('R'));
    }
}
