//! TLS, server side: rustls's unbuffered `UnbufferedServerConnection` is
//! sans-IO (records in through `process_tls_records` from a buffer the
//! caller owns, records out into a buffer the caller gives), so it runs on
//! the shard without an async runtime. Also here: building the listener's
//! `ServerConfig` from `ssl_options` (certificate files read once, at
//! start) and reading the client certificate's Common Name for
//! `peer_cert_as_username = "cn"`.

use super::TransportError;
use crate::limits;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{RootCertStore, ServerConfig};
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

/// One connection's TLS state: rustls's unbuffered server connection, fed
/// from a record buffer this struct owns, so that an idle connection holds
/// none (rustls's buffered `ServerConnection` keeps a 4 KiB one for its
/// whole life; docs/benchmarks.md).
pub struct Tls {
    conn: UnbufferedServerConnection,
    /// Records received and not processed yet (a partial record at most,
    /// between reads); released when empty.
    incoming: Vec<u8>,
    /// Plaintext written before the handshake allowed application data;
    /// sent when it does. (Nothing is, in practice: MQTT and the WebSocket
    /// upgrade answer only after the client spoke.)
    pending_plain: Vec<u8>,
    peer_cert_cn_as_username: bool,
    peer_closed: bool,
    /// rustls refused the peer: nothing more is processed or sent.
    failed: bool,
}

/// What to do after one state of the unbuffered connection.
enum Step {
    Continue,
    Stop,
}

/// Steps one call may take: each processes a record or emits one; a bound
/// so that a bug cannot spin a shard.
const STEPS_PER_CALL_MAX: usize = 4_096;

impl Tls {
    pub fn new(spec: &TlsSpec) -> Result<Tls, TransportError> {
        Ok(Tls {
            conn: UnbufferedServerConnection::new(spec.config.clone())?,
            incoming: Vec::new(),
            pending_plain: Vec::new(),
            peer_cert_cn_as_username: spec.peer_cert_cn_as_username,
            peer_closed: false,
            failed: false,
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
        bytes: &[u8],
        plain: &mut Vec<u8>,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if self.failed {
            return Err(TransportError::TlsIo(std::io::Error::other(
                "the TLS connection failed before",
            )));
        }
        if self.incoming.len() + bytes.len() > limits::TLS_INCOMING_BYTES_MAX {
            return Err(TransportError::TlsIo(std::io::Error::other(
                "more unprocessed TLS bytes than any record or handshake message takes",
            )));
        }
        self.incoming.extend_from_slice(bytes);
        let result = self.drive(plain, wire_out);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if result.is_err() {
            self.failed = true;
            // The alert saying why goes out before the close.
            self.emit_queued(wire_out);
        }
        result
    }

    /// Processes what `incoming` holds until rustls needs more bytes (or
    /// the handshake is done and nothing is left).
    fn drive(&mut self, plain: &mut Vec<u8>, wire_out: &mut Vec<u8>) -> Result<(), TransportError> {
        for _ in 0..STEPS_PER_CALL_MAX {
            let (discard, step) = {
                let UnbufferedStatus { mut discard, state } =
                    self.conn.process_tls_records(&mut self.incoming);
                let step = match state {
                    Err(e) => Err(TransportError::Tls(e)),
                    Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                        let mut step = Ok(Step::Continue);
                        while let Some(record) = traffic.next_record() {
                            match record {
                                Ok(record) => {
                                    discard += record.discard;
                                    plain.extend_from_slice(record.payload);
                                }
                                Err(e) => {
                                    step = Err(TransportError::Tls(e));
                                    break;
                                }
                            }
                        }
                        step
                    }
                    Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                        encode_into(&mut encode, wire_out);
                        Ok(Step::Continue)
                    }
                    // What was encoded is in `wire_out`: the caller sends it.
                    Ok(ConnectionState::TransmitTlsData(transmit)) => {
                        transmit.done();
                        Ok(Step::Continue)
                    }
                    Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                        if self.pending_plain.is_empty() {
                            Ok(Step::Stop)
                        } else {
                            let pending = std::mem::take(&mut self.pending_plain);
                            encrypt_into(&mut traffic, &pending, wire_out).map(|()| Step::Stop)
                        }
                    }
                    Ok(ConnectionState::PeerClosed) => {
                        self.peer_closed = true;
                        Ok(Step::Continue)
                    }
                    Ok(ConnectionState::Closed) => {
                        self.peer_closed = true;
                        Ok(Step::Stop)
                    }
                    // BlockedHandshake, and early data, which is not
                    // enabled (the config's max_early_data_size is 0).
                    Ok(_) => Ok(Step::Stop),
                };
                (discard, step)
            };
            self.incoming.drain(..discard);
            if let Step::Stop = step? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Encodes what rustls queued (an alert after an error) into `wire_out`.
    fn emit_queued(&mut self, wire_out: &mut Vec<u8>) {
        // One call: rustls hands out what it queued before it processes the
        // records again (which would fail again). Its state refers into the
        // record buffer it was given, so the same buffer is passed.
        let status = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            encode_into(&mut encode, wire_out);
        }
    }

