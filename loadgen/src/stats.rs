//! Per-thread statistics, merged into the run's [`Report`] (printed as a
//! table and written as JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ahash::AHashMap;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::slowest::{SlowMessage, Slowest};
use crate::track::{self, StreamTotals};

/// Latencies are recorded in ns, from 1 ns to 1 h, 3 significant digits.
const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("histogram bounds")
}

/// What one worker thread measured; merged by the main thread at the end.
#[derive(Debug)]
pub struct ThreadStats {
    /// (publisher id, messages sent) for the publishers of this thread.
    pub sent_by_publisher: Vec<(u32, u64)>,
    /// Per publisher id: what the subscribers of this thread received.
    pub received_by_publisher: AHashMap<u32, StreamTotals>,
    /// Sent / received inside the measured window (after warm-up).
    pub sent_measured: u64,
    pub received_measured: u64,
    /// Every PUBLISH a subscriber of ours received, stamped or not.
    pub received_total: u64,
    /// End-to-end latency (ns) of messages sent inside the measured window.
    pub latency_ns: Histogram<u64>,
    /// The slowest of those (`--slowest`).
    pub slowest: Slowest,
    /// From the first TCP connect to CONNACK success, redirects included (ns).
    pub connack_ns: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// "from -> to": redirects (Server Reference) followed.
    pub redirects: BTreeMap<String, u64>,
    /// Connections redirected at least once (followed or not).
    pub redirected_connections: u64,
    /// Redirects received, by the server they named (`host:port`, the
    /// Server Reference's first entry), followed or not.
    pub redirected_to: BTreeMap<String, u64>,
    /// Server address -> successful CONNACKs from it.
    pub connected_by_server: BTreeMap<String, u64>,
    /// Disconnects by the server per client (`--reconnect`) -> clients.
    pub evictions_per_client: BTreeMap<u32, u64>,
    /// Refused reconnects tried again (`--reconnect`), by CONNACK code.
    pub reconnect_retries: BTreeMap<String, u64>,
    /// Unacknowledged QoS 1/2 PUBLISHes (or PUBRELs) sent again after a
    /// reconnect (`--reconnect`).
    pub resent_after_reconnect: u64,
    /// Stamped by another run (or an unknown publisher id).
    pub foreign: u64,
    /// Payload without our stamp.
    pub unstamped: u64,
    /// Times a publisher's window stayed full for --outstanding-timeout.
    pub window_timeouts: u64,
    /// Time in the measured window spent in loop turns that did work
    /// (one entry per thread after merging: see `busy_ns_by_thread`).
    pub busy_ns: u64,
    pub busy_ns_by_thread: Vec<u64>,
    /// Time in the measured window this thread was runnable but another
    /// task had its CPU (`None`: the kernel does not say); one entry per
    /// thread after merging.
    pub preempted_ns: Option<u64>,
    pub preempted_ns_by_thread: Vec<Option<u64>>,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            sent_by_publisher: Vec::new(),
            received_by_publisher: AHashMap::new(),
            sent_measured: 0,
            received_measured: 0,
            received_total: 0,
            latency_ns: histogram(),
            slowest: Slowest::default(),
            connack_ns: histogram(),
            errors: BTreeMap::new(),
            redirects: BTreeMap::new(),
            redirected_connections: 0,
            redirected_to: BTreeMap::new(),
            connected_by_server: BTreeMap::new(),
            evictions_per_client: BTreeMap::new(),
            reconnect_retries: BTreeMap::new(),
            resent_after_reconnect: 0,
            foreign: 0,
            unstamped: 0,
            window_timeouts: 0,
            busy_ns: 0,
            busy_ns_by_thread: Vec::new(),
            preempted_ns: None,
            preempted_ns_by_thread: Vec::new(),
        }
    }
}

