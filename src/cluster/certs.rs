//! Certificates of the cluster's QUIC links (docs/clustering.md,
//! "Certificates"):
//!
//! * [`load`]: `cluster.ssl_options`' files, read and checked when the
//!   configuration loads, so a bad file stops the start naming its key
//!   (`Config::cluster_tls` calls it and the cluster thread takes the
//!   result).
//! * [`self_signed`]: a node's certificate when no file is configured;
//!   peers are then authenticated by the cookie.
//! * [`generate`]: `ringmq gen-certs`, a CA and one certificate per node
//!   for a first cluster.

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `cluster.ssl_options` with files set.
pub struct ClusterTlsFiles<'a> {
    pub certfile: &'a Path,
    pub keyfile: &'a Path,
    /// `None`: peers are not checked against a CA (cookie only).
    pub cacertfile: Option<&'a Path>,
    pub fail_if_no_peer_cert: bool,
    /// The host of `node.name`, which the certificate must name when
    /// peers check it against the CA.
    pub node_host: &'a str,
}

/// This node's TLS identity and what it trusts, ready for the QUIC
/// endpoint's rustls configurations.
#[derive(Debug)]
pub struct ClusterTls {
    /// This node's certificate first, then its intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of `chain[0]`.
    pub key: PrivateKeyDer<'static>,
    /// The CAs a peer's certificate must chain to; `None`: peers are
    /// authenticated by the cookie alone.
    pub roots: Option<Arc<RootCertStore>>,
    /// With `roots`: refuse a peer without a certificate.
    pub fail_if_no_peer_cert: bool,
}

/// What is wrong with one of the files: `field` names the key
/// (`certfile`, `keyfile`, `cacertfile`), `message` says what and how to
/// fix it.
#[derive(Debug, PartialEq, Eq)]
pub struct CertFileError {
    pub field: &'static str,
    pub message: String,
}

fn file_error(field: &'static str, message: impl Into<String>) -> CertFileError {
    CertFileError {
        field,
        message: message.into(),
    }
}

// ring, not aws-lc-rs, as for the TLS listeners (src/transport/tls.rs).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read_certs(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertFileError> {
    let pem = std::fs::read(path)
        .map_err(|e| file_error(field, format!("a readable PEM file (cannot read it: {e})")))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| file_error(field, format!("a PEM file (it is not valid PEM: {e})")))?;
        if certs.len() == crate::limits::TLS_PEM_CERTS_MAX {
            return Err(file_error(
                field,
                format!(
                    "a PEM file of at most {} certificates",
                    crate::limits::TLS_PEM_CERTS_MAX
                ),
            ));
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(file_error(
            field,
            "a PEM file of certificates (it holds no BEGIN CERTIFICATE block)",
        ));
    }
    Ok(certs)
}

/// Reads and checks the files: the chain parses and its first
/// certificate fits the key; with a CA, the chain is issued by it and
/// names the node's host, as peers will check (a node that fails here
/// would be refused by every peer).
pub fn load(files: &ClusterTlsFiles<'_>) -> Result<ClusterTls, CertFileError> {
    let chain = read_certs(files.certfile, "certfile")?;
    let parsed = ParsedCertificate::try_from(&chain[0]).map_err(|e| {
        file_error(
            "certfile",
            format!("a PEM X.509 certificate (the first one does not parse: {e})"),
        )
    })?;
    let key_pem = std::fs::read(files.keyfile).map_err(|e| {
        file_error(
            "keyfile",
            format!("a readable PEM private key (cannot read it: {e})"),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file_error(
            "keyfile",
            format!("a PEM private key, PKCS#8, PKCS#1 or SEC1 (none found: {e})"),
        )
    })?;
    let provider = provider();
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
        file_error(
            "keyfile",
            format!(
                "the private key of the certificate in {} ({e})",
                files.certfile.display()
            ),
        )
    })?;
    let roots = match files.cacertfile {
        None => None,
        Some(cacertfile) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(cacertfile, "cacertfile")? {
                roots.add(ca).map_err(|e| {
                    file_error(
                        "cacertfile",
                        format!("PEM CA certificates (one is not usable as a CA: {e})"),
                    )
                })?;
            }
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &roots,
                &chain[1..],
                UnixTime::now(),
                provider.signature_verification_algorithms.all,
            )
            .map_err(|e| {
                file_error(
                    "certfile",
                    format!(
                        "a certificate issued by a CA in {} for server and client use, \
                         valid now (peers would refuse this one: {e})",
                        cacertfile.display()
                    ),
                )
            })?;
            let host = ServerName::try_from(files.node_host).map_err(|_| {
                file_error(
                    "certfile",
                    format!(
                        "a certificate naming node.name's host, but {:?} is not a host name \
                         or IP address peers can check",
                        files.node_host
                    ),
                )
            })?;
            verify_server_name(&parsed, &host).map_err(|e| {
                file_error(
                    "certfile",
                    format!(
                        "a certificate whose subjectAltName names node.name's host {:?}, \
                         which peers check ({e}); `ringmq gen-certs` makes one",
                        files.node_host
                    ),
                )
            })?;
            Some(Arc::new(roots))
        }
    };
    Ok(ClusterTls {
        chain,
        key,
        roots,
        fail_if_no_peer_cert: files.fail_if_no_peer_cert,
    })
}

