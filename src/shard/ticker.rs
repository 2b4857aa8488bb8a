//! A shard's tick: its periodic work (`Shard::tick`) every `SHARD_TICK`,
//! until the shard's stop request (`StopLatch`). A tick that comes much
//! later than due is reported with what the shard's thread did meanwhile,
//! from the kernel's scheduler counters: time on the CPU (busy: a task
//! that did not yield), time runnable but waiting for the CPU (starved:
//! other tasks, or real-time ones, held its CPU), or neither (asleep: a
//! wake-up that did not come, or blocked in the kernel: the thread's major
//! page faults and voluntary context switches over the same stretch tell a
//! fault that waited for the disk from one sleep that nothing ended).
//! docs/performance.md, "Idle shard wake-ups".

use super::inbox::NodeHandle;
use super::state::Shard;
use super::stop::StopLatch;
use crate::limits::{SHARD_TICK, SHARD_TICK_LATE_WARN};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub(super) async fn run(shard: Rc<Shard>, stopping: Rc<StopLatch>, node: NodeHandle) {
    let sched = SchedStat::open();
    loop {
        // For the watchdog (`watchdog.rs`): this shard is alive.
        node.note_tick(shard.id as usize);
        let asleep_at = Instant::now();
        let before = sched.read();
        let usage_before = ThreadUsage::read();
        let stopped = futures_lite::future::or(
            async {
                stopping.wait().await;
                true
            },
            async {
                glommio::timer::sleep(SHARD_TICK).await;
                false
            },
        )
        .await;
        if stopped {
            return;
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(asleep_at + SHARD_TICK);
        if late >= SHARD_TICK_LATE_WARN {
            let ms = |d: Duration| d.as_millis() as u64;
            let (on_cpu_ms, waiting_for_cpu_ms) = match (before, sched.read()) {
                (Some(b), Some(a)) => (
                    Some(ms(a.on_cpu.saturating_sub(b.on_cpu))),
                    Some(ms(a.waiting.saturating_sub(b.waiting))),
                ),
                _ => (None, None),
            };
            let usage = ThreadUsage::read().since(usage_before);
            tracing::warn!(
                shard = shard.id,
                late_ms = ms(late),
                on_cpu_ms,
                waiting_for_cpu_ms,
                major_faults = usage.major_faults,
                voluntary_switches = usage.voluntary_switches,
                involuntary_switches = usage.involuntary_switches,
                "shard tick ran late"
            );
        }
        if shard.durable.recheck_wakeups() {
            tracing::warn!(
                shard = shard.id,
                "durable: a synced ticket's wake-up was lost; its waiters were woken by the tick"
            );
        }
        shard.tick(now).await;
    }
}

/// The calling thread's scheduler counters, since it started.
#[derive(Clone, Copy, Debug)]
struct Sched {
    /// Time on the CPU.
    on_cpu: Duration,
    /// Time runnable, waiting for the CPU.
    waiting: Duration,
}

/// `/proc/thread-self/schedstat` of the shard's thread, opened once (on
/// that thread) and read with one `pread` per tick. `None` where procfs
/// or schedstats are missing: the warning then says only how late.
struct SchedStat(Option<std::fs::File>);

impl SchedStat {
    fn open() -> SchedStat {
        SchedStat(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    fn read(&self) -> Option<Sched> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 96];
        let n = self.0.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_schedstat(std::str::from_utf8(&buf[..n]).ok()?)
    }
}

/// The calling thread's counts from `getrusage(RUSAGE_THREAD)`: a page
/// fault that read from the disk (major), a sleep (voluntary switch: one
/// over a long late stretch is one sleep that lasted it), a preemption
/// (involuntary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ThreadUsage {
    major_faults: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

impl ThreadUsage {
    fn read() -> ThreadUsage {
        // SAFETY: getrusage writes one `rusage` into the zeroed value we own.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) } != 0 {
            return ThreadUsage::default();
        }
        let count = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
        ThreadUsage {
            major_faults: count(r.ru_majflt),
            voluntary_switches: count(r.ru_nvcsw),
            involuntary_switches: count(r.ru_nivcsw),
        }
    }

    fn since(self, before: ThreadUsage) -> ThreadUsage {
        ThreadUsage {
            major_faults: self.major_faults.saturating_sub(before.major_faults),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(before.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(before.involuntary_switches),
        }
    }
}

/// `<on-cpu ns> <waiting ns> <timeslices>`.
fn parse_schedstat(text: &str) -> Option<Sched> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    let on_cpu = fields.next()?.ok()?;
    let waiting = fields.next()?.ok()?;
    Some(Sched {
        on_cpu: Duration::from_nanos(on_cpu),
        waiting: Duration::from_nanos(waiting),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_usage_counts_this_threads_sleeps() {
        let before = ThreadUsage::read();
        std::thread::sleep(Duration::from_millis(5));
        let slept = ThreadUsage::read().since(before);
        assert!(slept.voluntary_switches >= 1, "{slept:?}");
    }

    #[test]
    fn schedstat_is_parsed_and_this_threads_can_be_read() {
        let s = parse_schedstat("5534178392 33058340967 55674\n").unwrap();
        assert_eq!(s.on_cpu, Duration::from_nanos(5_534_178_392));
        assert_eq!(s.waiting, Duration::from_nanos(33_058_340_967));
        assert!(parse_schedstat("").is_none());
        assert!(parse_schedstat("12 x 3").is_none());
        // Where procfs has it (Linux with schedstats), this thread's own
        // counters read, and its CPU time grows with work.
        let sched = SchedStat::open();
        if let Some(before) = sched.read() {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            let after = sched.read().unwrap();
            assert!(after.on_cpu > before.on_cpu, "{before:?} -> {after:?}");
        }
    }
}
