//! Scenario -> the list of clients to run: role, client id, topic or filter,
//! worker thread. Pure: no I/O.

use crate::cli::{Args, Scenario};
use crate::stamp::STAMP_LEN;
use crate::track::Mode;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Connects and holds the connection (conn scenario).
    Idle,
    /// `id` is the publisher id stamped into payloads (0-based, dense).
    Publisher { id: u32, topic: String },
    /// `slot`: which of the publishers' expected receivers this subscriber
    /// is (0 in p2p, the subscriber index in fanin and fanout, the group in
    /// sharedsub): its column in the closed-loop delivery counters.
    Subscriber { filter: String, slot: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub client_id: String,
    pub role: Role,
    pub thread: usize,
    /// The server to connect to, when not the run's default
    /// (`--pub-addrs` / `--sub-addrs`, set by `targets::assign`).
    pub target: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: Vec<ClientSpec>,
    pub publishers: u32,
    pub subscribers: u32,
    /// Deliveries expected per published message (0: nobody of ours
    /// subscribes, the closed loop then only covers the MQTT window).
    pub copies: u32,
    pub mode: Mode,
}

/// Replace `%i` with `index`.
pub fn expand(template: &str, index: u32) -> String {
    template.replace("%i", &index.to_string())
}

fn default_topic(s: Scenario) -> &'static str {
    match s {
        Scenario::Conn => "",
        Scenario::Pub => "bench/%i",
        Scenario::Sub => "bench/#",
        Scenario::P2p | Scenario::Selftest => "bench/p2p/%i",
        Scenario::Fanin => "bench/fanin/%i",
        Scenario::Fanout => "bench/fanout",
        Scenario::Sharedsub => "bench/shared",
    }
}

