//! The Prometheus text exposition format (version 0.0.4) of the shards'
//! statistics, for `GET /api/v5/prometheus/stats`.
//!
//! Per-shard series carry a `shard` label: a shard is a CPU, and an
//! imbalance between shards is what an operator looks for. Two families are
//! node-wide instead: `ringmq_retained_messages` (every shard holds the
//! whole store, so a sum would count each message once per shard) and
//! `ringmq_messages_dropped_total` (a session's drops travel with it when it
//! moves to another shard, so only the node's sum never goes down).

use super::ShardStats;
use crate::cluster::net::PeerStats;
use std::fmt::Write;

/// The `Content-Type` of the rendering.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family of one series per shard: name, help, and the value it reads.
type PerShardFamily = (&'static str, &'static str, fn(&ShardStats) -> u64);

enum Kind {
    Gauge,
    Counter,
}

/// Writes one family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let kind = match kind {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One series per shard of the value `value` picks.
fn per_shard(
    out: &mut String,
    name: &str,
    shards: &[ShardStats],
    value: impl Fn(&ShardStats) -> u64,
) {
    for s in shards {
        let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
    }
}

/// The whole exposition of a node whose shards answered with `shards`.
pub fn render(shards: &[ShardStats]) -> String {
    let mut out = String::with_capacity(4096);
    let gauges: [PerShardFamily; 3] = [
        ("ringmq_connections", "Open MQTT connections.", |s| {
            s.connections
        }),
        (
            "ringmq_sessions",
            "Sessions held: connected clients and offline sessions within their expiry interval.",
            |s| s.sessions,
        ),
        (
            "ringmq_subscriptions",
            "Subscriptions of the sessions held (shared subscriptions included).",
            |s| s.subscriptions,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, Kind::Gauge, help);
        per_shard(&mut out, name, shards, value);
    }
    family(
        &mut out,
        "ringmq_retained_messages",
        Kind::Gauge,
        "Retained messages on the node.",
    );
    let retained = shards.first().map_or(0, |s| s.retained_messages);
    let _ = writeln!(out, "ringmq_retained_messages {retained}");

    let counters: [PerShardFamily; 4] = [
        (
            "ringmq_messages_received_total",
            "PUBLISH packets received from clients.",
            |s| s.messages_received,
        ),
        (
            "ringmq_messages_sent_total",
            "PUBLISH packets sent to clients, resends included.",
            |s| s.messages_sent,
        ),
        (
            "ringmq_bytes_received_total",
            "Bytes read from client connections.",
            |s| s.bytes_received,
        ),
        (
            "ringmq_bytes_sent_total",
            "Bytes written to client connections.",
            |s| s.bytes_sent,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, Kind::Counter, help);
        per_shard(&mut out, name, shards, value);
    }

    family(
        &mut out,
        "ringmq_messages_dropped_total",
        Kind::Counter,
        "Messages accepted for a subscriber and not delivered, by cause.",
    );
    let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
    let dropped: [(&str, u64); 5] = [
        ("queue_full", sum(|s| s.dropped.sessions.queue_full)),
        ("expired", sum(|s| s.dropped.sessions.expired)),
        ("too_large", sum(|s| s.dropped.sessions.too_large)),
        ("closed", sum(|s| s.dropped.sessions.closed)),
        ("no_recipient", sum(|s| s.dropped.no_recipient)),
    ];
    for (reason, n) in dropped {
        let _ = writeln!(
            out,
            "ringmq_messages_dropped_total{{reason=\"{reason}\"}} {n}"
        );
    }

    family(
        &mut out,
        "ringmq_durable_store_bytes",
        Kind::Gauge,
        "Bytes of queued and inflight QoS 1/2 messages the shard's durable sessions keep in the store.",
    );
    per_shard(&mut out, "ringmq_durable_store_bytes", shards, |s| {
        s.durable_store.stored_bytes
    });
    family(
        &mut out,
        "ringmq_durable_store_refused_total",
        Kind::Counter,
        "Messages not queued for a durable session because a store bound was reached \
         (also counted in ringmq_messages_dropped_total{reason=\"queue_full\"}).",
    );
    let refused: [(&str, u64); 2] = [
        ("session", sum(|s| s.durable_store.refused_session)),
        ("node", sum(|s| s.durable_store.refused_shard)),
    ];
    for (bound, n) in refused {
        let _ = writeln!(
            out,
            "ringmq_durable_store_refused_total{{bound=\"{bound}\"}} {n}"
        );
    }

    family(
        &mut out,
        "ringmq_redirects_total",
        Kind::Counter,
        "CONNECTs redirected to another server, by reason code.",
    );
    for s in shards {
        let a = &s.admission;
        for (reason, n) in [
            ("use_another_server", a.redirected_use_another_server),
            ("server_moved", a.redirected_server_moved),
        ] {
            let _ = writeln!(
                out,
                "ringmq_redirects_total{{reason=\"{reason}\",shard=\"{}\"}} {n}",
                s.shard
            );
        }
    }
    family(
        &mut out,
        "ringmq_connections_refused_total",
        Kind::Counter,
        "CONNECTs refused by admission, by reason code.",
    );
    for s in shards {
        let a = &s.admission;
        for (reason, n) in [
            ("quota_exceeded", a.refused_quota_exceeded),
            ("server_unavailable", a.refused_server_unavailable),
        ] {
            let _ = writeln!(
                out,
                "ringmq_connections_refused_total{{reason=\"{reason}\",shard=\"{}\"}} {n}",
                s.shard
            );
        }
    }
    out
}

