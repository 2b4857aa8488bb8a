//! The transport stack without sockets: a rustls client and hand-made
//! WebSocket frames against `Stack`, bytes passed by hand. The certificates
//! (a CA, a server certificate for localhost, a client certificate with CN
//! "device-7") are made once per test process by rcgen, into a temporary
//! directory: no private key lives in the repository.

use super::tls::{self, TlsFiles, TlsSpec};
use super::ws::WsSpec;
use super::*;
use crate::limits;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConnection;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory with `ca.pem`, `server.crt`/`.key`, `client.crt`/`.key`.
fn testdata_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("ringmq-transport-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        for (name, cn, purpose) in [
            ("server", "localhost", ExtendedKeyUsagePurpose::ServerAuth),
            ("client", "device-7", ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![cn.to_string()]).unwrap();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "ringmq tests");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        dir
    })
}

fn testdata(name: &str) -> PathBuf {
    testdata_dir().join(name)
}

fn tls_spec(verify_peer: bool, fail_if_no_peer_cert: bool) -> TlsSpec {
    let (cert, key, ca) = (
        testdata("server.crt"),
        testdata("server.key"),
        testdata("ca.pem"),
    );
    let config = tls::server_config(&TlsFiles {
        certfile: &cert,
        keyfile: &key,
        cacertfile: &ca,
        verify_peer,
        fail_if_no_peer_cert,
    })
    .expect("test certificates load");
    TlsSpec {
        config,
        peer_cert_cn_as_username: true,
    }
}

fn ws_spec() -> WsSpec {
    WsSpec {
        mqtt_path: Arc::from("/mqtt"),
        frame_bytes_max: 1024,
    }
}

fn spec(tls: Option<TlsSpec>, ws: Option<WsSpec>) -> TransportSpec {
    TransportSpec {
        tls,
        ws,
        handshake_timeout: Duration::from_secs(15),
    }
}