pub fn build(a: &Args) -> Result<Plan, String> {
    if a.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if a.size < STAMP_LEN && a.scenario != Scenario::Conn && a.scenario != Scenario::Sub {
        return Err(format!(
            "--size must be at least {STAMP_LEN} (the timestamp)"
        ));
    }
    if a.max_outstanding == 0 || a.batch == 0 {
        return Err("--max-outstanding and --batch must be at least 1".into());
    }
    if a.scenario == Scenario::Selftest && a.qos == 2 {
        return Err("selftest forwards QoS 0 and 1 only".into());
    }
    let topic = a
        .topic
        .clone()
        .unwrap_or_else(|| default_topic(a.scenario).to_string());
    let t = a.threads;
    let p = &a.client_id_prefix;
    let mut clients = Vec::new();
    let publisher = |id: u32, topic: &str, thread: usize| ClientSpec {
        client_id: format!("{p}-pub-{id}"),
        role: Role::Publisher {
            id,
            topic: expand(topic, id),
        },
        thread,
        target: None,
    };
    let subscriber = |i: u32, filter: String, slot: u32, thread: usize| ClientSpec {
        client_id: format!("{p}-sub-{i}"),
        role: Role::Subscriber { filter, slot },
        thread,
        target: None,
    };
    let n = a.clients;
    let (publishers, subscribers, copies, mode) = match a.scenario {
        Scenario::Conn => {
            for i in 0..n {
                clients.push(ClientSpec {
                    client_id: format!("{p}-conn-{i}"),
                    role: Role::Idle,
                    thread: i as usize % t,
                    target: None,
                });
            }
            (0, 0, 0, Mode::Exact)
        }
        Scenario::Pub => {
            for i in 0..n {
                clients.push(publisher(i, &topic, i as usize % t));
            }
            (n, 0, 0, Mode::Exact)
        }
        Scenario::Sub => {
            for i in 0..n {
                clients.push(subscriber(i, expand(&topic, i), 0, i as usize % t));
            }
            (0, n, 0, Mode::Exact)
        }
        Scenario::P2p | Scenario::Selftest => {
            // Pair i on one thread: its closed loop never crosses threads.
            let filter = a.filter.clone().unwrap_or_else(|| topic.clone());
            for i in 0..n {
                clients.push(subscriber(i, expand(&filter, i), 0, i as usize % t));
                clients.push(publisher(i, &topic, i as usize % t));
            }
            (n, n, 1, Mode::Exact)
        }
        Scenario::Fanin => {
            let filter = a.filter.clone().unwrap_or_else(|| {
                if topic.ends_with("/%i") {
                    format!("{}/+", &topic[..topic.len() - 3])
                } else {
                    "#".into()
                }
            });
            let s = a.subscribers;
            for i in 0..s {
                clients.push(subscriber(i, expand(&filter, i), i, i as usize % t));
            }
            for i in 0..n {
                clients.push(publisher(i, &topic, (s + i) as usize % t));
            }
            (n, s, s, Mode::Exact)
        }
        Scenario::Fanout => {
            let filter = a.filter.clone().unwrap_or_else(|| topic.clone());
            let pubs = a.publishers;
            for i in 0..n {
                clients.push(subscriber(i, expand(&filter, i), i, i as usize % t));
            }
            for i in 0..pubs {
                clients.push(publisher(i, &topic, (n + i) as usize % t));
            }
            (pubs, n, n, Mode::Exact)
        }
        Scenario::Sharedsub => {
            let filter = a.filter.clone().unwrap_or_else(|| topic.clone());
            let groups = a.groups.max(1);
            let pubs = a.publishers;
            for i in 0..n {
                let g = i % groups;
                let group = if g == 0 {
                    a.group.clone()
                } else {
                    format!("{}{g}", a.group)
                };
                clients.push(subscriber(
                    i,
                    format!("$share/{group}/{}", expand(&filter, i)),
                    g,
                    i as usize % t,
                ));
            }
            for i in 0..pubs {
                clients.push(publisher(i, &topic, (n + i) as usize % t));
            }
            (pubs, n, groups.min(n), Mode::Shared)
        }
    };
    if clients.is_empty() {
        return Err("no clients: -c must be at least 1".into());
    }
    Ok(Plan {
        clients,
        publishers,
        subscribers,
        copies,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let mut v = vec!["ringmq-loadgen"];
        v.extend_from_slice(args);
        build(&Args::try_parse_from(v).unwrap()).unwrap()
    }

    fn topics(p: &Plan) -> Vec<String> {
        p.clients
            .iter()
            .map(|c| match &c.role {
                Role::Publisher { id, topic } => format!("P{id}:{topic}@{}", c.thread),
                Role::Subscriber { filter, slot } => format!("S{slot}:{filter}@{}", c.thread),
                Role::Idle => format!("I@{}", c.thread),
            })
            .collect()
    }

    #[test]
    fn expand_template() {
        assert_eq!(expand("a/%i/b/%i", 7), "a/7/b/7");
        assert_eq!(expand("plain", 7), "plain");
    }

    #[test]
    fn p2p_pairs_share_a_thread() {
        let p = plan(&["p2p", "-c", "3", "--threads", "2"]);
        assert_eq!(
            topics(&p),
            vec![
                "S0:bench/p2p/0@0",
                "P0:bench/p2p/0@0",
                "S0:bench/p2p/1@1",
                "P1:bench/p2p/1@1",
                "S0:bench/p2p/2@0",
                "P2:bench/p2p/2@0"
            ]
        );
        assert_eq!((p.publishers, p.subscribers, p.copies), (3, 3, 1));
    }

    #[test]
    fn fanin_and_fanout() {
        let p = plan(&["fanin", "-c", "3", "--subscribers", "2"]);
        assert_eq!(
            topics(&p),
            vec![
                "S0:bench/fanin/+@0",
                "S1:bench/fanin/+@0",
                "P0:bench/fanin/0@0",
                "P1:bench/fanin/1@0",
                "P2:bench/fanin/2@0"
            ]
        );
        assert_eq!(p.copies, 2);
        let p = plan(&["fanout", "-c", "4", "-t", "x/y"]);
        assert_eq!((p.publishers, p.subscribers, p.copies), (1, 4, 4));
        assert!(topics(&p).contains(&"P0:x/y@0".to_string()));
    }

    #[test]
    fn sharedsub_groups() {
        let p = plan(&["sharedsub", "-c", "4", "--groups", "2", "--publishers", "2"]);
        let t = topics(&p);
        assert_eq!(t[0], "S0:$share/bench/bench/shared@0");
        assert_eq!(t[1], "S1:$share/bench1/bench/shared@0");
        assert_eq!(t[2], "S0:$share/bench/bench/shared@0");
        assert_eq!((p.publishers, p.subscribers, p.copies), (2, 4, 2));
        assert_eq!(p.mode, Mode::Shared);
    }

    #[test]
    fn rejects_tiny_payloads() {
        let a = Args::try_parse_from(["x", "p2p", "-s", "10"]).unwrap();
        assert!(build(&a).is_err());
        let a = Args::try_parse_from(["x", "conn", "-s", "10"]).unwrap();
        assert!(build(&a).is_ok());
    }
}
