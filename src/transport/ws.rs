//! WebSocket (RFC 6455) for MQTT (MQTT 5.0 section 6), server side:
//! tungstenite's HTTP upgrade handshake and frame codec, run over in-memory
//! buffers (`MemoryIo`) so no socket and no async runtime is involved
//! (docs/adr/0004-transports.md says why tungstenite). What MQTT asks of
//! the transport is checked here: the upgrade must be for
//! `websocket.mqtt_path` and offer the `mqtt` subprotocol, data comes in
//! binary frames only (a text frame closes the connection), client frames
//! must be masked (tungstenite refuses unmasked ones), and a frame larger
//! than the largest MQTT packet closes the connection before its payload is
//! buffered.

use super::TransportError;
use crate::limits;
use std::io::{self, Read, Write};
use std::sync::Arc;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocket, WebSocketConfig};
use tungstenite::Message;

/// The subprotocol MQTT over WebSocket uses [MQTT-6.0.0-3].
pub const SUBPROTOCOL: &str = "mqtt";

/// A WebSocket listener's settings.
#[derive(Clone, Debug)]
pub struct WsSpec {
    /// `websocket.mqtt_path`: the only path upgraded.
    pub mqtt_path: Arc<str>,
    /// Largest frame payload accepted (the largest MQTT packet plus
    /// `limits::WS_FRAME_OVERHEAD_BYTES`).
    pub frame_bytes_max: usize,
}

/// tungstenite's stream: what was received and not read by the codec yet,
/// and what the codec wrote. Reading an empty buffer is `WouldBlock`, which
/// tungstenite takes as "come back with more bytes".
#[derive(Default)]
struct MemoryIo {
    rx: Vec<u8>,
    rx_read: usize,
    tx: Vec<u8>,
}

impl MemoryIo {
    fn feed(&mut self, bytes: &[u8]) {
        if self.rx_read == self.rx.len() {
            self.rx.clear();
            self.rx_read = 0;
        }
        self.rx.extend_from_slice(bytes);
    }

    /// Moves what the codec wrote to `out`, keeping no buffer here.
    fn take_tx(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            *out = std::mem::take(&mut self.tx);
        } else {
            out.append(&mut self.tx);
            self.tx = Vec::new();
        }
    }

    fn release_if_read(&mut self) {
        if self.rx_read == self.rx.len() {
            self.rx = Vec::new();
            self.rx_read = 0;
        }
    }
}

impl Read for MemoryIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.rx[self.rx_read..];
        if available.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.rx_read += n;
        Ok(n)
    }
}

impl Write for MemoryIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks the upgrade request: path and subprotocol.
struct UpgradeCheck {
    mqtt_path: Arc<str>,
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{why}\n")));
    *response.status_mut() = status;
    response
}

impl Callback for UpgradeCheck {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        if request.uri().path() != &*self.mqtt_path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                &format!("MQTT is served at {}", self.mqtt_path),
            ));
        }
        let offers_mqtt = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == SUBPROTOCOL);
        if !offers_mqtt {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the WebSocket subprotocol must be \"mqtt\" (Sec-WebSocket-Protocol)",
            ));
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    }
}

type Handshake = MidHandshake<ServerHandshake<MemoryIo, UpgradeCheck>>;

enum State {
    /// Waiting for (or answering) the HTTP upgrade request.
    Upgrading(Handshake),
    Open(WebSocket<MemoryIo>),
    /// The handshake failed; nothing more is read.
    Failed,
}

/// One connection's WebSocket state.
pub struct Ws {
    state: State,
    /// Bytes received before the upgrade completed (capped).
    upgrade_bytes: usize,
    peer_closed: bool,
}

