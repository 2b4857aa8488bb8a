//! Tests of `certs`: generated files load, and every refusal.

use super::*;
use rustls::sign::CertifiedKey;
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringmq-certs-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_of(dir: &Path, node: &str, ca: bool) -> (PathBuf, PathBuf, Option<PathBuf>) {
    (
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}.key")),
        ca.then(|| dir.join(CA_CERT_FILE)),
    )
}

fn load_node(dir: &Path, node: &str, host: &str) -> Result<ClusterTls, CertFileError> {
    let (cert, key, ca) = files_of(dir, node, true);
    load(&ClusterTlsFiles {
        certfile: &cert,
        keyfile: &key,
        cacertfile: ca.as_deref(),
        fail_if_no_peer_cert: true,
        node_host: host,
    })
}

#[test]
fn generated_certificates_load_for_their_node_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("gen");
    let nodes = vec![
        "ringmq@127.0.0.1".to_string(),
        "ringmq@node2.example.com".to_string(),
    ];
    let written = generate(&dir, &nodes, false).unwrap();
    assert_eq!(written.len(), 6);
    for file in &written {
        let mode = std::fs::metadata(&file.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, if file.is_key { 0o600 } else { 0o644 }, "{file:?}");
    }
    let tls = load_node(&dir, "ringmq@127.0.0.1", "127.0.0.1").unwrap();
    assert_eq!(tls.chain.len(), 1);
    assert!(tls.roots.is_some());
    load_node(&dir, "ringmq@node2.example.com", "node2.example.com").unwrap();
    // Another node's host is not named by this certificate.
    let e = load_node(&dir, "ringmq@127.0.0.1", "127.0.0.2").unwrap_err();
    assert_eq!(e.field, "certfile");
    assert!(e.message.contains("\"127.0.0.2\""), "{e:?}");
    // A node certificate with another node's key does not fit.
    let e = load(&ClusterTlsFiles {
        certfile: &dir.join("ringmq@127.0.0.1.pem"),
        keyfile: &dir.join("ringmq@node2.example.com.key"),
        cacertfile: None,
        fail_if_no_peer_cert: true,
        node_host: "127.0.0.1",
    })
    .unwrap_err();
    assert_eq!(e.field, "keyfile", "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_refuses_to_overwrite_unless_forced() {
    let dir = temp_dir("force");
    let nodes = vec!["a@10.0.0.1".to_string()];
    generate(&dir, &nodes, false).unwrap();
    let ca_before = std::fs::read(dir.join(CA_KEY_FILE)).unwrap();
    let key_before = std::fs::read(dir.join("a@10.0.0.1.key")).unwrap();
    match generate(&dir, &nodes, false) {
        Err(GenCertsError::Exists(paths)) => assert_eq!(paths.len(), 2, "{paths:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(dir.join("a@10.0.0.1.key")).unwrap(),
        key_before
    );
    let written = generate(&dir, &nodes, true).unwrap();
    assert_eq!(written.len(), 2, "the CA is reused, not rewritten");
    assert_ne!(
        std::fs::read(dir.join("a@10.0.0.1.key")).unwrap(),
        key_before
    );
    assert_eq!(std::fs::read(dir.join(CA_KEY_FILE)).unwrap(), ca_before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_node_added_later_chains_to_the_existing_ca() {
    let dir = temp_dir("add");
    generate(&dir, &["a@127.0.0.1".to_string()], false).unwrap();
    let ca = std::fs::read(dir.join(CA_CERT_FILE)).unwrap();
    generate(&dir, &["b@127.0.0.2".to_string()], false).unwrap();
    assert_eq!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), ca);
    load_node(&dir, "a@127.0.0.1", "127.0.0.1").unwrap();
    load_node(&dir, "b@127.0.0.2", "127.0.0.2").unwrap();
    // Half a CA is refused, as is a CA of another origin.
    std::fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
    let e = generate(&dir, &["c@127.0.0.3".to_string()], false).unwrap_err();
    assert!(e.to_string().contains("must both exist"), "{e}");
    let other = temp_dir("other");
    generate(&other, &["x@127.0.0.1".to_string()], false).unwrap();
    std::fs::copy(other.join(CA_KEY_FILE), dir.join(CA_KEY_FILE)).unwrap();
    let e = generate(&dir, &["c@127.0.0.3".to_string()], false).unwrap_err();
    assert!(e.to_string().contains("does not chain to it"), "{e}");
    assert!(!dir.join("c@127.0.0.3.pem").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn generate_refuses_bad_and_duplicate_nodes_before_writing() {
    let dir = temp_dir("bad").join("sub");
    for nodes in [
        vec!["no-host".to_string()],
        vec!["a@".to_string()],
        vec!["a@bad_host".to_string()],
        vec!["a@1.2.3.4".to_string(), "a@1.2.3.4".to_string()],
        vec![],
    ] {
        assert!(generate(&dir, &nodes, false).is_err(), "{nodes:?}");
    }
    assert!(!dir.exists());
    let ipv6 = vec!["a@[::1]".to_string()];
    generate(&dir, &ipv6, false).unwrap();
    load_node(&dir, "a@[::1]", "::1").unwrap();
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_certfile() {
    let one = temp_dir("ca1");
    let two = temp_dir("ca2");
    let nodes = vec!["n@127.0.0.1".to_string()];
    generate(&one, &nodes, false).unwrap();
    generate(&two, &nodes, false).unwrap();
    let e = load(&ClusterTlsFiles {
        certfile: &one.join("n@127.0.0.1.pem"),
        keyfile: &one.join("n@127.0.0.1.key"),
        cacertfile: Some(&two.join(CA_CERT_FILE)),
        fail_if_no_peer_cert: true,
        node_host: "127.0.0.1",
    })
    .unwrap_err();
    assert_eq!(e.field, "certfile");
    assert!(e.message.contains("issued by a CA"), "{e:?}");
    std::fs::remove_dir_all(&one).unwrap();
    std::fs::remove_dir_all(&two).unwrap();
}

#[test]
fn self_signed_certificate_fits_its_key() {
    let (chain, key) = self_signed("ringmq@127.0.0.1", "127.0.0.1").unwrap();
    CertifiedKey::from_der(chain, key, &provider()).unwrap();
}
