//! The main thread: start the workers, drive the phases (set-up, warm-up,
//! measured window, drain), print progress, merge and report.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringmq::codec::{Protocol, QoS};

use crate::cli::{Args, Scenario};
use crate::clock::{now_ns, NS_PER_S};
use crate::forwarder::Forwarder;
use crate::pacing::per_publisher_rate;
use crate::plan::{self, ClientSpec};
use crate::shared::Shared;
use crate::stats::{self, Clients, Report, RunInfo, ThreadStats};
use crate::sys;
use crate::targets::{self, ServerAddr};
use crate::tls::{TlsClient, TlsOptions};
use crate::worker::{Worker, WorkerConfig};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // A second Ctrl-C kills the process.
    // SAFETY: signal() is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

fn run_id() -> u16 {
    let x = now_ns() ^ (std::process::id() as u64).rotate_left(17);
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 48) as u16
}

/// Live progress, once a second, on stderr.
struct Progress {
    enabled: bool,
    tty: bool,
    last_ns: u64,
    last_sent: u64,
    last_received: u64,
    started_ns: u64,
}

impl Progress {
    fn tick(&mut self, shared: &Shared, planned: usize, phase: &str, force: bool) {
        let now = now_ns();
        if !self.enabled || (!force && now - self.last_ns < NS_PER_S) {
            return;
        }
        let secs = (now - self.last_ns) as f64 / NS_PER_S as f64;
        let sent = shared.sum(|t| &t.sent);
        let received = shared.sum(|t| &t.received);
        let line = format!(
            "[{:>5.1}s] {phase:<8} connected {}/{}  out {}/s  in {}/s  errors {}",
            (now - self.started_ns) as f64 / NS_PER_S as f64,
            shared.sum(|t| &t.connected),
            planned,
            stats::si((sent - self.last_sent) as f64 / secs),
            stats::si((received - self.last_received) as f64 / secs),
            shared.sum(|t| &t.errors),
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.last_ns = now;
        self.last_sent = sent;
        self.last_received = received;
    }

    fn done(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

fn sleep_until(deadline_ns: u64, step: Duration) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(step.min(Duration::from_nanos(deadline_ns - now)));
    }
}

/// Descriptors the load generator keeps besides its clients' sockets
/// (stdio, epoll, the report file), with room to spare.
const OWN_FDS: usize = 64;

pub fn run(args: &Args) -> Result<Report, String> {
    let mut plan = plan::build(args)?;
    let nofile = sys::raise_nofile_limit();
    if nofile > 0 && plan.clients.len() as u64 + OWN_FDS as u64 > nofile {
        eprintln!(
            "ringmq-loadgen: warning: {} connections planned but the open-file limit is {nofile} \
             (raise it with `ulimit -n`, or as root in /etc/security/limits.conf)",
            plan.clients.len()
        );
    }
    // Reserve the descriptor table while this process has one thread: each
    // later doubling would wait for an RCU grace period (10-15 ms here) in
    // the middle of a connection storm (the broker does the same,
    // src/shard/fd_table.rs).
    let _ = ringmq::shard::presize_fd_table(plan.clients.len() + OWN_FDS);
    let forwarder = if args.scenario == Scenario::Selftest {
        Some(
            Forwarder::spawn(args.forwarder_cpu, args.forwarder_rt)
                .map_err(|e| format!("forwarder: {e}"))?,
        )
    } else {
        None
    };
    let target: SocketAddr = match &forwarder {
        Some(f) => SocketAddr::from(([127, 0, 0, 1], f.port)),
        None => (args.host.as_str(), args.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}:{}: {e}", args.host, args.port))?
            .next()
            .ok_or_else(|| format!("{}:{} resolves to no address", args.host, args.port))?,
    };
    if forwarder.is_some() && !(args.pub_addrs.is_empty() && args.sub_addrs.is_empty()) {
        return Err(
            "--pub-addrs / --sub-addrs: selftest connects to its own forwarder only".into(),
        );
    }
    let resolve = |list: &[ServerAddr], option: &str| {
        list.iter()
            .map(|a| a.resolve(option))
            .collect::<Result<Vec<SocketAddr>, String>>()
    };
    let pub_targets = resolve(&args.pub_addrs, "--pub-addrs")?;
    let sub_targets = resolve(&args.sub_addrs, "--sub-addrs")?;
    targets::assign(&mut plan.clients, &pub_targets, &sub_targets);
    let tls = if args.tls && forwarder.is_none() {
        let opts = TlsOptions {
            cafile: args.cafile.clone(),
            certfile: args.cert.clone(),
            keyfile: args.key.clone(),
            server_name: args.tls_server_name.clone(),
        };
        Some(TlsClient::load(&opts, &args.host)?)
    } else if args.tls {
        return Err("--tls: the selftest forwarder speaks plain TCP only".into());
    } else {
        None
    };
    let threads = args.threads;
    let rate = per_publisher_rate(args.rate, args.client_rate, plan.publishers);
    let protocol = if args.protocol_version == 5 {
        Protocol::V5
    } else {
        Protocol::V311
    };
    let cfg = Arc::new(WorkerConfig {
        protocol,
        qos: QoS::from_u8(args.qos).expect("clap checked the range"),
        payload_size: args.size,
        keepalive_s: args.keepalive,
        clean_start: args.clean_start,
        session_expiry_s: args.session_expiry,
        max_outstanding: args.max_outstanding as u64,
        copies: plan.copies as u64,
        batch: args.batch,
        inflight: args.inflight,
        outstanding_timeout_ns: args.outstanding_timeout.as_nanos() as u64,
        rate_per_publisher: rate,
        publishers_total: plan.publishers,
        connect_rate_per_thread: (args.connect_rate > 0.0)
            .then(|| args.connect_rate / threads as f64),
        connect_inflight: args.connect_inflight.max(1),
        busy_poll: args.busy_poll,
        connect_timeout_ns: args.connect_timeout.as_nanos() as u64,
        target,
        bind_addrs: args.bind_addrs.clone(),
        max_redirects: args.max_redirects,
        reconnect: args.reconnect,
        reconnect_addr: match &args.reconnect_addr {
            Some(a) => Some(a.resolve("--reconnect-addr")?),
            None => None,
        },
        mode: plan.mode,
        run_id: run_id(),
        accept_any_run: args.scenario == Scenario::Sub,
        threads,
        codec_decode: args.codec_decode,
        slowest: args.slowest,
        tls,
        max_packet_size: (args.size as u32).saturating_add(64 * 1024).max(1 << 20),
    });
    let shared = Arc::new(Shared::new(plan.publishers, plan.copies, threads));
    let planned = plan.clients.len();
    let mut per_thread: Vec<Vec<(usize, ClientSpec)>> = vec![Vec::new(); threads];
    for (g, spec) in plan.clients.into_iter().enumerate() {
        per_thread[spec.thread].push((g, spec));
    }
    // SAFETY: installing a handler that only touches an atomic and signal().
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };

