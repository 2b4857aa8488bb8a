//! Links under a cluster CA (good, from another CA, naming another host)
//! and a peer that breaks the framing after a valid handshake.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::tests::{free_udp_port, rt, settings, wait_event, wait_running};
use super::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn make_ca() -> Ca {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ringmq test CA {n}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes a node certificate for `san` signed by `ca` and the CA bundle
/// (`bundle`: several CAs in one file) into `dir`.
fn tls_files(
    dir: &Path,
    ca: &Ca,
    bundle: &[&Ca],
    san: &str,
    fail_if_no_peer_cert: bool,
) -> TlsMode {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![san.to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
    let cas: String = bundle.iter().map(|c| c.cert.pem()).collect();
    std::fs::write(dir.join("ca.pem"), cas).unwrap();
    TlsMode::Ca {
        certfile: dir.join("node.pem"),
        keyfile: dir.join("node.key"),
        cacertfile: dir.join("ca.pem"),
        fail_if_no_peer_cert,
    }
}

fn ca_node(name: &str, ca: &Ca, bundle: &[&Ca], san: &str) -> (NetSettings, SocketAddr) {
    let addr = free_udp_port("127.0.0.1");
    let mut s = settings(name, addr, Discovery::Manual);
    s.tls = tls_files(&s.data_dir, ca, bundle, san, true);
    (s, addr)
}

#[test]
fn nodes_with_certificates_of_the_cluster_ca_bundle_link() {
    let (ca1, other) = (make_ca(), make_ca());
    // The bundle holds an unrelated CA first: any CA of it will do.
    let (a, a_addr) = ca_node("t1@127.0.0.1", &ca1, &[&other, &ca1], "127.0.0.1");
    let (b, _) = ca_node("t2@127.0.0.1", &ca1, &[&other, &ca1], "127.0.0.1");
    let (a, _a_events) = start(a).unwrap();
    let (b, _b_events) = start(b).unwrap();
    rt().block_on(async {
        b.join(a_addr).unwrap();
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(15)).await);
    });
}

