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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod generate;
#[cfg(test)]
mod tests;

pub use generate::{
    generate, planned_files, GenCertsError, GeneratedFile, CA_CERT_FILE, CA_KEY_FILE,
};

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