    let started_ns = now_ns();
    let mut handles = Vec::new();
    for (t, specs) in per_thread.into_iter().enumerate() {
        let worker = Worker::new(t, specs, cfg.clone(), shared.clone())
            .map_err(|e| format!("worker {t}: {e}"))?;
        let cpu = args.cpus.as_ref().map(|c| c.0[t % c.0.len()]);
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                        eprintln!("ringmq-loadgen: could not pin thread {t} to CPU {cpu}");
                    }
                }
                worker.run()
            })
            .map_err(|e| format!("spawning thread {t}: {e}"))?;
        handles.push(h);
    }

    let mut progress = Progress {
        enabled: !args.quiet,
        tty: sys::stderr_is_tty(),
        last_ns: started_ns,
        last_sent: 0,
        last_received: 0,
        started_ns,
    };
    let tick = Duration::from_millis(20);

    // Set-up: every client connected (and subscribed), or the timeout.
    let setup_deadline = started_ns + args.connect_timeout.as_nanos() as u64;
    loop {
        let done = shared.sum(|t| &t.ready) + shared.sum(|t| &t.failed);
        if done >= planned as u64
            || now_ns() >= setup_deadline
            || INTERRUPTED.load(Ordering::Relaxed)
        {
            break;
        }
        progress.tick(&shared, planned, "connect", false);
        sleep_until(setup_deadline, tick);
    }
    let publish_start = now_ns();
    let setup_s = (publish_start - started_ns) as f64 / NS_PER_S as f64;
    // A connection storm has nothing to warm up: it holds for --duration.
    let warmup = if args.scenario == Scenario::Conn {
        Duration::ZERO
    } else {
        args.warmup
    };
    let measure_start = publish_start + warmup.as_nanos() as u64;
    let mut stop = measure_start + args.duration.as_nanos() as u64;
    shared.start(publish_start, measure_start, stop);
    let running = if args.scenario == Scenario::Conn {
        "hold"
    } else {
        "run"
    };
    // The forwarder's run delay at the measured window's start and end.
    let mut forwarder_delay: (Option<u64>, Option<u64>) = (None, None);
    while now_ns() < stop {
        if forwarder_delay.0.is_none() && now_ns() >= measure_start {
            forwarder_delay.0 = forwarder.as_ref().and_then(Forwarder::run_delay_ns);
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            stop = now_ns().max(measure_start.min(now_ns()));
            shared.stop_ns.store(stop, Ordering::Relaxed);
            break;
        }
        let phase = if now_ns() < measure_start {
            "warm-up"
        } else {
            running
        };
        progress.tick(&shared, planned, phase, false);
        sleep_until(stop, tick);
    }
    forwarder_delay.1 = forwarder.as_ref().and_then(Forwarder::run_delay_ns);
    // Drain: wait for what is still on its way.
    if plan.copies > 0 {
        let drain_deadline = now_ns() + args.drain.as_nanos() as u64;
        loop {
            let (expected, delivered) = shared.delivery();
            if delivered >= expected
                || now_ns() >= drain_deadline
                || INTERRUPTED.load(Ordering::Relaxed)
            {
                break;
            }
            progress.tick(&shared, planned, "drain", false);
            sleep_until(drain_deadline, Duration::from_millis(5));
        }
    }
    progress.tick(&shared, planned, "done", true);
    progress.done();
    shared.shutdown.store(true, Ordering::Relaxed);
    let mut total = ThreadStats::default();
    for h in handles {
        total.merge(
            h.join()
                .map_err(|_| "a worker thread panicked".to_string())?,
        );
    }
    let forwarder_messages = forwarder.map(Forwarder::stop);
    let measured_ns = stop.saturating_sub(measure_start);
    let info = RunInfo {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        target: targets::describe(target, &pub_targets, &sub_targets),
        tls: args.tls,
        protocol_version: args.protocol_version,
        qos: args.qos,
        payload_size: args.size,
        threads,
        max_outstanding: args.max_outstanding,
        copies: plan.copies,
        rate_per_publisher: rate,
        warmup_s: warmup.as_secs_f64(),
        duration_s: measured_ns as f64 / NS_PER_S as f64,
        clients: Clients {
            planned: planned as u64,
            publishers: plan.publishers,
            subscribers: plan.subscribers,
            ready: shared.sum(|t| &t.ready),
            failed: shared.sum(|t| &t.failed),
            setup_s,
        },
        forwarder_messages,
        forwarder_preempted_ns: match forwarder_delay {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
    };
    Ok(stats::build_report(info, &total))
}