#[test]
fn a_certificate_from_another_ca_is_refused_on_both_sides() {
    let (ca1, ca2) = (make_ca(), make_ca());
    let (a, a_addr) = ca_node("u1@127.0.0.1", &ca1, &[&ca1], "127.0.0.1");
    let (b, _) = ca_node("u2@127.0.0.1", &ca2, &[&ca2], "127.0.0.1");
    let (a, mut a_events) = start(a).unwrap();
    let (b, mut b_events) = start(b).unwrap();
    rt().block_on(async {
        b.join(a_addr).unwrap();
        for (who, events) in [("a", &mut a_events), ("b", &mut b_events)] {
            let e = wait_event(events, Duration::from_secs(10), |e| {
                matches!(e, NetEvent::Refused { .. })
            })
            .await;
            let Some(NetEvent::Refused { reason, .. }) = e else {
                panic!("{who}: no refusal")
            };
            println!("{who}: {reason}");
            assert!(
                reason.contains("UnknownIssuer") || reason.contains("certificate"),
                "{who}: {reason}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a.members().len(), 1);
        assert_eq!(b.members().len(), 1);
    });
}

#[test]
fn a_certificate_naming_another_host_is_refused() {
    let ca = make_ca();
    let (a, a_addr) = ca_node("v1@127.0.0.1", &ca, &[&ca], "127.0.0.1");
    // Its node name says 127.0.0.1, its certificate names another host.
    let (b, _) = ca_node("v2@127.0.0.1", &ca, &[&ca], "elsewhere.example");
    let (_a, mut a_events) = start(a).unwrap();
    let (b, mut b_events) = start(b).unwrap();
    rt().block_on(async {
        b.join(a_addr).unwrap();
        for events in [&mut a_events, &mut b_events] {
            let e = wait_event(events, Duration::from_secs(10), |e| {
                matches!(e, NetEvent::Refused { .. })
            })
            .await;
            let Some(NetEvent::Refused { reason, .. }) = e else {
                panic!("no refusal")
            };
            assert!(reason.contains("does not name its host"), "{reason}");
        }
    });
}

/// A peer that completes a valid handshake, then sends `bad` on the
/// control stream; returns how the node closed the connection.
async fn misbehave(target: SocketAddr, bad: &[u8]) -> quinn::ConnectionError {
    let fake = settings(
        "evil@127.0.0.1",
        free_udp_port("127.0.0.1"),
        Discovery::Manual,
    );
    let link_tls = tls::build(&fake).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(link_tls.client, target, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let mut exporter = [0u8; hello::EXPORTER_LEN_BYTES];
    conn.export_keying_material(&mut exporter, hello::EXPORTER_LABEL, b"")
        .unwrap();
    let mine = hello::Hello {
        version: hello::HELLO_VERSION,
        cluster_name: fake.cluster_name.clone(),
        node_name: fake.node_name.clone(),
        node_id: fake.node_id.0,
        role: Role::Core,
        boot_epoch_ms: fake.boot_epoch_ms,
        quic_addr: fake.bind,
        mqtt_addr: fake.mqtt_addr,
        proof: hello::proof(&fake.cookie, &exporter, &fake.node_name),
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode(frame::KIND_HELLO, &hello::encode(&mine)))
        .await
        .unwrap();
    let (header, _) = link::read_frame(&mut recv).await.unwrap().unwrap();
    assert_eq!(header.kind, frame::KIND_HELLO, "the handshake passed");
    send.write_all(bad).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap()
}

#[test]
fn a_malformed_frame_closes_that_link_only() {
    let (a_addr, b_addr) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let (a, _a_events) = start(settings(
        "w1@127.0.0.1",
        a_addr,
        Discovery::Static(vec![b_addr]),
    ))
    .unwrap();
    let (b, mut b_events) = start(settings(
        "w2@127.0.0.1",
        b_addr,
        Discovery::Static(vec![a_addr]),
    ))
    .unwrap();
    rt().block_on(async {
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(20)).await);
        let bad_version = [9u8, 16, 0, 0, 0, 0, 0, 0];
        let mut oversized = [1u8, 16, 0, 0, 0, 0, 0, 0];
        oversized[4..].copy_from_slice(&(limits::CLUSTER_FRAME_LEN_MAX_BYTES + 1).to_le_bytes());
        let net_kind_after_handshake = frame::encode(5, b"");
        for (bad, needle) in [
            (&bad_version[..], "frame version 9"),
            (&oversized[..], "over the cap"),
            (&net_kind_after_handshake[..], "kind 5 is not expected"),
        ] {
            let closed = misbehave(a_addr, bad).await;
            match closed {
                quinn::ConnectionError::ApplicationClosed(c) => {
                    assert_eq!(c.error_code, quinn::VarInt::from_u32(link::CLOSE_PROTOCOL));
                    let reason = String::from_utf8_lossy(&c.reason);
                    assert!(reason.contains(needle), "{reason}");
                }
                other => panic!("closed otherwise: {other}"),
            }
        }
        assert_eq!(
            a.peer_stats(NodeId::from_name("evil@127.0.0.1"))
                .malformed_frames,
            3
        );
        // a still serves b.
        assert!(wait_running(&[&a, &b], 2, Duration::from_secs(1)).await);
        a.try_send(Outgoing {
            node: b.node(),
            stream: StreamId::Control,
            kind: 200,
            body: Bytes::from_static(b"still here"),
        })
        .unwrap();
        let e = wait_event(&mut b_events, Duration::from_secs(5), |e| {
            matches!(e, NetEvent::PeerFrame { .. })
        })
        .await;
        assert!(
            matches!(e, Some(NetEvent::PeerFrame { kind: 200, .. })),
            "{e:?}"
        );
    });
}