/// How long generated certificates are valid, from a day before they are
/// made (clocks of a cluster's hosts differ).
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(24 * 3600);

fn validity(params: &mut rcgen::CertificateParams, now: SystemTime) {
    let secs = |t: SystemTime| {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).expect("a sane clock"))
            .expect("within time's range")
    };
    params.not_before = secs(now - CLOCK_SKEW_ALLOWANCE);
    params.not_after = secs(now + VALIDITY);
}

/// Parameters of a node certificate: CN the node name, subjectAltName its
/// host (an IP address or a DNS name), usable as TLS server and client
/// (every node is both on its QUIC links).
fn node_params(
    node_name: &str,
    host: &str,
    now: SystemTime,
) -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "ringmq");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now);
    Ok(params)
}

/// A self-signed certificate for this node (no `certfile` configured):
/// the QUIC endpoint needs one; peers do not check it against a CA.
pub fn self_signed(
    node_name: &str,
    host: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let cert = node_params(node_name, host, SystemTime::now())?.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((vec![cert.der().clone()], key_der))
}

/// Why `ringmq gen-certs` wrote nothing (or stopped part way, for I/O).
#[derive(Debug, thiserror::Error)]
pub enum GenCertsError {
    #[error(
        "invalid node name {0:?}: expected name@host with host an IP address or a DNS name, \
         e.g. ringmq@10.0.0.1 or ringmq@node1.example.com"
    )]
    InvalidNode(String),
    #[error("node {0:?} is given twice")]
    DuplicateNode(String),
    #[error("no node given: pass --nodes name@host,...")]
    NoNodes,
    #[error("refusing to overwrite {}: pass --force to replace them", list_paths(.0))]
    Exists(Vec<PathBuf>),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the CA: {0}")]
    Ca(String),
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// One file `generate` writes.
#[derive(Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    /// A private key (written 0600).
    pub is_key: bool,
    /// The node it belongs to; `None` for the CA.
    pub node: Option<String>,
}

/// The CA files in `dir`: `ca.pem` and `ca.key`.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// The host of a node name (`name@host`), brackets of an IPv6 literal
/// removed, if it is an IP address or a DNS name a certificate can carry.
fn node_host(node: &str) -> Option<&str> {
    let (name, host) = node.split_once('@')?;
    let host = crate::admission::strip_brackets(host);
    let is_host = host.parse::<std::net::IpAddr>().is_ok() || crate::config::is_host_name(host);
    (!name.is_empty()
        && !name.contains(['/', '\0'])
        && is_host
        && !node.contains(char::is_whitespace))
    .then_some(host)
}

/// The files `generate` writes for these nodes, in order: the CA's, then
/// `<node name>.pem` and `<node name>.key` per node.
pub fn planned_files(dir: &Path, nodes: &[String]) -> Vec<GeneratedFile> {
    let mut files = vec![
        GeneratedFile {
            path: dir.join(CA_CERT_FILE),
            is_key: false,
            node: None,
        },
        GeneratedFile {
            path: dir.join(CA_KEY_FILE),
            is_key: true,
            node: None,
        },
    ];
    for node in nodes {
        for (ext, is_key) in [("pem", false), ("key", true)] {
            files.push(GeneratedFile {
                path: dir.join(format!("{node}.{ext}")),
                is_key,
                node: Some(node.clone()),
            });
        }
    }
    files
}

