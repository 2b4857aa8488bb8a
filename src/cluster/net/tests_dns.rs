//! DNS discovery against a tiny DNS server the test runs: A records (the
//! nodes share the cluster port on 127.0.0.1 and 127.0.0.2) and SRV
//! records (each node its own port).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use super::tests::{free_udp_port, rt, settings, wait_running};
use super::*;

/// What the server answers for the one name it knows.
#[derive(Clone)]
enum Answer {
    A(Vec<Ipv4Addr>),
    /// (target name, port, target's address), given in the additional
    /// section as most servers do.
    Srv(Vec<(String, u16, Ipv4Addr)>),
}

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn record(out: &mut Vec<u8>, name: Option<&str>, rtype: u16, rdata: &[u8]) {
    match name {
        None => out.extend_from_slice(&[0xc0, 12]), // the question's name
        Some(n) => encode_name(out, n),
    }
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // IN
    out.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: re-resolved each time
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The answer to one query, or None for garbage.
fn respond(query: &[u8], name: &str, answer: &Answer) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut qname = Vec::new();
    while *query.get(i)? != 0 {
        let len = query[i] as usize;
        qname.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).into_owned());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question = &query[12..i + 5];
    let ours = qname
        .join(".")
        .eq_ignore_ascii_case(name.trim_end_matches('.'));
    let mut answers = Vec::new();
    let mut additional = Vec::new();
    let (mut ancount, mut arcount) = (0u16, 0u16);
    match (ours, qtype, answer) {
        (true, 1, Answer::A(ips)) => {
            for ip in ips {
                record(&mut answers, None, 1, &ip.octets());
                ancount += 1;
            }
        }
        (true, 33, Answer::Srv(targets)) => {
            for (target, port, ip) in targets {
                let mut rdata = vec![0, 10, 0, 10];
                rdata.extend_from_slice(&port.to_be_bytes());
                encode_name(&mut rdata, target);
                record(&mut answers, None, 33, &rdata);
                ancount += 1;
                record(&mut additional, Some(target), 1, &ip.octets());
                arcount += 1;
            }
        }
        _ => {} // no records of that type (NOERROR, empty)
    }
    let rcode: u16 = if ours { 0 } else { 3 }; // NXDOMAIN otherwise
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    for count in [1, ancount, 0, arcount] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(question);
    out.extend_from_slice(&answers);
    out.extend_from_slice(&additional);
    Some(out)
}

/// Serves `name` on a free UDP port until the test process ends.
fn dns_server(name: &'static str, answer: Answer) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some(reply) = respond(&buf[..n], name, &answer) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    addr
}

#[test]
fn the_test_server_answers_what_the_resolver_reads() {
    let server = dns_server(
        "srv.ringmq.test.",
        Answer::Srv(vec![("n1.ringmq.test".into(), 4371, Ipv4Addr::LOCALHOST)]),
    );
    let a_server = dns_server(
        "a.ringmq.test.",
        Answer::A(vec![Ipv4Addr::new(127, 0, 0, 2)]),
    );
    rt().block_on(async {
        let r = discovery::resolver(Some(server)).unwrap();
        let got = discovery::resolve(&r, "srv.ringmq.test.", DnsRecordType::Srv, 1)
            .await
            .unwrap();
        assert_eq!(got, vec!["127.0.0.1:4371".parse::<SocketAddr>().unwrap()]);
        let r = discovery::resolver(Some(a_server)).unwrap();
        let got = discovery::resolve(&r, "a.ringmq.test.", DnsRecordType::A, 4370)
            .await
            .unwrap();
        assert_eq!(got, vec!["127.0.0.2:4370".parse::<SocketAddr>().unwrap()]);
        assert!(
            discovery::resolve(&r, "unknown.ringmq.test.", DnsRecordType::A, 1)
                .await
                .is_err()
        );
    });
}

#[test]
fn nodes_find_each_other_by_a_records() {
    // One port for both nodes, on two loopback addresses.
    let port = free_udp_port("127.0.0.1").port();
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let server = dns_server("cluster.ringmq.test.", Answer::A(ips.to_vec()));
    let nodes: Vec<_> = ips
        .iter()
        .map(|ip| {
            let discovery = Discovery::Dns {
                name: "cluster.ringmq.test.".into(),
                record_type: DnsRecordType::A,
                port,
                nameserver: Some(server),
            };
            start(settings(
                &format!("dns@{ip}"),
                SocketAddr::new((*ip).into(), port),
                discovery,
            ))
            .unwrap()
        })
        .collect();
    rt().block_on(async {
        let handles: Vec<&ClusterHandle> = nodes.iter().map(|(h, _)| h).collect();
        assert!(
            wait_running(&handles, 2, Duration::from_secs(20)).await,
            "{:?}",
            handles[0].members()
        );
    });
}

#[test]
fn nodes_find_each_other_by_srv_records() {
    let addrs = [
        free_udp_port("127.0.0.1"),
        free_udp_port("127.0.0.1"),
        free_udp_port("127.0.0.1"),
    ];
    let targets = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("n{i}.ringmq.test"), a.port(), Ipv4Addr::LOCALHOST))
        .collect();
    let server = dns_server("_ringmq._udp.ringmq.test.", Answer::Srv(targets));
    let nodes: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let discovery = Discovery::Dns {
                name: "_ringmq._udp.ringmq.test.".into(),
                record_type: DnsRecordType::Srv,
                port: 0,
                nameserver: Some(server),
            };
            start(settings(&format!("srv{i}@127.0.0.1"), *addr, discovery)).unwrap()
        })
        .collect();
    rt().block_on(async {
        let handles: Vec<&ClusterHandle> = nodes.iter().map(|(h, _)| h).collect();
        assert!(
            wait_running(&handles, 3, Duration::from_secs(20)).await,
            "{:?}",
            handles[0].members()
        );
    });
}