fn client(with_cert: bool) -> ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(testdata("ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = CertificateDer::pem_file_iter(testdata("client.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(testdata("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Moves bytes between the client and the server until neither has any;
/// the server's first error ends it.
fn pump(client: &mut ClientConnection, server: &mut Stack) -> Result<(), TransportError> {
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            server.handle_wire(&to_server)?;
        }
        let to_client = server.wire_out().to_vec();
        server.consume_wire_out(to_client.len());
        if !to_client.is_empty() {
            client.read_tls(&mut &to_client[..]).unwrap();
            client
                .process_new_packets()
                .expect("the client accepts the server");
        }
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
    }
    panic!("no quiet after 20 exchanges");
}

fn read_all_app(server: &mut Stack) -> Vec<u8> {
    let mut out = vec![0; 64 * 1024];
    let n = server.read_app(&mut out);
    out.truncate(n);
    out
}

#[test]
fn tls_carries_mqtt_both_ways_and_names_the_client_by_its_cn() {
    let mut server = Stack::new(&spec(Some(tls_spec(true, true)), None)).unwrap();
    let mut client = client(true);
    assert!(!server.is_established());
    pump(&mut client, &mut server).unwrap();
    assert!(server.is_established());
    client.writer().write_all(b"\x10\x0cMQTT bytes").unwrap();
    pump(&mut client, &mut server).unwrap();
    assert_eq!(read_all_app(&mut server), b"\x10\x0cMQTT bytes");
    assert!(!server.has_app());
    assert_eq!(server.peer_username().as_deref(), Some("device-7"));

    server.write_app(b"\x20\x02\x00\x00").unwrap();
    let wire = server.wire_out().to_vec();
    server.consume_wire_out(wire.len());
    assert!(
        !wire.windows(4).any(|w| w == b"\x20\x02\x00\x00"),
        "encrypted"
    );
    client.read_tls(&mut &wire[..]).unwrap();
    let state = client.process_new_packets().unwrap();
    let mut plain = vec![0; state.plaintext_bytes_to_read()];
    client.reader().read_exact(&mut plain).unwrap();
    assert_eq!(plain, b"\x20\x02\x00\x00");
}

#[test]
fn tls_refuses_a_client_without_certificate_when_one_is_required() {
    let mut server = Stack::new(&spec(Some(tls_spec(true, true)), None)).unwrap();
    let mut client = client(false);
    let mut result = Ok(());
    for _ in 0..5 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        result = server.handle_wire(&to_server);
        if result.is_err() {
            break;
        }
        let to_client = server.wire_out().to_vec();
        server.consume_wire_out(to_client.len());
        client.read_tls(&mut &to_client[..]).unwrap();
        let _ = client.process_new_packets();
    }
    assert!(matches!(result, Err(TransportError::Tls(_))), "{result:?}");
    // The alert saying why is there for the client.
    assert!(!server.wire_out().is_empty());
}

#[test]
fn tls_without_peer_cert_as_username_names_nobody() {
    let mut tls = tls_spec(true, true);
    tls.peer_cert_cn_as_username = false;
    let mut server = Stack::new(&spec(Some(tls), None)).unwrap();
    pump(&mut client(true), &mut server).unwrap();
    assert!(server.is_established());
    assert_eq!(server.peer_username(), None);
}

#[test]
fn plain_mqtt_sent_to_a_tls_stack_is_an_error() {
    let mut server = Stack::new(&spec(Some(tls_spec(false, false)), None)).unwrap();
    let connect = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00";
    assert!(matches!(
        server.handle_wire(connect),
        Err(TransportError::Tls(_))
    ));
    assert!(!server.has_app());
}

#[test]
fn server_config_errors_name_the_file_key() {
    let missing = testdata("missing.pem");
    let (cert, key, ca) = (
        testdata("server.crt"),
        testdata("server.key"),
        testdata("ca.pem"),
    );
    let files = |certfile, keyfile, cacertfile| TlsFiles {
        certfile,
        keyfile,
        cacertfile,
        verify_peer: true,
        fail_if_no_peer_cert: false,
    };
    let field = |f: TlsFiles<'_>| tls::server_config(&f).unwrap_err().field;
    assert_eq!(field(files(&missing, &key, &ca)), "certfile");
    assert_eq!(field(files(&cert, &missing, &ca)), "keyfile");
    assert_eq!(
        field(files(&cert, &ca, &ca)),
        "keyfile",
        "a certificate is no key"
    );
    assert_eq!(field(files(&cert, &key, &missing)), "cacertfile");
    assert_eq!(
        field(files(&key, &key, &ca)),
        "certfile",
        "a key is no certificate"
    );
    // The client's key does not fit the server's certificate.
    assert_eq!(field(files(&cert, &testdata("client.key"), &ca)), "keyfile");
}

#[test]
fn common_name_is_read_from_the_subject_only() {
    let der = CertificateDer::from_pem_file(testdata("client.crt")).unwrap();
    assert_eq!(tls::subject_common_name(&der).as_deref(), Some("device-7"));
    let server = CertificateDer::from_pem_file(testdata("server.crt")).unwrap();
    // The issuer (the CA, CN "ca") comes first in the DER: not taken.
    assert_eq!(
        tls::subject_common_name(&server).as_deref(),
        Some("localhost")
    );
    assert_eq!(tls::subject_common_name(b"\x30\x03\x02\x01"), None);
    assert_eq!(tls::subject_common_name(&der[..40]), None);
}

// ---------------------------------------------------------------- WebSocket

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(path: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        request += &format!("Sec-WebSocket-Protocol: {p}\r\n");
    }
    request += "\r\n";
    request.into_bytes()
}

/// A client frame: FIN, the opcode, masked unless `mask` is `None`.
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

fn upgraded() -> Stack {
    let mut server = Stack::new(&spec(None, Some(ws_spec()))).unwrap();
    server
        .handle_wire(&upgrade_request("/mqtt", Some("mqtt")))
        .unwrap();
    // Header names are case-insensitive; tungstenite writes them lowercase.
    let response = String::from_utf8(server.wire_out().to_vec())
        .unwrap()
        .to_ascii_lowercase();
    server.consume_wire_out(response.len());
    assert!(response.starts_with("http/1.1 101"), "{response}");
    assert!(
        response.contains("sec-websocket-protocol: mqtt\r\n"),
        "{response}"
    );
    // RFC 6455 section 1.3's example key and answer.
    assert!(
        response.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{response}"
    );
    assert!(server.is_established());
    server
}

#[test]
fn websocket_upgrade_then_binary_frames_carry_mqtt() {
    let mut server = upgraded();
    // One packet over two frames, and a ping between them.
    let mut wire = frame(0x2, b"\x10\x0c", Some([1, 2, 3, 4]));
    wire.extend(frame(0x9, b"ping", Some([9, 9, 9, 9])));
    wire.extend(frame(0x2, b"MQTT bytes", Some([5, 6, 7, 8])));
    server.handle_wire(&wire).unwrap();
    assert_eq!(read_all_app(&mut server), b"\x10\x0cMQTT bytes");
    // The pong, unmasked.
    assert_eq!(server.wire_out(), b"\x8a\x04ping");
    server.consume_wire_out(6);

    server.write_app(b"\x20\x02\x00\x00").unwrap();
    assert_eq!(server.wire_out(), b"\x82\x04\x20\x02\x00\x00");
}

