//! TLS, server side: rustls's `ServerConnection` is itself sans-IO (records
//! in through `read_tls`, out through `write_tls`), so it runs on the shard
//! without an async runtime. Also here: building the listener's
//! `ServerConfig` from `ssl_options` (certificate files read once, at
//! start) and reading the client certificate's Common Name for
//! `peer_cert_as_username = "cn"`.

use super::TransportError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// A TLS listener's settings, ready for connections.
#[derive(Clone, Debug)]
pub struct TlsSpec {
    pub config: Arc<ServerConfig>,
    /// The client certificate's CN replaces the CONNECT user name.
    pub peer_cert_cn_as_username: bool,
}

/// The files and choices of `ssl_options`.
pub struct TlsFiles<'a> {
    pub certfile: &'a Path,
    pub keyfile: &'a Path,
    pub cacertfile: &'a Path,
    /// Ask for and verify a client certificate against `cacertfile`.
    pub verify_peer: bool,
    /// With `verify_peer`: refuse a client that presents no certificate.
    pub fail_if_no_peer_cert: bool,
}

/// What is wrong with `ssl_options`: `field` names the key
/// (`certfile`, `keyfile`, `cacertfile`).
#[derive(Debug, PartialEq, Eq)]
pub struct TlsConfigError {
    pub field: &'static str,
    pub message: String,
}

fn config_error(field: &'static str, message: impl Into<String>) -> TlsConfigError {
    TlsConfigError {
        field,
        message: message.into(),
    }
}

fn read_certs(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    // Read first: a missing file says so, not "no certificate".
    let pem = std::fs::read(path)
        .map_err(|e| config_error(field, format!("cannot read {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            config_error(field, format!("{} is not valid PEM: {e}", path.display()))
        })?;
        if certs.len() == crate::limits::TLS_PEM_CERTS_MAX {
            return Err(config_error(
                field,
                format!(
                    "{} holds more than {} certificates",
                    path.display(),
                    crate::limits::TLS_PEM_CERTS_MAX
                ),
            ));
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(config_error(
            field,
            format!(
                "{} holds no PEM certificate (BEGIN CERTIFICATE)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// Builds a listener's `ServerConfig` from its files: the certificate chain,
/// its private key and, with `verify_peer`, the CAs client certificates
/// must chain to.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certs(files.certfile, "certfile")?;
    let key_pem = std::fs::read(files.keyfile).map_err(|e| {
        config_error(
            "keyfile",
            format!("cannot read {}: {e}", files.keyfile.display()),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        config_error(
            "keyfile",
            format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                files.keyfile.display()
            ),
        )
    })?;
    // ring, not aws-lc-rs: no cmake and minutes less of C build. rustls
    // 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange; classic X25519/P-256 is what MQTT clients offer today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = if files.verify_peer {
        let mut roots = RootCertStore::empty();
        for ca in read_certs(files.cacertfile, "cacertfile")? {
            roots.add(ca).map_err(|e| {
                config_error(
                    "cacertfile",
                    format!(
                        "{}: not a usable CA certificate: {e}",
                        files.cacertfile.display()
                    ),
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if files.fail_if_no_peer_cert {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|e| config_error("cacertfile", format!("{e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        config_error(
            "keyfile",
            format!(
                "{} does not fit the certificate in {}: {e}",
                files.keyfile.display(),
                files.certfile.display()
            ),
        )
    })?;
    Ok(Arc::new(config))
}

/// One connection's TLS state.
pub struct Tls {
    conn: ServerConnection,
    peer_cert_cn_as_username: bool,
    peer_closed: bool,
}

impl Tls {
    pub fn new(spec: &TlsSpec) -> Result<Tls, TransportError> {
        let mut conn = ServerConnection::new(spec.config.clone())?;
        // The owner bounds what waits for the socket
        // (`limits::TRANSPORT_WIRE_OUT_BYTES_MAX`); rustls's own limit
        // would make a write take less than it was given.
        conn.set_buffer_limit(None);
        Ok(Tls {
            conn,
            peer_cert_cn_as_username: spec.peer_cert_cn_as_username,
            peer_closed: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feeds records the socket read; the plaintext goes to `plain`, what
    /// rustls answers (handshake, alerts) to `wire_out`.
    pub fn handle_wire(
        &mut self,
        mut bytes: &[u8],
        plain: &mut Vec<u8>,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let result = (|| {
            while !bytes.is_empty() {
                // Takes what fits rustls's record buffer; the loop feeds
                // the rest once the records read were processed.
                self.conn
                    .read_tls(&mut bytes)
                    .map_err(TransportError::TlsIo)?;
                let state = self.conn.process_new_packets()?;
                self.peer_closed |= state.peer_has_closed();
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = plain.len();
                    plain.resize(start + n, 0);
                    self.conn
                        .reader()
                        .read_exact(&mut plain[start..])
                        .map_err(TransportError::TlsIo)?;
                }
            }
            Ok(())
        })();
        // A failed record leaves an alert for the peer.
        self.drain(wire_out);
        result
    }

    /// Encrypts plaintext into records in `wire_out` (buffered by rustls
    /// until the handshake is done).
    pub fn write_plain(
        &mut self,
        bytes: &[u8],
        wire_out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        self.conn
            .writer()
            .write_all(bytes)
            .map_err(TransportError::TlsIo)?;
        self.drain(wire_out);
        Ok(())
    }

    pub fn close(&mut self, wire_out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain(wire_out);
    }

    fn drain(&mut self, wire_out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            let _ = self.conn.write_tls(wire_out);
        }
    }

    pub fn peer_username(&self) -> Option<String> {
        if !self.peer_cert_cn_as_username {
            return None;
        }
        let cert = self.conn.peer_certificates()?.first()?;
        subject_common_name(cert)
    }
}

/// The last Common Name (OID 2.5.4.3) in an X.509 certificate's subject, as
/// text. The certificate was verified by rustls already; this only walks
/// its DER to the subject (RFC 5280 section 4.1): `Certificate ::=
/// SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity, subject, ... } ... }`.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xA0;
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, cert, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    if tbs.first() == Some(&VERSION) {
        tbs = der_element(tbs)?.2;
    }
    // serial, signature, issuer, validity
    for _ in 0..4 {
        tbs = der_element(tbs)?.2;
    }
    let (tag, mut rdns, _) = der_element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut common_name = None;
    while !rdns.is_empty() {
        let (tag, mut set, rest) = der_element(rdns)?;
        rdns = rest;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (tag, attribute, rest) = der_element(set)?;
            set = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = der_element(attribute)?;
            if tag != OID || oid != CN_OID {
                continue;
            }
            let (tag, text, _) = der_element(value)?;
            // UTF8String, PrintableString, IA5String, TeletexString (read
            // as UTF-8, as every current CA writes it).
            if matches!(tag, 0x0C | 0x13 | 0x16 | 0x14) {
                common_name = Some(String::from_utf8(text.to_vec()).ok()?);
            }
        }
    }
    common_name
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}
