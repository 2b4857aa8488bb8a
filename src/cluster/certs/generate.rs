//! `ringmq gen-certs`: a CA and node certificates for a first cluster
//! (docs/clustering.md, "Certificates").

use super::{node_params, provider, read_certs, validity};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

impl fmt::Display for GeneratedFile {
    /// The path and what to do with the file, for the command's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match (&self.node, self.is_key) {
            (None, false) => write!(
                f,
                "{path}  CA certificate (cluster.ssl_options.cacertfile on every node)"
            ),
            (None, true) => write!(f, "{path}  CA private key (keep it off the nodes)"),
            (Some(node), false) => write!(
                f,
                "{path}  certificate of {node} (its cluster.ssl_options.certfile)"
            ),
            (Some(node), true) => write!(
                f,
                "{path}  private key of {node} (its cluster.ssl_options.keyfile)"
            ),
        }
    }
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