/// A peer's name as a label value: backslash, `"` and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Redis backend's counters (`durable_sessions.backend = "redis"`),
/// node-wide: one `ringmq_durable_redis_*` series each.
pub fn render_redis(out: &mut String, c: &crate::durable::redis::CountersSnapshot) {
    let errors = c.errors_io + c.errors_cluster + c.errors_timeout + c.errors_other;
    let series: [(&str, &str, u64); 12] = [
        (
            "groups_total",
            "Groups of batches applied to Redis.",
            c.groups,
        ),
        ("ops_total", "Ops written to Redis.", c.ops),
        (
            "retries_total",
            "Calls sent again after a Redis error.",
            c.retries,
        ),
        (
            "errors_total",
            "Redis calls that failed (unreachable, cluster, timeout, other).",
            errors,
        ),
        (
            "unreachable_ms_total",
            "Time writes waited for an unreachable Redis, in ms.",
            c.unreachable_ms,
        ),
        (
            "fenced_ops_total",
            "Ops Redis refused because a newer owner holds the session.",
            c.fenced,
        ),
        (
            "fenced_sessions_ended_total",
            "Sessions ended here because Redis fenced them.",
            c.sessions_fenced_ended,
        ),
        (
            "sessions_resumed_total",
            "Sessions a connect took from Redis.",
            c.sessions_resumed,
        ),
        (
            "load_failures_total",
            "Connects refused because Redis could not be read.",
            c.load_failures,
        ),
        (
            "refused_too_large_total",
            "Ops not written: record over the size limit.",
            c.refused_too_large,
        ),
        (
            "full_total",
            "Deliveries refused past the session's bound.",
            c.full,
        ),
        (
            "replica_ack_shortfalls_total",
            "Groups whose WAIT saw fewer replica acks than asked.",
            c.replica_ack_shortfalls,
        ),
    ];
    for (name, help, value) in series {
        let name = format!("ringmq_durable_redis_{name}");
        family(out, &name, Kind::Counter, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The cluster's links, one series per peer (`peer="name@host"`), after
/// `render`'s families: appended only by a clustered node.
pub fn render_peers(out: &mut String, peers: &[(String, PeerStats)]) {
    let peers: Vec<(String, &PeerStats)> = peers.iter().map(|(n, s)| (label_value(n), s)).collect();
    type PeerFamily = (&'static str, Kind, &'static str, fn(&PeerStats) -> u64);
    let families: [PeerFamily; 6] = [
        (
            "ringmq_cluster_peer_frames_sent_total",
            Kind::Counter,
            "Frames sent to the peer node.",
            |p| p.frames_sent,
        ),
        (
            "ringmq_cluster_peer_bytes_sent_total",
            Kind::Counter,
            "Frame bytes (headers included) sent to the peer node.",
            |p| p.bytes_sent,
        ),
        (
            "ringmq_cluster_peer_frames_received_total",
            Kind::Counter,
            "Frames received from the peer node.",
            |p| p.frames_received,
        ),
        (
            "ringmq_cluster_peer_bytes_received_total",
            Kind::Counter,
            "Frame bytes (headers included) received from the peer node.",
            |p| p.bytes_received,
        ),
        (
            "ringmq_cluster_peer_malformed_frames_total",
            Kind::Counter,
            "Links to the peer closed because it sent a malformed frame.",
            |p| p.malformed_frames,
        ),
        (
            "ringmq_cluster_peer_queue_depth",
            Kind::Gauge,
            "Frames waiting in the link's stream queues.",
            |p| p.queue_depth,
        ),
    ];
    for (name, kind, help, value) in families {
        family(out, name, kind, help);
        for (peer, stats) in &peers {
            let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", value(stats));
        }
    }
    family(
        out,
        "ringmq_cluster_peer_drops_total",
        Kind::Counter,
        "Frames for the peer dropped, by reason: its queue full, or no link to it.",
    );
    for (peer, stats) in &peers {
        for (reason, n) in [
            ("queue_full", stats.drops_queue_full),
            ("no_link", stats.drops_no_link),
        ] {
            let _ = writeln!(
                out,
                "ringmq_cluster_peer_drops_total{{peer=\"{peer}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    family(
        out,
        "ringmq_cluster_peer_forward_drops_total",
        Kind::Counter,
        "Forwarded messages for the peer dropped, by reason (window_full: past the \
         forwarding window's overshoot; link_down: unacknowledged when the link broke) and QoS.",
    );
    for (peer, stats) in &peers {
        for (r, reason) in ["window_full", "link_down"].into_iter().enumerate() {
            for (qos, n) in stats.forward_drops[r].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ringmq_cluster_peer_forward_drops_total{{peer=\"{peer}\",reason=\"{reason}\",qos=\"{qos}\"}} {n}"
                );
            }
        }
    }
    family(
        out,
        "ringmq_cluster_peer_forward_window_depth",
        Kind::Gauge,
        "Forwarded messages for the peer not yet acknowledged (queued here or in flight).",
    );
    for (peer, stats) in &peers {
        let _ = writeln!(
            out,
            "ringmq_cluster_peer_forward_window_depth{{peer=\"{peer}\"}} {}",
            stats.forward_window_depth
        );
    }
    family(
        out,
        "ringmq_cluster_peer_rtt_seconds",
        Kind::Gauge,
        "Smoothed round-trip time of the link (QUIC's estimate).",
    );
    for (peer, stats) in &peers {
        let _ = writeln!(
            out,
            "ringmq_cluster_peer_rtt_seconds{{peer=\"{peer}\"}} {}",
            stats.rtt_us as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DropTotals;
    use crate::session::DropCounts;
    use std::collections::BTreeMap;

    fn stats(shard: u16) -> ShardStats {
        let n = u64::from(shard) + 1;
        ShardStats {
            shard,
            connections: 10 * n,
            sessions: 11 * n,
            subscriptions: 12 * n,
            retained_messages: 7,
            messages_received: 100 * n,
            messages_sent: 200 * n,
            bytes_received: 1000 * n,
            bytes_sent: 2000 * n,
            dropped: DropTotals {
                sessions: DropCounts {
                    queue_full: n,
                    expired: 0,
                    too_large: 0,
                    closed: 0,
                },
                no_recipient: 1,
            },
            admission: crate::admission::ShardCountersSnapshot {
                redirected_use_another_server: 3 * n,
                ..Default::default()
            },
            durable_store: crate::session::store_quota::ShardUsage {
                stored_bytes: 1000 * n,
                refused_session: 2 * n,
                refused_shard: n,
            },
        }
    }

    /// A strict reader of the text format: every sample belongs to the
    /// family of the `# TYPE` line before it, families are not repeated,
    /// names and labels are well formed and values are numbers.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut families = Vec::<String>::new();
        let mut helped = None::<String>;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                helped = Some(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || kind == "counter", "{line}");
                assert_eq!(helped.as_deref(), Some(name), "HELP before TYPE: {line}");
                assert!(!families.contains(&name.to_string()), "repeated {name}");
                families.push(name.to_string());
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert_eq!(Some(name), families.last().map(String::as_str), "{line}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                let inner = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
                    assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2);
                }
            }
            let value: f64 = value.parse().unwrap();
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{line}"
            );
        }
        samples
    }

    #[test]
    fn renders_every_family_in_the_text_format() {
        let text = render(&[stats(0), stats(1)]);
        let s = parse(&text);
        assert_eq!(s["ringmq_connections{shard=\"0\"}"], 10.0);
        assert_eq!(s["ringmq_connections{shard=\"1\"}"], 20.0);
        assert_eq!(s["ringmq_sessions{shard=\"1\"}"], 22.0);
        assert_eq!(s["ringmq_subscriptions{shard=\"0\"}"], 12.0);
        // Node-wide, not a sum of the shards' copies.
        assert_eq!(s["ringmq_retained_messages"], 7.0);
        assert_eq!(s["ringmq_messages_received_total{shard=\"1\"}"], 200.0);
        assert_eq!(s["ringmq_messages_sent_total{shard=\"0\"}"], 200.0);
        assert_eq!(s["ringmq_bytes_received_total{shard=\"0\"}"], 1000.0);
        assert_eq!(s["ringmq_bytes_sent_total{shard=\"1\"}"], 4000.0);
        assert_eq!(
            s["ringmq_messages_dropped_total{reason=\"queue_full\"}"],
            3.0
        );
        assert_eq!(
            s["ringmq_messages_dropped_total{reason=\"no_recipient\"}"],
            2.0
        );
        assert_eq!(s["ringmq_durable_store_bytes{shard=\"1\"}"], 2000.0);
        assert_eq!(
            s["ringmq_durable_store_refused_total{bound=\"session\"}"],
            6.0
        );
        assert_eq!(s["ringmq_durable_store_refused_total{bound=\"node\"}"], 3.0);
        assert_eq!(
            s["ringmq_redirects_total{reason=\"use_another_server\",shard=\"1\"}"],
            6.0
        );
        assert_eq!(
            s["ringmq_connections_refused_total{reason=\"quota_exceeded\",shard=\"0\"}"],
            0.0
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_node_without_answers_renders_zeros_not_garbage() {
        let s = parse(&render(&[]));
        assert_eq!(s["ringmq_retained_messages"], 0.0);
        assert_eq!(s["ringmq_messages_dropped_total{reason=\"expired\"}"], 0.0);
    }

    #[test]
    fn peers_render_one_series_each_with_escaped_names() {
        let stats = PeerStats {
            frames_sent: 3,
            bytes_sent: 300,
            frames_received: 4,
            bytes_received: 400,
            drops_queue_full: 1,
            drops_no_link: 2,
            malformed_frames: 0,
            rtt_us: 1500,
            queue_depth: 5,
            forward_drops: [[7, 0, 0], [0, 4, 0]],
            forward_window_depth: 9,
        };
        let mut out = String::new();
        render_peers(
            &mut out,
            &[("b@127.0.0.2".into(), stats), ("q\"@h".into(), stats)],
        );
        let series = parse(&out);
        let get = |k: &str| {
            series
                .get(k)
                .copied()
                .unwrap_or_else(|| panic!("{k} in\n{out}"))
        };
        assert_eq!(
            get("ringmq_cluster_peer_frames_sent_total{peer=\"b@127.0.0.2\"}"),
            3.0
        );
        assert_eq!(
            get("ringmq_cluster_peer_bytes_received_total{peer=\"b@127.0.0.2\"}"),
            400.0
        );
        assert_eq!(
            get("ringmq_cluster_peer_queue_depth{peer=\"b@127.0.0.2\"}"),
            5.0
        );
        assert_eq!(
            get("ringmq_cluster_peer_drops_total{peer=\"b@127.0.0.2\",reason=\"no_link\"}"),
            2.0
        );
        assert_eq!(
            get("ringmq_cluster_peer_rtt_seconds{peer=\"b@127.0.0.2\"}"),
            0.0015
        );
        let drops = |reason: &str, qos: u8| {
            get(&format!(
                "ringmq_cluster_peer_forward_drops_total{{peer=\"b@127.0.0.2\",reason=\"{reason}\",qos=\"{qos}\"}}"
            ))
        };
        assert_eq!(drops("window_full", 0), 7.0);
        assert_eq!(drops("link_down", 1), 4.0);
        assert_eq!(drops("link_down", 2), 0.0);
        assert_eq!(
            get("ringmq_cluster_peer_forward_window_depth{peer=\"b@127.0.0.2\"}"),
            9.0
        );
        assert!(out.contains("peer=\"q\\\"@h\""), "{out}");
    }
}