/// `ringmq gen-certs DIR --nodes ...`: a CA (`ca.pem`, `ca.key`) and, per
/// node, a certificate `<node>.pem` (subjectAltName the node's host,
/// signed by the CA) and its key `<node>.key`. Keys are written 0600.
///
/// A CA already in `dir` (both files, made by this command) is reused, so
/// nodes can be added later; it is never replaced, even with `force` (a
/// new CA would cut every existing node off: delete the files to make
/// one). Nothing is written when a name is bad or, without `force`, when a
/// node's file exists.
pub fn generate(
    dir: &Path,
    nodes: &[String],
    force: bool,
) -> Result<Vec<GeneratedFile>, GenCertsError> {
    if nodes.is_empty() {
        return Err(GenCertsError::NoNodes);
    }
    for (i, node) in nodes.iter().enumerate() {
        if node_host(node).is_none() {
            return Err(GenCertsError::InvalidNode(node.clone()));
        }
        if nodes[..i].contains(node) {
            return Err(GenCertsError::DuplicateNode(node.clone()));
        }
    }
    let mut files = planned_files(dir, nodes);
    let (ca_cert_path, ca_key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    let existing_ca = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => Some(read_ca(&ca_cert_path, &ca_key_path)?),
        (false, false) => None,
        // Half a CA: never guess which half is wrong.
        (true, false) | (false, true) => {
            return Err(GenCertsError::Ca(format!(
                "{} and {} must both exist (to add nodes) or neither (to make a CA);                  move the one there away",
                ca_cert_path.display(),
                ca_key_path.display()
            )))
        }
    };
    if existing_ca.is_some() {
        files.retain(|f| f.node.is_some());
    }
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.path.symlink_metadata().is_ok())
            .map(|f| f.path.clone())
            .collect();
        if !existing.is_empty() {
            return Err(GenCertsError::Exists(existing));
        }
    }
    // Everything is made before anything is written.
    let now = SystemTime::now();
    let mut contents = Vec::new();
    let (ca_cert, ca_key, ca_der) = match existing_ca {
        Some((ca_key, ca_der)) => {
            // The same subject and key as the CA in `ca.pem`, so what it
            // signs chains to that file (checked below).
            let ca_cert = ca_params(now).self_signed(&ca_key)?;
            (ca_cert, ca_key, ca_der)
        }
        None => {
            let ca_key = rcgen::KeyPair::generate()?;
            let ca_cert = ca_params(now).self_signed(&ca_key)?;
            contents.push(ca_cert.pem());
            contents.push(ca_key.serialize_pem());
            let ca_der = ca_cert.der().clone();
            (ca_cert, ca_key, ca_der)
        }
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der)
        .map_err(|e| GenCertsError::Ca(format!("{}: {e}", ca_cert_path.display())))?;
    let provider = provider();
    for node in nodes {
        let host = node_host(node).expect("checked above");
        let key = rcgen::KeyPair::generate()?;
        let cert = node_params(node, host, now)?.signed_by(&key, &ca_cert, &ca_key)?;
        let parsed = ParsedCertificate::try_from(cert.der()).map_err(|e| {
            GenCertsError::Ca(format!(
                "the certificate made for {node} does not parse: {e}"
            ))
        })?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            UnixTime::now(),
            provider.signature_verification_algorithms.all,
        )
        .map_err(|e| {
            GenCertsError::Ca(format!(
                "{} was not made by ringmq gen-certs (a certificate signed with its key does \
                 not chain to it: {e}); use another directory",
                ca_cert_path.display()
            ))
        })?;
        contents.push(cert.pem());
        contents.push(key.serialize_pem());
    }
    std::fs::create_dir_all(dir).map_err(|source| GenCertsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (file, text) in files.iter().zip(&contents) {
        write_file(&file.path, text, file.is_key, force).map_err(|source| {
            GenCertsError::Write {
                path: file.path.clone(),
                source,
            }
        })?;
    }
    Ok(files)
}

/// The CA's parameters: a fixed subject, so a CA read back from `ca.key`
/// signs certificates that chain to the `ca.pem` made with it.
fn ca_params(now: SystemTime) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "ringmq");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringmq cluster CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now);
    params
}

/// An existing CA: its key, and its certificate as written.
fn read_ca(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(rcgen::KeyPair, CertificateDer<'static>), GenCertsError> {
    let ca_error =
        |path: &Path, what: String| GenCertsError::Ca(format!("{}: {what}", path.display()));
    let key_pem = std::fs::read_to_string(key_path)
        .map_err(|e| ca_error(key_path, format!("cannot read it: {e}")))?;
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| {
        ca_error(
            key_path,
            format!("not a PEM private key rcgen can use: {e}"),
        )
    })?;
    let certs = read_certs(cert_path, "cacertfile").map_err(|e| ca_error(cert_path, e.message))?;
    Ok((
        key,
        certs
            .into_iter()
            .next()
            .expect("read_certs returns at least one"),
    ))
}

fn write_file(path: &Path, text: &str, is_key: bool, force: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if is_key { 0o600 } else { 0o644 };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        // Also refuses a file made since the check above.
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    // An existing file keeps its mode on open: set it, before the key is
    // written into it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