#[test]
fn websocket_frames_split_anywhere_are_reassembled() {
    let mut server = upgraded();
    let wire = frame(0x2, &[0x42; 300], Some([1, 2, 3, 4]));
    for byte in &wire {
        server.handle_wire(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(read_all_app(&mut server), vec![0x42; 300]);
}

#[test]
fn websocket_upgrade_checks_path_and_subprotocol() {
    for (path, protocol, status) in [
        ("/other", Some("mqtt"), "404"),
        ("/mqtt", None, "400"),
        ("/mqtt", Some("mqttv3.1, chat"), "400"),
    ] {
        let mut server = Stack::new(&spec(None, Some(ws_spec()))).unwrap();
        let result = server.handle_wire(&upgrade_request(path, protocol));
        assert!(
            matches!(result, Err(TransportError::WsHandshake(_))),
            "{result:?}"
        );
        let response = String::from_utf8_lossy(server.wire_out());
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{response}"
        );
        assert!(!server.is_established());
    }
    // Several offered, mqtt among them.
    let mut server = Stack::new(&spec(None, Some(ws_spec()))).unwrap();
    server
        .handle_wire(&upgrade_request("/mqtt", Some("chat, mqtt")))
        .unwrap();
    assert!(server.is_established());
}

#[test]
fn websocket_upgrade_request_is_capped() {
    let mut server = Stack::new(&spec(None, Some(ws_spec()))).unwrap();
    let mut request = b"GET /mqtt HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(limits::WS_HANDSHAKE_BYTES_MAX + 1, b'a');
    assert!(matches!(
        server.handle_wire(&request),
        Err(TransportError::WsHandshakeTooLarge)
    ));
}

#[test]
fn websocket_refuses_text_unmasked_and_oversized_frames() {
    let mut server = upgraded();
    let result = server.handle_wire(&frame(0x1, b"\x10\x00", Some([1, 2, 3, 4])));
    assert!(
        matches!(result, Err(TransportError::WsTextFrame)),
        "{result:?}"
    );
    // A Close frame 1003 (unsupported data) says why.
    assert!(
        server.wire_out().starts_with(b"\x88"),
        "{:?}",
        server.wire_out()
    );
    assert_eq!(&server.wire_out()[2..4], &1003u16.to_be_bytes());

    // A text frame that is not UTF-8 either.
    let mut server = upgraded();
    let result = server.handle_wire(&frame(0x1, b"\xc0\x00", Some([1, 2, 3, 4])));
    assert!(
        matches!(result, Err(TransportError::WsTextFrame)),
        "{result:?}"
    );

    let mut server = upgraded();
    let result = server.handle_wire(&frame(0x2, b"\xc0\x00", None));
    assert!(matches!(result, Err(TransportError::Ws(_))), "{result:?}");
    assert!(!server.has_app());

    // Only the header of a frame larger than the cap: refused at once.
    let mut server = upgraded();
    let mut header = vec![0x82, 0x80 | 126];
    header.extend_from_slice(&2000u16.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let result = server.handle_wire(&header);
    assert!(matches!(result, Err(TransportError::Ws(_))), "{result:?}");
}

#[test]
fn websocket_close_frame_ends_the_stream() {
    let mut server = upgraded();
    let mut wire = frame(0x2, b"\xe0\x00", Some([1, 2, 3, 4]));
    wire.extend(frame(0x8, &1000u16.to_be_bytes(), Some([1, 2, 3, 4])));
    server.handle_wire(&wire).unwrap();
    assert!(server.peer_closed());
    // What came before the close is still read.
    assert_eq!(read_all_app(&mut server), b"\xe0\x00");
    // The close is answered.
    assert!(server.wire_out().starts_with(b"\x88"));
}

#[test]
fn websocket_over_tls() {
    let mut server = Stack::new(&spec(Some(tls_spec(false, false)), Some(ws_spec()))).unwrap();
    let mut client = client(false);
    pump(&mut client, &mut server).unwrap();
    assert!(!server.is_established(), "TLS is up, the upgrade is not");
    client
        .writer()
        .write_all(&upgrade_request("/mqtt", Some("mqtt")))
        .unwrap();
    pump(&mut client, &mut server).unwrap();
    assert!(server.is_established());
    let mut response = vec![0; 4096];
    let n = client.reader().read(&mut response).unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 101"));
    client
        .writer()
        .write_all(&frame(0x2, b"\xc0\x00", Some([1, 2, 3, 4])))
        .unwrap();
    pump(&mut client, &mut server).unwrap();
    assert_eq!(read_all_app(&mut server), b"\xc0\x00");
}
