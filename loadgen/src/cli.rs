//! Command line. Every option is documented in loadgen/README.md too.

use std::net::IpAddr;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::targets::{parse_server_addr, ServerAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connection storm: connect every client, hold the connections idle.
    Conn,
    /// Publishers only (no subscribers of ours; QoS 1/2 windows on PUBACK/PUBCOMP).
    Pub,
    /// Subscribers only (messages from another process, e.g. a `pub` run).
    Sub,
    /// Pairs: publisher i -> subscriber i, one topic per pair.
    P2p,
    /// Many publishers -> few subscribers (each subscriber gets everything).
    Fanin,
    /// Few publishers -> many subscribers of one topic.
    Fanout,
    /// Few publishers -> one or more $share groups of many members.
    Sharedsub,
    /// p2p against an in-process forwarder that does no MQTT work:
    /// measures the load generator's own headroom.
    Selftest,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringmq-loadgen",
    version,
    about = "MQTT 3.1.1 / 5.0 load generator (emqtt-bench style): closed loop, stamped payloads, HDR latency",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Args {
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Print version.
    #[arg(long, action = ArgAction::Version)]
    pub version: Option<bool>,

    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Broker host (name or IP literal).
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Publishers' servers, `host:port[,host:port...]`, round robin by
    /// publisher (the conn scenario's clients too). Default: --host:--port.
    #[arg(long, value_delimiter = ',', value_parser = parse_server_addr)]
    pub pub_addrs: Vec<ServerAddr>,
    /// Subscribers' servers, `host:port[,host:port...]`, round robin by
    /// subscriber. Default: --host:--port.
    #[arg(long, value_delimiter = ',', value_parser = parse_server_addr)]
    pub sub_addrs: Vec<ServerAddr>,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(short = 'V', long = "protocol-version", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(4..=5))]
    pub protocol_version: u8,

    /// The scenario's main client count: connections (conn), publishers (pub,
    /// fanin), subscribers (sub, fanout, sharedsub), pairs (p2p, selftest).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: u32,
    /// Publishers in fanout and sharedsub.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Subscribers in fanin.
    #[arg(long, default_value_t = 1)]
    pub subscribers: u32,
    /// sharedsub: number of $share groups (each gets every message once).
    #[arg(long, default_value_t = 1)]
    pub groups: u32,
    /// sharedsub: group name prefix; groups are NAME, NAME1, NAME2, ...
    #[arg(long, default_value = "bench")]
    pub group: String,

    /// QoS of PUBLISH and SUBSCRIBE.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 24: the stamp).
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Publish topic template (`%i` = the client's index in its role);
    /// for `sub` the subscription filter. Default per scenario, see README.
    #[arg(short = 't', long)]
    pub topic: Option<String>,
    /// Subscription filter template, when it differs from the topic (fanin).
    #[arg(long)]
    pub filter: Option<String>,

    /// Total publish rate in msg/s over all publishers; 0 = as fast as the
    /// outstanding window allows.
    #[arg(short = 'r', long, default_value_t = 0.0)]
    pub rate: f64,
    /// Publish rate per publisher in msg/s (instead of --rate).
    #[arg(long, conflicts_with = "rate")]
    pub client_rate: Option<f64>,
    /// Closed loop: messages a publisher may have outstanding (sent, not yet
    /// received by its subscribers; see README for fan-out).
    #[arg(long, default_value_t = 100)]
    pub max_outstanding: u32,
    /// A publisher whose window stayed full this long writes its outstanding
    /// messages off (they will show as lost if they never arrive) and goes on.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub outstanding_timeout: Duration,
    /// QoS 1/2 PUBLISH packets a publisher may have unacknowledged (MQTT
    /// level). 0: the server's Receive Maximum on MQTT 5, 32 on 3.1.1 (which
    /// has no flow control; brokers commonly cap it near there).
    #[arg(long, default_value_t = 0)]
    pub inflight: u16,
    /// Most PUBLISH packets written per write(2) per connection.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,

    /// Decode every received packet with ringmq::codec (full validation of
    /// what the broker sends) instead of parsing PUBLISH and acks in place.
    #[arg(long)]
    pub codec_decode: bool,
    /// Report the N slowest messages of the measured window (JSON
    /// `slowest`: send time on CLOCK_MONOTONIC, latency, publisher,
    /// sequence), to line a latency tail up with the broker's events.
    #[arg(long, default_value_t = 0)]
    pub slowest: usize,

    /// Keep Alive in seconds (0 = off).
    #[arg(short = 'k', long, default_value_t = 60)]
    pub keepalive: u16,
    /// Clean Start (v5) / Clean Session (3.1.1).
    #[arg(short = 'C', long, default_value_t = true, action = ArgAction::Set)]
    pub clean_start: bool,
    /// v5 Session Expiry Interval in seconds.
    #[arg(short = 'x', long, default_value_t = 0)]
    pub session_expiry: u32,
    /// Client identifier prefix; ids are PREFIX-<role>-<index>.
    #[arg(long, default_value = "lg")]
    pub client_id_prefix: String,

    /// Measured publishing time (conn: how long connections are held).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Publishing time before measuring starts (not in throughput or latency).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After publishing stops, how long to wait for outstanding messages.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// How long to wait for all clients to connect (and subscribe) before
    /// starting anyway.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// New connections per second over all threads; 0 = unlimited (but at
    /// most --connect-inflight handshakes pending per thread).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Handshakes (TCP + CONNECT + SUBSCRIBE) pending at once per thread.
    #[arg(long, default_value_t = 512)]
    pub connect_inflight: u32,
    /// Worker threads poll their sockets without ever sleeping in
    /// epoll_wait. On loopback a sleeping reader is woken by the sender's
    /// CPU (in the kernel's send path), so a broker measured beside a
    /// sleepy load generator pays for its wake-ups; a busy-polling one takes
    /// that cost off the broker, as clients on other machines would. Each
    /// worker then uses its whole CPU. See README, "Busy polling".
    #[arg(long)]
    pub busy_poll: bool,
    /// Local source addresses, used round robin (one address gives ~28k
    /// connections to one server port): 127.0.0.1,127.0.0.2,...
    #[arg(long, value_delimiter = ',')]
    pub bind_addrs: Vec<IpAddr>,
    /// Most redirects (Server Reference) followed per connection.
    #[arg(long, default_value_t = 4)]
    pub max_redirects: u8,
    /// Clients the server disconnects after they were ready (an eviction:
    /// DISCONNECT, or a closed 3.1.1 connection) connect again, with the
    /// same client id (so the same session with --clean-start false): to
    /// the Server Reference when one is given, else to --reconnect-addr.
    /// A reconnect the server refuses (CONNACK 0x88, 0x9C without a
    /// Server Reference, 3.1.1 code 3...) is tried again after 100 ms,
    /// 200 ms, ... up to 2 s apart, 20 times. Disconnects per client and
    /// retries by CONNACK code are reported.
    #[arg(long)]
    pub reconnect: bool,
    /// Where --reconnect sends clients that got no Server Reference, e.g.
    /// the load balancer. Default: the server they were on.
    #[arg(long, value_parser = parse_server_addr, requires = "reconnect")]
    pub reconnect_addr: Option<ServerAddr>,

    /// Connect over TLS (rustls; TLS 1.2 or 1.3). The CONNACK latency then
    /// includes the TLS handshake.
    #[arg(long)]
    pub tls: bool,
    /// --tls: PEM file of the CA certificates to trust (default: the
    /// system bundle /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, requires = "tls")]
    pub cafile: Option<std::path::PathBuf>,
    /// --tls: client certificate chain (PEM), for listeners that verify peers.
    #[arg(long, requires_all = ["tls", "key"])]
    pub cert: Option<std::path::PathBuf>,
    /// --tls: the client certificate's private key (PEM).
    #[arg(long, requires_all = ["tls", "cert"])]
    pub key: Option<std::path::PathBuf>,
    /// --tls: server name sent as SNI and checked against the server's
    /// certificate (default: --host, a DNS name or an IP address).
    #[arg(long, requires = "tls")]
    pub tls_server_name: Option<String>,

    /// Worker threads (each an event loop owning a share of the clients).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin worker threads to, e.g. `1` or `2-3,6`; thread j gets the
    /// j-th CPU (round robin). Unset: not pinned.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// selftest: CPU to pin the forwarder thread to.
    #[arg(long)]
    pub forwarder_cpu: Option<usize>,
    /// selftest: run the forwarder at real-time priority (SCHED_FIFO 1; it
    /// then sleeps in epoll_wait once idle for 20 us), so other tasks on
    /// its CPU do not delay messages; needs CAP_SYS_NICE. See README,
    /// "Headroom (selftest)".
    #[arg(long)]
    pub forwarder_rt: bool,

    /// Write the report as JSON to FILE, or `-` for stdout (the table then
    /// goes to stderr).
    #[arg(long)]
    pub json: Option<String>,
    /// No live progress and no table (errors still go to stderr).
    #[arg(long)]
    pub quiet: bool,
    /// Publishers listed in the table (all are in the JSON).
    #[arg(long, default_value_t = 10)]
    pub table_publishers: usize,
}

/// `10`, `10s`, `500ms`, `2m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| format!("{s:?}: bad number"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = tail;
    }
    Ok(total)
}