    /// Encrypts plaintext into records in `wire_out` (kept until the
    /// handshake allows application data).
    pub fn write_plain(
        &mut self,
        bytes: &[u8],
        wire_out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        self.with_write_traffic(wire_out, |traffic, wire_out, pending| match traffic {
            Some(traffic) => encrypt_into(traffic, bytes, wire_out),
            None => {
                pending.extend_from_slice(bytes);
                Ok(())
            }
        })
    }

    pub fn close(&mut self, wire_out: &mut Vec<u8>) {
        let _ = self.with_write_traffic(wire_out, |traffic, wire_out, _| {
            if let Some(traffic) = traffic {
                grow_into(wire_out, 64, |buf| traffic.queue_close_notify(buf))?;
            }
            Ok(())
        });
    }

    /// Runs `write` with the connection's write state once rustls offers
    /// it (`None` while the handshake does not allow application data),
    /// encoding what rustls has to send first.
    fn with_write_traffic(
        &mut self,
        wire_out: &mut Vec<u8>,
        write: impl FnOnce(
            Option<&mut WriteTraffic<'_, ServerConnectionData>>,
            &mut Vec<u8>,
            &mut Vec<u8>,
        ) -> Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        if self.failed {
            return Err(TransportError::TlsIo(std::io::Error::other(
                "the TLS connection failed before",
            )));
        }
        let mut write = Some(write);
        for _ in 0..STEPS_PER_CALL_MAX {
            let (discard, step) = {
                let UnbufferedStatus { discard, state } =
                    self.conn.process_tls_records(&mut self.incoming);
                let step = match state {
                    Err(e) => Err(TransportError::Tls(e)),
                    Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                        let write = write.take().expect("called once: Stop follows");
                        write(Some(&mut traffic), wire_out, &mut self.pending_plain)
                            .map(|()| Step::Stop)
                    }
                    Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                        encode_into(&mut encode, wire_out);
                        Ok(Step::Continue)
                    }
                    Ok(ConnectionState::TransmitTlsData(transmit)) => {
                        transmit.done();
                        Ok(Step::Continue)
                    }
                    Ok(ConnectionState::PeerClosed) => {
                        self.peer_closed = true;
                        Ok(Step::Continue)
                    }
                    // The peer is gone: nothing more is sent.
                    Ok(ConnectionState::Closed) => Ok(Step::Stop),
                    // `drive` leaves no complete record unprocessed, so a
                    // read state here would be a received record nobody
                    // reads: refuse rather than lose it.
                    Ok(ConnectionState::ReadTraffic(_)) => Err(TransportError::TlsIo(
                        std::io::Error::other("TLS records left unread before a write"),
                    )),
                    // The handshake is not done: keep the plaintext.
                    Ok(_) => {
                        let write = write.take().expect("called once: Stop follows");
                        write(None, wire_out, &mut self.pending_plain).map(|()| Step::Stop)
                    }
                };
                (discard, step)
            };
            self.incoming.drain(..discard);
            match step {
                Ok(Step::Stop) => return Ok(()),
                Ok(Step::Continue) => {}
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub fn peer_username(&self) -> Option<String> {
        if !self.peer_cert_cn_as_username {
            return None;
        }
        let cert = self.conn.peer_certificates()?.first()?;
        subject_common_name(cert)
    }
}

/// Appends what `write` puts into a buffer to `out`, growing the room as
/// rustls asks for it.
fn grow_into<E: Into<RoomError>>(
    out: &mut Vec<u8>,
    first_room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), TransportError> {
    let start = out.len();
    let mut room = first_room;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]).map_err(Into::into) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(RoomError::Needs(required)) if required > room => room = required,
            Err(RoomError::Needs(_)) | Err(RoomError::Done) => {
                out.truncate(start);
                return Ok(());
            }
            Err(RoomError::Failed(message)) => {
                out.truncate(start);
                return Err(TransportError::TlsIo(std::io::Error::other(message)));
            }
        }
    }
}

/// rustls's "not enough room" and other outcomes of an encode or encrypt.
enum RoomError {
    Needs(usize),
    /// Nothing (more) to encode.
    Done,
    Failed(String),
}

impl From<EncodeError> for RoomError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                RoomError::Needs(required_size)
            }
            EncodeError::AlreadyEncoded => RoomError::Done,
        }
    }
}

impl From<EncryptError> for RoomError {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                RoomError::Needs(required_size)
            }
            other => RoomError::Failed(other.to_string()),
        }
    }
}

fn encode_into(encode: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    // Encoding cannot fail but for room (handled) or a repeat (nothing).
    let _ = grow_into(out, 4096, |buf| encode.encode(buf));
}

fn encrypt_into(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TransportError> {
    // Records add a header, a content type and a tag (at most 64 bytes per
    // 16 KiB record).
    let room = plain.len() + 64 * (plain.len() / 16_384 + 1);
    grow_into(out, room, |buf| traffic.encrypt(plain, buf))
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
