//! TLS for the load generator's clients (`--tls`): one rustls
//! `ClientConnection` per socket, driven by the worker's epoll loop without
//! any runtime. rustls is sans-IO: [`read`] moves ciphertext from the socket
//! into it and plaintext out, [`write`] moves plaintext in and ciphertext
//! out, so the worker's buffers and its partial-write handling stay as they
//! are for plain TCP.
//!
//! The handshake runs under the MQTT CONNECT: the CONNECT is handed to
//! rustls at once (it holds plaintext until the handshake completes), so the
//! CONNACK latency of a TLS run includes the TLS handshake, which is what a
//! "handshakes per second" run measures.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::sys;

/// Debian's CA bundle: the trust anchors when no `--cafile` is given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What `--tls`, `--cafile`, `--cert`, `--key` and `--tls-server-name` ask for.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust (default [`SYSTEM_CA_BUNDLE`]).
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM), for listeners that verify peers.
    pub certfile: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// Name sent as SNI and checked against the server certificate
    /// (default: the `--host`, a DNS name or an IP address).
    pub server_name: Option<String>,
}

/// A rustls client configuration shared by every connection of the run.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Loads the trust anchors (and the client certificate) named by `opts`;
    /// `host` is the server name unless `opts.server_name` is set. Errors
    /// name the option and the file.
    pub fn load(opts: &TlsOptions, host: &str) -> Result<TlsClient, String> {
        let cafile = opts
            .cafile
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&cafile, "--cafile")? {
            roots
                .add(cert)
                .map_err(|e| format!("--cafile {}: {e}", cafile.display()))?;
        }
        // ring, as the broker's listeners use (aws-lc-rs needs cmake); rustls
        // 0.23.48 deprecates it for lacking post-quantum key exchange, which
        // a load generator on loopback does not need.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&opts.certfile, &opts.keyfile) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "--cert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("--key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--cert/--key: {e}"))?
            }
            _ => return Err("--cert and --key go together".into()),
        };
        let name = opts.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("TLS server name {name:?}: {e} (set --tls-server-name)"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A new client connection (its ClientHello is queued for [`write`]).
    pub fn connect(&self) -> io::Result<Box<ClientConnection>> {
        ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map(Box::new)
            .map_err(io::Error::other)
    }
}

fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{option} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{option} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// A non-blocking socket as `Read` + `Write` for rustls.
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0, buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send(self.0, buf)
    }
    // rustls hands every queued record over at once: the default would
    // send only the first (a system call, and a segment, per record).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.0, bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads plaintext into `buf`, pulling ciphertext from the socket as
/// needed. `Ok(0)`: the server closed the connection; `WouldBlock`: nothing
/// more now (rustls holds no plaintext either, so epoll's next readiness is
/// the next chance); `InvalidData`: a TLS error (bad certificate, alert),
/// fatal to the connection. The caller must call [`write`] afterwards when
/// [`ClientConnection::wants_write`]: the handshake answers what it reads.
pub fn read(conn: &mut ClientConnection, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut eof = false;
    loop {
        match conn.reader().read(buf) {
            Ok(n) => return Ok(n),
            // Closed without close_notify: the same as a TCP close here.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if eof {
                    return Ok(0);
                }
            }
            Err(e) => return Err(e),
        }
        let n = loop {
            match conn.read_tls(&mut Fd(fd)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        eof = n == 0;
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

/// Hands `plain[*pos..]` to rustls and writes the records to the socket,
/// advancing `pos` by what rustls took. `Ok(())`: everything is on the
/// socket; `WouldBlock`: the socket is full, or the handshake must finish
/// before more plaintext fits (a read moves it on; call again then).
pub fn write(
    conn: &mut ClientConnection,
    fd: RawFd,
    plain: &[u8],
    pos: &mut usize,
) -> io::Result<()> {
    loop {
        let mut took = 0;
        if *pos < plain.len() {
            took = conn.writer().write(&plain[*pos..])?;
            *pos += took;
        }
        while conn.wants_write() {
            match conn.write_tls(&mut Fd(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if *pos == plain.len() {
            return Ok(());
        }
        if took == 0 {
            // rustls's plaintext buffer is full until the handshake ends.
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_option() {
        let opts = TlsOptions {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = TlsClient::load(&opts, "localhost").unwrap_err();
        assert!(e.starts_with("--cafile /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("lg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let opts = TlsOptions {
            cafile: Some(empty.clone()),
            ..TlsOptions::default()
        };
        let e = TlsClient::load(&opts, "localhost").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cert_without_key_is_refused() {
        let opts = TlsOptions {
            certfile: Some("/x.pem".into()),
            ..TlsOptions::default()
        };
        // The system bundle may be absent on a minimal box: only check the
        // pairing error when the CA part loads.
        if Path::new(SYSTEM_CA_BUNDLE).exists() {
            let e = TlsClient::load(&opts, "localhost").unwrap_err();
            assert!(e.contains("--cert and --key go together"), "{e}");
        }
    }
}