/// A CPU list (a newtype: clap would take a bare `Vec` as a repeated option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `1`, `0,2`, `2-5,8`.
pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.trim().parse().map_err(|_| format!("bad CPU {a:?}"))?;
            let b: usize = b.trim().parse().map_err(|_| format!("bad CPU {b:?}"))?;
            if a > b {
                return Err(format!("bad CPU range {part:?}"));
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| format!("bad CPU {part:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1").unwrap().0, vec![1]);
        assert_eq!(parse_cpus("0,2").unwrap().0, vec![0, 2]);
        assert_eq!(parse_cpus("2-4,8").unwrap().0, vec![2, 3, 4, 8]);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("a").is_err());
    }

    #[test]
    fn args_parse() {
        let a = Args::try_parse_from([
            "ringmq-loadgen",
            "p2p",
            "-h",
            "10.0.0.1",
            "-p",
            "1884",
            "-V",
            "4",
            "-q",
            "1",
            "-c",
            "10",
            "--bind-addrs",
            "127.0.0.1,127.0.0.2",
            "--cpus",
            "1",
            "-C",
            "false",
        ])
        .unwrap();
        assert_eq!(a.scenario, Scenario::P2p);
        assert_eq!(
            (a.host.as_str(), a.port, a.protocol_version, a.qos),
            ("10.0.0.1", 1884, 4, 1)
        );
        assert_eq!(a.bind_addrs.len(), 2);
        assert_eq!(a.cpus, Some(CpuList(vec![1])));
        assert!(!a.clean_start);
        assert!(Args::try_parse_from(["x", "p2p", "-V", "3"]).is_err());
        assert!(Args::try_parse_from(["x", "p2p", "-q", "3"]).is_err());
        assert!(Args::try_parse_from(["x", "p2p", "-r", "5", "--client-rate", "1"]).is_err());
    }

    #[test]
    fn server_lists() {
        let a = Args::try_parse_from([
            "x",
            "p2p",
            "--pub-addrs",
            "127.0.0.1:1883,[::1]:1884",
            "--sub-addrs",
            "node-3:1885",
        ])
        .unwrap();
        let shown = |l: &[ServerAddr]| l.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&a.pub_addrs), ["127.0.0.1:1883", "[::1]:1884"]);
        assert_eq!(shown(&a.sub_addrs), ["node-3:1885"]);
        let none = Args::try_parse_from(["x", "p2p"]).unwrap();
        assert!(none.pub_addrs.is_empty() && none.sub_addrs.is_empty());
        assert!(Args::try_parse_from(["x", "p2p", "--pub-addrs", "127.0.0.1"]).is_err());
        assert!(Args::try_parse_from(["x", "p2p", "--sub-addrs", "a:1,,b:2"]).is_err());
    }

    #[test]
    fn tls_args() {
        let a = Args::try_parse_from(["x", "conn", "--tls", "--cafile", "ca.pem"]).unwrap();
        assert!(a.tls);
        assert_eq!(a.cafile.as_deref(), Some(std::path::Path::new("ca.pem")));
        // The TLS options mean nothing without --tls; a certificate needs its key.
        assert!(Args::try_parse_from(["x", "conn", "--cafile", "ca.pem"]).is_err());
        assert!(Args::try_parse_from(["x", "conn", "--tls", "--cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["x", "conn", "--tls", "--cert", "c", "--key", "k"]).is_ok());
    }
}