impl Ws {
    pub fn new(spec: &WsSpec) -> Ws {
        let config = WebSocketConfig::default()
            .read_buffer_size(limits::WS_READ_BUFFER_BYTES)
            // Each message is framed and handed on at once.
            .write_buffer_size(0)
            .max_frame_size(Some(spec.frame_bytes_max))
            .max_message_size(Some(spec.frame_bytes_max))
            .accept_unmasked_frames(false);
        let check = UpgradeCheck {
            mqtt_path: spec.mqtt_path.clone(),
        };
        Ws {
            state: State::Upgrading(ServerHandshake::start(
                MemoryIo::default(),
                check,
                Some(config),
            )),
            upgrade_bytes: 0,
            peer_closed: false,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feeds bytes from below; MQTT bytes go to `app_in`, what the codec
    /// answers (the upgrade response, pongs, close frames) to `out`.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        app_in: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let State::Upgrading(_) = self.state {
            self.upgrade_bytes += bytes.len();
            if self.upgrade_bytes > limits::WS_HANDSHAKE_BYTES_MAX {
                self.state = State::Failed;
                return Err(TransportError::WsHandshakeTooLarge);
            }
            let State::Upgrading(mut handshake) = std::mem::replace(&mut self.state, State::Failed)
            else {
                unreachable!("matched above")
            };
            handshake.get_mut().get_mut().feed(bytes);
            match handshake.handshake() {
                Ok(mut socket) => {
                    socket.get_mut().take_tx(out);
                    self.state = State::Open(socket);
                    // Frames the client sent right behind its request.
                    return self.read_frames(app_in, out);
                }
                Err(HandshakeError::Interrupted(mut handshake)) => {
                    handshake.get_mut().get_mut().take_tx(out);
                    self.state = State::Upgrading(handshake);
                    return Ok(());
                }
                Err(HandshakeError::Failure(e)) => {
                    // tungstenite wrote its error response (404, 400) into
                    // the stream it then dropped with the failure: the
                    // response is written anew from the error.
                    if let tungstenite::Error::Http(response) = &e {
                        write_http_error(response, out);
                        return Err(TransportError::WsHandshake(format!(
                            "HTTP {}",
                            response.status()
                        )));
                    }
                    return Err(TransportError::WsHandshake(e.to_string()));
                }
            }
        }
        match &mut self.state {
            State::Open(socket) => {
                socket.get_mut().feed(bytes);
                self.read_frames(app_in, out)
            }
            _ => Ok(()),
        }
    }

    fn read_frames(
        &mut self,
        app_in: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let State::Open(socket) = &mut self.state else {
            return Ok(());
        };
        let result = loop {
            match socket.read() {
                Ok(Message::Binary(data)) => app_in.extend_from_slice(&data),
                // A text frame; tungstenite checks its UTF-8 before it
                // hands it over, so one that is not UTF-8 is an error.
                Ok(Message::Text(_)) | Err(tungstenite::Error::Utf8(_)) => {
                    let _ = socket.close(Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "MQTT uses binary frames".into(),
                    }));
                    let _ = socket.flush();
                    break Err(TransportError::WsTextFrame);
                }
                // Pings are answered by the codec (flushed below).
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(_)) => {
                    self.peer_closed = true;
                    break Ok(());
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Ok(())
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.peer_closed = true;
                    break Ok(());
                }
                Err(e) => {
                    // A protocol error (unmasked frame, oversized frame,
                    // bad opcode): tungstenite has queued a Close frame
                    // where the RFC asks for one.
                    let _ = socket.flush();
                    break Err(TransportError::Ws(Box::new(e)));
                }
            }
        };
        // Replies (pong, close) are written by a flush.
        let _ = socket.flush();
        let io = socket.get_mut();
        io.take_tx(out);
        io.release_if_read();
        result
    }

    /// Frames MQTT bytes as one binary message into `out`.
    pub fn encode(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), TransportError> {
        let State::Open(socket) = &mut self.state else {
            // Nothing goes out before the upgrade (and nothing is sent by
            // the session before CONNECT, which follows the upgrade).
            return Ok(());
        };
        socket
            .send(Message::Binary(bytes::Bytes::copy_from_slice(bytes)))
            .map_err(|e| TransportError::Ws(Box::new(e)))?;
        socket.get_mut().take_tx(out);
        Ok(())
    }

    /// A Close frame (1000, normal closure) into `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if let State::Open(socket) = &mut self.state {
            let _ = socket.close(None);
            let _ = socket.flush();
            socket.get_mut().take_tx(out);
        }
    }
}

/// The HTTP error response tungstenite returned: status line and the body
/// saying why.
fn write_http_error(response: &tungstenite::http::Response<Option<Vec<u8>>>, out: &mut Vec<u8>) {
    if !out.is_empty() {
        return;
    }
    let body = response.body().as_deref().unwrap_or_default();
    let _ = write!(
        out,
        "HTTP/1.1 {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        response.status(),
        body.len()
    );
    out.extend_from_slice(body);
}
