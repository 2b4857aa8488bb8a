//! TLS of the peer links: rustls 0.23 with ring, TLS 1.3 only (QUIC),
//! ALPN `ringmq-cluster/1`.
//!
//! With a CA both sides check the other's chain against the bundle; the
//! host check is done after the handshake (`cert_names_host`), because a
//! node dialing a seed address does not know the peer's name yet, and a
//! node accepting does not know who connects until its Hello arrives.
//! Self-signed: TLS encrypts and binds the connection (exporter secret);
//! the cookie proof (`hello`) authenticates.

use std::io;
use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::settings::{NetSettings, TlsMode};
use crate::limits;

pub const ALPN: &[u8] = b"ringmq-cluster/1";

/// SNI sent when dialing; names are checked after the handshake.
pub const SERVER_NAME: &str = "ringmq-cluster";

/// ring, not aws-lc-rs (no cmake). rustls 0.23.48 deprecates ring's
/// provider for lacking post-quantum key exchange; both ends of a link are
/// ringmq nodes of one build, so classic X25519 is what they agree on.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate in it", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Both halves of the endpoint's TLS, built once at start.
pub struct LinkTls {
    pub server: quinn::ServerConfig,
    pub client: quinn::ClientConfig,
}

pub fn build(settings: &NetSettings) -> io::Result<LinkTls> {
    let versions = &[&rustls::version::TLS13];
    let err = |e: rustls::Error| invalid(format!("cluster TLS: {e}"));
    let (server, client) = match &settings.tls {
        TlsMode::SelfSigned => {
            let made = rcgen::generate_simple_self_signed(vec![settings.host().to_owned()])
                .map_err(|e| invalid(format!("self-signed certificate: {e}")))?;
            let cert = CertificateDer::from(made.cert.der().to_vec());
            let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
                .map_err(|e| invalid(format!("self-signed key: {e}")))?;
            let server = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(err)?
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .map_err(err)?;
            let client = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(err)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
                .with_no_client_auth();
            (server, client)
        }
        TlsMode::Ca {
            certfile,
            keyfile,
            cacertfile,
            fail_if_no_peer_cert,
        } => {
            let chain = read_certs(certfile)?;
            let key = read_key(keyfile)?;
            let mut roots = RootCertStore::empty();
            for ca in read_certs(cacertfile)? {
                roots
                    .add(ca)
                    .map_err(|e| invalid(format!("{}: {e}", cacertfile.display())))?;
            }
            let roots = Arc::new(roots);
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
            if !fail_if_no_peer_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| invalid(format!("cluster CA: {e}")))?;
            let server = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(err)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(err)?;
            let chain_only =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| invalid(format!("cluster CA: {e}")))?;
            let client = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(err)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain_only)))
                .with_client_auth_cert(chain, key)
                .map_err(err)?;
            (server, client)
        }
    };
    let mut server = server;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = client;
    client.alpn_protocols = vec![ALPN.to_vec()];
    let transport = Arc::new(transport(settings));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(|e| invalid(format!("cluster TLS: {e}")))?,
    ));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).map_err(|e| invalid(format!("cluster TLS: {e}")))?,
    ));
    client.transport_config(transport);
    Ok(LinkTls { server, client })
}

fn transport(settings: &NetSettings) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(limits::CLUSTER_DATA_STREAMS_MAX.into());
    t.keep_alive_interval(Some(settings.timing.probe_period));
    t.max_idle_timeout(settings.timing.idle_timeout.try_into().ok());
    // SWIM datagrams: a few dozen in flight at most.
    t.datagram_receive_buffer_size(Some(256 * 1024));
    // Forward batches are tens of KiB: where the path takes larger packets
    // (loopback, jumbo frames) fewer of them carry a frame, each one
    // sealed, acknowledged and sent once. Discovery only raises the size
    // a probe proved (a lost probe costs nothing else).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(limits::CLUSTER_QUIC_UDP_PAYLOAD_MAX_BYTES);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Whether a certificate (DER) is valid for `host` (SAN IP or DNS name).
pub fn cert_names_host(cert: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.verify_is_valid_for_subject_name(&name).is_ok(),
        Err(_) => false,
    }
}

/// The peer's end-entity certificate, if it showed one.
pub fn peer_cert(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().cloned()
}

/// CA mode, dialing side: the chain must verify against the bundle; the
/// name is checked after the Hello (we dial addresses, not names), so a
/// name mismatch from the chain verifier is not an error here. The
/// chain is verified before the name in rustls' verifier, so passing on
/// a name error still means a good chain.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Self-signed mode, dialing side: any certificate, but the handshake
/// signature must be made with its key (so the exporter secret is shared
/// with the holder of that key, and the cookie proof binds to it).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
