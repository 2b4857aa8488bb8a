//! Transports under the MQTT byte stream, sans-IO: TLS (`tls.rs`, rustls's
//! `UnbufferedServerConnection`) and WebSocket (`ws.rs`, RFC 6455 through
//! tungstenite's handshake and frame codec over in-memory buffers), stacked
//! as TCP -> TLS -> WebSocket -> MQTT. A [`Stack`] is fed the bytes the
//! socket read (`handle_wire`) and the bytes the session transmits
//! (`write_app`); it hands back MQTT bytes (`read_app`) and the bytes for
//! the socket (`wire_out`). Nothing here touches a socket or a clock: the
//! glue that does is `shard::transport`, and the handshake timeout is
//! applied there.
//!
//! A plain TCP listener has no stack at all: its connections keep reading
//! and writing the socket directly (`shard::conn` is generic over the
//! stream), so they pay neither memory nor instructions for this.

pub mod tls;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

/// What one listener's transport is made of, built once at start from the
/// config and shared by every shard.
#[derive(Clone, Debug)]
pub struct TransportSpec {
    /// TLS on the socket (`ssl` and `wss` listeners).
    pub tls: Option<tls::TlsSpec>,
    /// WebSocket framing (`ws` and `wss` listeners).
    pub ws: Option<ws::WsSpec>,
    /// How long the TLS and WebSocket handshakes may take together.
    pub handshake_timeout: Duration,
}

/// Why a transport closed its connection. Each is the peer's fault (or its
/// network's): it closes that one connection.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS I/O: {0}")]
    TlsIo(std::io::Error),
    #[error("WebSocket handshake refused: {0}")]
    WsHandshake(String),
    #[error(
        "WebSocket upgrade request larger than {} bytes",
        crate::limits::WS_HANDSHAKE_BYTES_MAX
    )]
    WsHandshakeTooLarge,
    #[error("WebSocket text frame: MQTT is carried in binary frames only")]
    WsTextFrame,
    #[error("WebSocket: {0}")]
    Ws(Box<tungstenite::Error>),
}

/// The transport state of one TLS and/or WebSocket connection. Boxed by its
/// owner: it is large (rustls's state and buffers) and plain TCP
/// connections never have one.
pub struct Stack {
    tls: Option<tls::Tls>,
    ws: Option<ws::Ws>,
    /// MQTT bytes decoded and not read yet; `app_in_read` of them are read.
    app_in: Vec<u8>,
    app_in_read: usize,
    /// Bytes for the socket, in order (handshake answers, records, frames,
    /// alerts and close frames).
    wire_out: Vec<u8>,
    /// The peer closed its side of the transport (TLS close_notify or a
    /// WebSocket Close frame): after `app_in`, the stream ends.
    peer_closed: bool,
}

impl Stack {
    pub fn new(spec: &TransportSpec) -> Result<Stack, TransportError> {
        Ok(Stack {
            tls: spec.tls.as_ref().map(tls::Tls::new).transpose()?,
            ws: spec.ws.as_ref().map(ws::Ws::new),
            app_in: Vec::new(),
            app_in_read: 0,
            wire_out: Vec::new(),
            peer_closed: false,
        })
    }

    /// Whether every handshake is done: MQTT bytes may flow.
    pub fn is_established(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
            && self.ws.as_ref().is_none_or(ws::Ws::is_open)
    }

    /// Feeds bytes the socket read. Handshake answers, pongs and alerts go
    /// to `wire_out`; MQTT bytes to `read_app`. An error closes the
    /// connection, after `wire_out` (which may hold an alert, an HTTP error
    /// response or a Close frame) went out if the socket takes it.
    pub fn handle_wire(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.compact_app_in();
        match (&mut self.tls, &mut self.ws) {
            (Some(tls), None) => {
                let result = tls.handle_wire(bytes, &mut self.app_in, &mut self.wire_out);
                self.peer_closed |= tls.peer_closed();
                result
            }
            (None, _) => self.handle_ws_input(bytes),
            (Some(tls), Some(_)) => {
                // WebSocket over TLS: the plaintext goes through the
                // WebSocket layer (a buffer for this read only: an idle
                // connection keeps none).
                let mut plain = Vec::new();
                let result = tls.handle_wire(bytes, &mut plain, &mut self.wire_out);
                self.peer_closed |= tls.peer_closed();
                let ws_result = self.handle_ws_input(&plain);
                result.and(ws_result)
            }
        }
    }

    /// Feeds bytes to the WebSocket layer (straight to `app_in` without one).
    fn handle_ws_input(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let Some(ws) = &mut self.ws else {
            self.app_in.extend_from_slice(bytes);
            return Ok(());
        };
        let mut frames_out = Vec::new();
        let result = ws.handle_input(bytes, &mut self.app_in, &mut frames_out);
        self.peer_closed |= ws.peer_closed();
        // A handshake answer, a pong, a close frame: sent even when the
        // input failed (an HTTP error response says why).
        self.send_down(&frames_out)?;
        result
    }

    /// Encodes MQTT bytes the session transmits into `wire_out`.
    pub fn write_app(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        match &mut self.ws {
            Some(ws) => {
                let mut frames = Vec::new();
                ws.encode(bytes, &mut frames)?;
                self.send_down(&frames)
            }
            None => self.send_down(bytes),
        }
    }

    /// Ends the transport politely: a WebSocket Close frame and a TLS
    /// close_notify go to `wire_out`.
    pub fn close(&mut self) {
        if let Some(ws) = &mut self.ws {
            let mut frames = Vec::new();
            ws.close(&mut frames);
            let _ = self.send_down(&frames);
        }
        if let Some(tls) = &mut self.tls {
            tls.close(&mut self.wire_out);
        }
    }

    fn send_down(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.tls {
            Some(tls) => tls.write_plain(bytes, &mut self.wire_out),
            None => {
                self.wire_out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Copies decoded MQTT bytes into `out`; how many.
    pub fn read_app(&mut self, out: &mut [u8]) -> usize {
        let available = &self.app_in[self.app_in_read..];
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.app_in_read += n;
        if self.app_in_read == self.app_in.len() {
            // Read out: an idle connection keeps no buffer.
            self.app_in = Vec::new();
            self.app_in_read = 0;
        }
        n
    }

    fn compact_app_in(&mut self) {
        if self.app_in_read > 0 {
            self.app_in.drain(..self.app_in_read);
            self.app_in_read = 0;
        }
    }

    /// Whether MQTT bytes wait for `read_app`.
    pub fn has_app(&self) -> bool {
        self.app_in_read < self.app_in.len()
    }

    /// The peer ended the transport: once `read_app` is empty, EOF.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Bytes for the socket; the caller removes what it wrote
    /// (`consume_wire_out`).
    pub fn wire_out(&self) -> &[u8] {
        &self.wire_out
    }

    pub fn consume_wire_out(&mut self, n: usize) {
        if n == self.wire_out.len() {
            // All sent: an idle connection keeps no buffer (the price is an
            // allocation per write on a busy one, small beside encryption).
            self.wire_out = Vec::new();
        } else {
            self.wire_out.drain(..n);
        }
    }

    /// The user name the client's certificate gives, when the listener
    /// says `peer_cert_as_username = "cn"` and a certificate was presented.
    pub fn peer_username(&self) -> Option<String> {
        self.tls.as_ref().and_then(tls::Tls::peer_username)
    }
}

/// A shared, immutable spec per listener.
pub type SharedSpec = Arc<TransportSpec>;

#[cfg(test)]
mod tests;