impl ThreadStats {
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    pub fn merge(&mut self, o: ThreadStats) {
        self.sent_by_publisher.extend(o.sent_by_publisher);
        for (id, t) in o.received_by_publisher {
            self.received_by_publisher.entry(id).or_default().add(&t);
        }
        self.sent_measured += o.sent_measured;
        self.received_measured += o.received_measured;
        self.received_total += o.received_total;
        self.latency_ns.add(&o.latency_ns).expect("same bounds");
        self.slowest.merge(o.slowest);
        self.connack_ns.add(&o.connack_ns).expect("same bounds");
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.redirects {
            *self.redirects.entry(k).or_default() += v;
        }
        self.redirected_connections += o.redirected_connections;
        for (k, v) in o.redirected_to {
            *self.redirected_to.entry(k).or_default() += v;
        }
        for (k, v) in o.connected_by_server {
            *self.connected_by_server.entry(k).or_default() += v;
        }
        for (k, v) in o.evictions_per_client {
            *self.evictions_per_client.entry(k).or_default() += v;
        }
        for (k, v) in o.reconnect_retries {
            *self.reconnect_retries.entry(k).or_default() += v;
        }
        self.resent_after_reconnect += o.resent_after_reconnect;
        self.foreign += o.foreign;
        self.unstamped += o.unstamped;
        self.window_timeouts += o.window_timeouts;
        self.busy_ns_by_thread.push(o.busy_ns);
        self.busy_ns_by_thread.extend(o.busy_ns_by_thread);
        self.preempted_ns_by_thread.push(o.preempted_ns);
        self.preempted_ns_by_thread.extend(o.preempted_ns_by_thread);
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Percentiles in microseconds from a histogram in nanoseconds; `None` if empty.
pub fn percentiles_us(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Some(Percentiles {
        count: h.len(),
        min: us(h.min()),
        mean: h.mean() / 1000.0,
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherReport {
    pub id: u32,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Clients {
    pub planned: u64,
    pub publishers: u32,
    pub subscribers: u32,
    /// Finished setup (CONNACK, and SUBACK for subscribers).
    pub ready: u64,
    pub failed: u64,
    /// Seconds from start until every client was set up (or the timeout).
    pub setup_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Redirects {
    /// Connections redirected at least once (followed or not).
    pub connections: u64,
    /// Redirects received, by the `host:port` the server named (followed
    /// or not: with `--max-redirects 0` nothing is followed).
    pub by_target: BTreeMap<String, u64>,
    /// "from -> to": hops followed.
    pub hops: BTreeMap<String, u64>,
    /// Successful CONNACKs per server (a session moved by DISCONNECT counts
    /// at both).
    pub connected_by_server: BTreeMap<String, u64>,
}

/// `--reconnect`: how often the server disconnected each client.
#[derive(Debug, Clone, Serialize)]
pub struct Evictions {
    /// Clients disconnected at least once.
    pub clients: u64,
    /// Clients disconnected more than once.
    pub clients_more_than_once: u64,
    pub max_per_client: u32,
    /// Disconnects -> clients disconnected that many times.
    pub by_count: BTreeMap<u32, u64>,
    /// Reconnects the server refused (CONNACK code, e.g. `0x88`) and the
    /// client tried again after a backoff, as a real client does.
    pub refused_reconnects_retried: BTreeMap<String, u64>,
    /// QoS 1/2 PUBLISHes (or PUBRELs) the server had not acknowledged when
    /// it disconnected their publisher, sent again after the reconnect.
    pub resent_after_reconnect: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Messages sent per second by our publishers in the measured window.
    pub out_msg_s: f64,
    /// Messages received per second by our subscribers in the measured window.
    pub in_msg_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// Connected over TLS (`--tls`).
    pub tls: bool,
    pub protocol_version: u8,
    pub qos: u8,
    pub payload_size: usize,
    pub threads: usize,
    pub max_outstanding: u32,
    /// Copies each message should reach (0: no subscribers of ours).
    pub copies: u32,
    /// Per-publisher rate in msg/s; null = closed loop at max rate.
    pub rate_per_publisher: Option<f64>,
    pub warmup_s: f64,
    /// Length of the measured window.
    pub duration_s: f64,
    pub clients: Clients,
    pub sent: u64,
    pub received: u64,
    /// sent x copies (null without subscribers of ours).
    pub expected: Option<u64>,
    pub lost: Option<u64>,
    pub duplicated: u64,
    pub reordered: u64,
    pub foreign: u64,
    pub unstamped: u64,
    pub window_timeouts: u64,
    pub throughput: Throughput,
    /// Per worker thread: % of the measured window spent handling sockets
    /// and sending (the rest is idle polling or sleeping): the load
    /// generator's own load. Near 100 % means it may be the bottleneck.
    pub loadgen_busy_pct: Vec<f64>,
    /// Per worker thread: ms of the measured window it was runnable while
    /// another task had its CPU (null where the kernel does not report
    /// it). Messages in flight then wait for it: a run whose latency tail
    /// comes with preemption measured the machine, not the broker.
    pub loadgen_preempted_ms: Option<Vec<f64>>,
    pub latency_us: Option<Percentiles>,
    pub connack_latency_us: Option<Percentiles>,
    pub redirects: Redirects,
    pub evictions: Evictions,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub publishers: Vec<PublisherReport>,
    /// selftest only: messages the forwarder passed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarder_messages: Option<u64>,
    /// selftest only: ms of the measured window the forwarder was runnable
    /// while another task had its CPU (it busy-polls, so any other task on
    /// its CPU delays every message in flight meanwhile). Beside
    /// `loadgen_preempted_ms`, it tells a tail of the machine from the load
    /// generator's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarder_preempted_ms: Option<f64>,
    /// `--slowest N`: the N slowest messages of the measured window, in
    /// send order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest: Option<Vec<SlowMessage>>,
}

pub struct RunInfo {
    pub scenario: String,
    pub target: String,
    pub tls: bool,
    pub protocol_version: u8,
    pub qos: u8,
    pub payload_size: usize,
    pub threads: usize,
    pub max_outstanding: u32,
    pub copies: u32,
    pub rate_per_publisher: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub clients: Clients,
    pub forwarder_messages: Option<u64>,
    pub forwarder_preempted_ns: Option<u64>,
}

pub fn build_report(info: RunInfo, s: &ThreadStats) -> Report {
    let copies = info.copies as u64;
    // Our publishers, and (sub scenario) the publishers of another run seen.
    let mut ids: BTreeMap<u32, u64> = s.sent_by_publisher.iter().copied().collect();
    for id in s.received_by_publisher.keys() {
        ids.entry(*id).or_insert(0);
    }
    let mut publishers: Vec<PublisherReport> = ids
        .into_iter()
        .map(|(id, sent)| {
            let t = s
                .received_by_publisher
                .get(&id)
                .copied()
                .unwrap_or_default();
            PublisherReport {
                id,
                sent,
                received: t.received,
                lost: if copies > 0 {
                    track::lost(sent, copies, &t)
                } else {
                    0
                },
                duplicated: t.duplicated,
                reordered: t.reordered,
            }
        })
        .collect();
    publishers.sort_by_key(|p| p.id);
    let sent: u64 = publishers.iter().map(|p| p.sent).sum();
    let mut all = StreamTotals::default();
    for t in s.received_by_publisher.values() {
        all.add(t);
    }
    let (expected, lost) = if copies > 0 {
        (
            Some(sent * copies),
            Some(publishers.iter().map(|p| p.lost).sum()),
        )
    } else {
        (None, None)
    };
    let secs = info.duration_s.max(1e-9);
    Report {
        scenario: info.scenario,
        target: info.target,
        tls: info.tls,
        protocol_version: info.protocol_version,
        qos: info.qos,
        payload_size: info.payload_size,
        threads: info.threads,
        max_outstanding: info.max_outstanding,
        copies: info.copies,
        rate_per_publisher: info.rate_per_publisher,
        warmup_s: info.warmup_s,
        duration_s: info.duration_s,
        clients: info.clients,
        sent,
        received: s.received_total,
        expected,
        lost,
        duplicated: all.duplicated,
        reordered: all.reordered,
        foreign: s.foreign,
        unstamped: s.unstamped,
        window_timeouts: s.window_timeouts,
        throughput: Throughput {
            out_msg_s: s.sent_measured as f64 / secs,
            in_msg_s: s.received_measured as f64 / secs,
        },
        loadgen_busy_pct: s
            .busy_ns_by_thread
            .iter()
            .map(|&b| (b as f64 / (info.duration_s.max(1e-9) * 1e9) * 1000.0).round() / 10.0)
            .collect(),
        loadgen_preempted_ms: s
            .preempted_ns_by_thread
            .iter()
            .map(|p| p.map(|ns| (ns as f64 / 1e5).round() / 10.0))
            .collect(),
        latency_us: percentiles_us(&s.latency_ns),
        connack_latency_us: percentiles_us(&s.connack_ns),
        redirects: Redirects {
            connections: s.redirected_connections,
            by_target: s.redirected_to.clone(),
            hops: s.redirects.clone(),
            connected_by_server: s.connected_by_server.clone(),
        },
        evictions: Evictions {
            clients: s.evictions_per_client.values().sum(),
            clients_more_than_once: s
                .evictions_per_client
                .iter()
                .filter(|(&k, _)| k > 1)
                .map(|(_, v)| v)
                .sum(),
            max_per_client: s.evictions_per_client.keys().max().copied().unwrap_or(0),
            by_count: s.evictions_per_client.clone(),
            refused_reconnects_retried: s.reconnect_retries.clone(),
            resent_after_reconnect: s.resent_after_reconnect,
        },
        errors_total: s.errors.values().sum(),
        errors: s.errors.clone(),
        publishers,
        forwarder_messages: info.forwarder_messages,
        forwarder_preempted_ms: info
            .forwarder_preempted_ns
            .map(|ns| (ns as f64 / 1e5).round() / 10.0),
        slowest: s.slowest.is_enabled().then(|| s.slowest.by_send_time()),
    }
}

/// 1234567.8 -> "1.23M"
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn render_table(r: &Report, max_publishers: usize) -> String {
    let mut o = String::new();
    let rate = match r.rate_per_publisher {
        Some(x) => format!("{x} msg/s per publisher"),
        None => format!("closed loop, max outstanding {}", r.max_outstanding),
    };
    let _ = writeln!(
        o,
        "ringmq-loadgen {} -> {}{}  MQTT {}  QoS {}  {} B  {}  threads {}",
        r.scenario,
        r.target,
        if r.tls { " (TLS)" } else { "" },
        if r.protocol_version == 5 {
            "5"
        } else {
            "3.1.1"
        },
        r.qos,
        r.payload_size,
        rate,
        r.threads
    );
    let c = &r.clients;
    let _ = writeln!(
        o,
        "clients      {} planned ({} pub, {} sub): {} ready, {} failed, set up in {:.2} s",
        c.planned, c.publishers, c.subscribers, c.ready, c.failed, c.setup_s
    );
    if r.redirects.connections > 0 {
        let targets: Vec<String> = r
            .redirects
            .by_target
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            o,
            "redirected   {} connections, to {}",
            r.redirects.connections,
            targets.join(", ")
        );
        if !r.redirects.hops.is_empty() {
            let hops: Vec<String> = r
                .redirects
                .hops
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(o, "followed     {}", hops.join(", "));
        }
    }
    if r.redirects.connected_by_server.len() > 1 || r.redirects.connections > 0 {
        let at: Vec<String> = r
            .redirects
            .connected_by_server
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(o, "connected at {}", at.join(", "));
    }
    if r.evictions.clients > 0 {
        let _ = writeln!(
            o,
            "evicted      {} clients by the server ({} more than once, at most {} times), reconnected; {} unacknowledged publishes sent again",
            r.evictions.clients,
            r.evictions.clients_more_than_once,
            r.evictions.max_per_client,
            r.evictions.resent_after_reconnect
        );
    }
    if r.scenario == "conn" {
        let _ = writeln!(o, "held         {:.2} s", r.duration_s);
    } else {
        let _ = writeln!(
            o,
            "window       warm-up {:.2} s, measured {:.2} s",
            r.warmup_s, r.duration_s
        );
        let _ = writeln!(
            o,
            "messages     sent {}  received {}  expected {}  lost {}  duplicated {}  reordered {}",
            r.sent,
            r.received,
            opt(r.expected),
            opt(r.lost),
            r.duplicated,
            r.reordered
        );
        if r.foreign + r.unstamped + r.window_timeouts > 0 {
            let _ = writeln!(
                o,
                "             foreign {}  unstamped {}  window timeouts {}",
                r.foreign, r.unstamped, r.window_timeouts
            );
        }
        let _ = writeln!(
            o,
            "throughput   out {} msg/s  in {} msg/s",
            si(r.throughput.out_msg_s),
            si(r.throughput.in_msg_s)
        );
    }
    let pct = |name: &str, p: &Option<Percentiles>, o: &mut String| {
        if let Some(p) = p {
            let _ = writeln!(
                o,
                "{name:<12} p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (us, n={})",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
    };
    if !r.loadgen_busy_pct.is_empty() && r.scenario != "conn" {
        let b: Vec<String> = r
            .loadgen_busy_pct
            .iter()
            .map(|p| format!("{p:.0} %"))
            .collect();
        let preempted = match &r.loadgen_preempted_ms {
            Some(p) => {
                let p: Vec<String> = p.iter().map(|ms| format!("{ms:.1} ms")).collect();
                format!(", preempted {}", p.join(", "))
            }
            None => String::new(),
        };
        let _ = writeln!(o, "loadgen busy {} (per thread){preempted}", b.join(", "));
    }
    pct("latency", &r.latency_us, &mut o);
    pct("connack", &r.connack_latency_us, &mut o);
    if r.errors_total > 0 {
        let e: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(o, "errors       {} ({})", r.errors_total, e.join(", "));
    }
    if let Some(f) = r.forwarder_messages {
        let preempted = r
            .forwarder_preempted_ms
            .map_or(String::new(), |ms| format!(", preempted {ms} ms"));
        let _ = writeln!(o, "forwarder    {f} messages passed on{preempted}");
    }
    if !r.publishers.is_empty() && max_publishers > 0 {
        let _ = writeln!(
            o,
            "{:>10} {:>12} {:>12} {:>10} {:>10} {:>10}",
            "publisher", "sent", "received", "lost", "duplicated", "reordered"
        );
        for p in r.publishers.iter().take(max_publishers) {
            let _ = writeln!(
                o,
                "{:>10} {:>12} {:>12} {:>10} {:>10} {:>10}",
                p.id, p.sent, p.received, p.lost, p.duplicated, p.reordered
            );
        }
        if r.publishers.len() > max_publishers {
            let _ = writeln!(
                o,
                "{:>10} ({} more publishers in the JSON report)",
                "...",
                r.publishers.len() - max_publishers
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_us() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = percentiles_us(&h).unwrap();
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert!(percentiles_us(&histogram()).is_none());
    }

    #[test]
    fn report_lost_and_merge() {
        let mut a = ThreadStats::default();
        a.sent_by_publisher.push((0, 10));
        let mut b = ThreadStats::default();
        b.received_by_publisher.insert(
            0,
            StreamTotals {
                received: 9,
                unique: 8,
                duplicated: 1,
                reordered: 2,
            },
        );
        b.error("connect_refused");
        a.merge(b);
        let info = RunInfo {
            scenario: "p2p".into(),
            target: "x".into(),
            tls: false,
            protocol_version: 5,
            qos: 1,
            payload_size: 64,
            threads: 2,
            max_outstanding: 100,
            copies: 1,
            rate_per_publisher: None,
            warmup_s: 0.0,
            duration_s: 1.0,
            clients: Clients {
                planned: 2,
                publishers: 1,
                subscribers: 1,
                ready: 2,
                failed: 0,
                setup_s: 0.1,
            },
            forwarder_messages: None,
            forwarder_preempted_ns: None,
        };
        let r = build_report(info, &a);
        assert_eq!(
            (r.sent, r.lost, r.duplicated, r.reordered),
            (10, Some(2), 1, 2)
        );
        assert_eq!(r.errors_total, 1);
        let t = render_table(&r, 5);
        assert!(t.contains("lost 2"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["publishers"][0]["lost"], 2);
    }

    #[test]
    fn si_units() {
        assert_eq!(si(12.0), "12");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_100_000.0), "2.10M");
    }
}
