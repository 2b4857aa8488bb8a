//! One peer link: the handshake on a new QUIC connection (either side),
//! then the tasks that read and write its streams and datagrams. Every
//! task reports to the cluster thread's loop (`node`) through its inbox;
//! frames of logic kinds go straight up to the consumer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::frame::{
    self, FrameError, Header, HEADER_LEN_BYTES, KIND_DATA_OPEN, KIND_HELLO, LOGIC_KIND_MIN,
};
use super::hello::{self, Hello, Refusal};
use super::member::PeerCounters;
use super::node::Inner;
use super::tls;
use super::{NetEvent, StreamId};
use crate::router::location::NodeId;

/// QUIC application close codes of a peer link.
pub const CLOSE_NORMAL: u32 = 0;
/// The handshake was refused; the reason says what did not match.
pub const CLOSE_REFUSED: u32 = 1;
/// A bad frame (header, length, kind); the reason says which.
pub const CLOSE_PROTOCOL: u32 = 2;
/// A second link to the same peer, or a link to itself.
pub const CLOSE_DUPLICATE: u32 = 3;

/// What every handshake needs from this node.
pub struct HandshakeCtx {
    /// This node's Hello without its proof (made per connection).
    pub hello: Hello,
    pub cookie: String,
    /// CA mode: the peer's certificate must name its host.
    pub check_cert_name: bool,
    /// CA mode: a peer without a certificate is refused.
    pub require_cert: bool,
    pub timeout: Duration,
}

/// How a handshake ended badly.
#[derive(Debug)]
pub enum Failure {
    /// This node refused the peer (and closed the connection saying why).
    WeRefused(Refusal),
    /// The peer refused this node; its reason.
    TheyRefused(String),
    /// Anything else: unreachable, timeout, TLS failure, reset.
    Failed(String),
}

/// An authenticated link, handed to the loop.
pub struct Up {
    pub conn: Connection,
    pub hello: Hello,
    pub control_send: SendStream,
    pub control_recv: RecvStream,
    /// Which side dialed (for the duplicate-link rule).
    pub dialed: bool,
    pub addr: SocketAddr,
}

/// Describes a connection's end for a log line; a peer's refusal is told
/// apart so it can be reported as such.
pub fn describe_close(err: &ConnectionError) -> Failure {
    match err {
        ConnectionError::ApplicationClosed(close)
            if close.error_code == VarInt::from_u32(CLOSE_REFUSED) =>
        {
            Failure::TheyRefused(String::from_utf8_lossy(&close.reason).into_owned())
        }
        ConnectionError::ApplicationClosed(close) => Failure::Failed(format!(
            "closed by the peer (code {}): {}",
            close.error_code,
            String::from_utf8_lossy(&close.reason)
        )),
        // A TLS failure on the peer's side (e.g. our certificate is from
        // another CA) arrives as a transport close naming the alert.
        ConnectionError::ConnectionClosed(close) => Failure::TheyRefused(format!(
            "TLS/transport error from the peer: {} {}",
            close.error_code,
            String::from_utf8_lossy(&close.reason)
        )),
        other => Failure::Failed(other.to_string()),
    }
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly between
/// frames. The header is checked before the body is buffered.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<(Header, Bytes)>, ReadFailure> {
    let mut raw = [0u8; HEADER_LEN_BYTES];
    match recv.read_exact(&mut raw).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFailure::Truncated(format!(
                "stream ended inside a frame header ({n} bytes)"
            )))
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadFailure::Stream(e.to_string())),
    }
    let header = frame::decode_header(&raw).map_err(ReadFailure::Frame)?;
    let mut body = vec![0u8; header.len_bytes as usize];
    match recv.read_exact(&mut body).await {
        Ok(()) => Ok(Some((header, Bytes::from(body)))),
        Err(quinn::ReadExactError::FinishedEarly(n)) => Err(ReadFailure::Truncated(format!(
            "stream ended inside a frame body ({n} of {} bytes)",
            header.len_bytes
        ))),
        Err(quinn::ReadExactError::ReadError(e)) => Err(ReadFailure::Stream(e.to_string())),
    }
}

#[derive(Debug)]
pub enum ReadFailure {
    /// The peer broke the framing rules: the link is closed.
    Frame(FrameError),
    Truncated(String),
    /// The stream or connection went away (reported by the watcher).
    Stream(String),
}

/// Runs the handshake on a fresh connection; on refusal closes it with the
/// reason (so the peer logs it too).
pub async fn handshake(
    conn: Connection,
    dialed: bool,
    addr: SocketAddr,
    ctx: Arc<HandshakeCtx>,
) -> Result<Up, Failure> {
    let run = async {
        let mut exporter = [0u8; hello::EXPORTER_LEN_BYTES];
        conn.export_keying_material(&mut exporter, hello::EXPORTER_LABEL, b"")
            .map_err(|_| Failure::Failed("TLS exporter unavailable".into()))?;
        let mut mine = ctx.hello.clone();
        mine.proof = hello::proof(&ctx.cookie, &exporter, &mine.node_name);
        let mine = frame::encode(KIND_HELLO, &hello::encode(&mine));
        let lost = |e: ConnectionError| describe_close(&e);
        let (mut send, mut recv) = if dialed {
            let (mut send, recv) = conn.open_bi().await.map_err(lost)?;
            send.write_all(&mine)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?;
            (send, recv)
        } else {
            conn.accept_bi().await.map_err(lost)?
        };
        let theirs = match read_frame(&mut recv).await {
            Ok(Some((h, body))) if h.kind == KIND_HELLO => hello::decode(&body),
            Ok(Some((h, _))) => Err(Refusal::Malformed(format!(
                "first frame is kind {}, not a handshake",
                h.kind
            ))),
            Ok(None) => Err(Refusal::Malformed(
                "control stream ended before the handshake".into(),
            )),
            Err(ReadFailure::Frame(e)) => Err(Refusal::Malformed(e.to_string())),
            Err(ReadFailure::Truncated(e)) => Err(Refusal::Malformed(e)),
            Err(ReadFailure::Stream(_)) => {
                // Most likely the peer closed the connection: say why.
                let err = conn.closed().await;
                return Err(describe_close(&err));
            }
        };
        let theirs = theirs.and_then(|h| {
            let expect = hello::Expect {
                cluster_name: &ctx.hello.cluster_name,
                node_name: &ctx.hello.node_name,
                cookie: &ctx.cookie,
                exporter: &exporter,
            };
            hello::check(&expect, &h)?;
            check_cert(&conn, &h, &ctx)?;
            Ok(h)
        });
        let theirs = match theirs {
            Ok(h) => h,
            Err(refusal) => {
                let code = if refusal == Refusal::SelfLink {
                    CLOSE_DUPLICATE
                } else {
                    CLOSE_REFUSED
                };
                conn.close(VarInt::from_u32(code), refusal.to_string().as_bytes());
                return Err(Failure::WeRefused(refusal));
            }
        };
        if !dialed {
            send.write_all(&mine)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?;
        }
        Ok(Up {
            conn: conn.clone(),
            hello: theirs,
            control_send: send,
            control_recv: recv,
            dialed,
            addr,
        })
    };
    match tokio::time::timeout(ctx.timeout, run).await {
        Ok(result) => result,
        Err(_) => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"handshake timed out");
            Err(Failure::Failed("handshake timed out".into()))
        }
    }
}

fn check_cert(conn: &Connection, hello: &Hello, ctx: &HandshakeCtx) -> Result<(), Refusal> {
    if !ctx.check_cert_name {
        return Ok(());
    }
    match tls::peer_cert(conn) {
        Some(cert) => {
            let host = hello::peer_host(hello);
            if tls::cert_names_host(&cert, host) {
                Ok(())
            } else {
                Err(Refusal::CertName {
                    node: hello.node_name.clone(),
                    host: host.to_owned(),
                })
            }
        }
        None if ctx.require_cert => Err(Refusal::NoCert {
            node: hello.node_name.clone(),
        }),
        None => Ok(()),
    }
}

/// Dials `addr` and runs the handshake; reports to the loop either way.
pub async fn dial(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    ctx: Arc<HandshakeCtx>,
    inner: mpsc::Sender<Inner>,
) {
    let connecting = match endpoint.connect_with(config, addr, tls::SERVER_NAME) {
        Ok(c) => c,
        Err(e) => {
            let _ = inner
                .send(Inner::LinkFailed {
                    addr,
                    dialed: true,
                    failure: Failure::Failed(e.to_string()),
                })
                .await;
            return;
        }
    };
    let result = match tokio::time::timeout(ctx.timeout, connecting).await {
        Err(_) => Err(Failure::Failed(
            "no answer (QUIC handshake timed out)".into(),
        )),
        Ok(Err(e)) => Err(describe_close_or_tls(&e)),
        Ok(Ok(conn)) => handshake(conn, true, addr, ctx).await,
    };
    let msg = match result {
        Ok(up) => Inner::LinkUp(Box::new(up)),
        Err(failure) => Inner::LinkFailed {
            addr,
            dialed: true,
            failure,
        },
    };
    let _ = inner.send(msg).await;
}

/// Accepts one incoming connection and runs the handshake.
pub async fn accept(incoming: quinn::Incoming, ctx: Arc<HandshakeCtx>, inner: mpsc::Sender<Inner>) {
    let addr = incoming.remote_address();
    let result = match tokio::time::timeout(ctx.timeout, incoming).await {
        Err(_) => Err(Failure::Failed("QUIC handshake timed out".into())),
        Ok(Err(e)) => Err(describe_close_or_tls(&e)),
        Ok(Ok(conn)) => handshake(conn, false, addr, ctx).await,
    };
    let msg = match result {
        Ok(up) => Inner::LinkUp(Box::new(up)),
        Err(failure) => Inner::LinkFailed {
            addr,
            dialed: false,
            failure,
        },
    };
    let _ = inner.send(msg).await;
}

/// A failed QUIC/TLS handshake: our own TLS verdict (e.g. the peer's
/// certificate is from another CA) is a refusal by this node.
fn describe_close_or_tls(err: &ConnectionError) -> Failure {
    match err {
        ConnectionError::TransportError(e) => Failure::WeRefused(Refusal::Tls(e.to_string())),
        other => describe_close(other),
    }
}

/// Reads frames of one stream and hands those of logic kinds upwards in
/// order. A bad frame closes the whole link with the reason.
pub async fn read_stream(
    conn: Connection,
    mut recv: RecvStream,
    from: NodeId,
    mut stream: Option<StreamId>,
    counters: Arc<PeerCounters>,
    events: mpsc::Sender<NetEvent>,
) {
    loop {
        let (header, body) = match read_frame(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(ReadFailure::Stream(e)) => return debug!("cluster: stream from {from} ended: {e}"),
            Err(ReadFailure::Frame(e)) => {
                return protocol_close(&conn, from, &counters, &e.to_string())
            }
            Err(ReadFailure::Truncated(e)) => return protocol_close(&conn, from, &counters, &e),
        };
        PeerCounters::add(&counters.frames_received, 1);
        PeerCounters::add(
            &counters.bytes_received,
            (HEADER_LEN_BYTES + body.len()) as u64,
        );
        let Some(id) = stream else {
            // A data stream names its shard first.
            if header.kind != KIND_DATA_OPEN || body.len() != 2 {
                return protocol_close(
                    &conn,
                    from,
                    &counters,
                    &format!("data stream opened with kind {}", header.kind),
                );
            }
            stream = Some(StreamId::Data {
                shard: u16::from_le_bytes([body[0], body[1]]),
            });
            continue;
        };
        if header.kind < LOGIC_KIND_MIN {
            return protocol_close(
                &conn,
                from,
                &counters,
                &FrameError::UnexpectedKind(header.kind).to_string(),
            );
        }
        let event = NetEvent::PeerFrame {
            from,
            stream: id,
            kind: header.kind,
            body,
        };
        if events.send(event).await.is_err() {
            return; // the consumer is gone: the node is stopping
        }
    }
}

fn protocol_close(conn: &Connection, from: NodeId, counters: &PeerCounters, reason: &str) {
    warn!("cluster: closing the link with {from}: bad frame: {reason}");
    PeerCounters::add(&counters.malformed_frames, 1);
    conn.close(
        VarInt::from_u32(CLOSE_PROTOCOL),
        format!("bad frame: {reason}").as_bytes(),
    );
}

/// Accepts the peer's data streams (one per sending shard).
pub async fn accept_data_streams(
    conn: Connection,
    from: NodeId,
    counters: Arc<PeerCounters>,
    events: mpsc::Sender<NetEvent>,
) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(read_stream(
            conn.clone(),
            recv,
            from,
            None,
            counters.clone(),
            events.clone(),
        ));
    }
}

/// Writes queued frames to one stream, in order. A data stream is opened
/// when its first frame is queued, and starts by naming its shard.
pub async fn write_stream(
    conn: Connection,
    send: Option<SendStream>,
    shard: u16,
    mut queue: mpsc::Receiver<Bytes>,
    counters: Arc<PeerCounters>,
) {
    let mut send = match send {
        Some(s) => s,
        None => {
            let Ok(mut s) = conn.open_uni().await else {
                return;
            };
            if s.write_all(&frame::encode(KIND_DATA_OPEN, &shard.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
            s
        }
    };
    while let Some(bytes) = queue.recv().await {
        if let Err(e) = send.write_all(&bytes).await {
            debug!("cluster: stream write failed: {e}");
            return;
        }
        PeerCounters::add(&counters.frames_sent, 1);
        PeerCounters::add(&counters.bytes_sent, bytes.len() as u64);
    }
}

/// Hands the peer's SWIM datagrams to the loop.
pub async fn read_datagrams(conn: Connection, from: NodeId, inner: mpsc::Sender<Inner>) {
    while let Ok(data) = conn.read_datagram().await {
        if inner.send(Inner::Datagram { from, data }).await.is_err() {
            return;
        }
    }
}

/// Tells the loop when the link is gone, and why.
pub async fn watch(conn: Connection, node: NodeId, inner: mpsc::Sender<Inner>) {
    let err = conn.closed().await;
    let failure = describe_close(&err);
    let _ = inner
        .send(Inner::LinkClosed {
            node,
            stable_id: conn.stable_id(),
            failure,
        })
        .await;
}

/// Of two links with one peer, whether the one already kept stays. Each
/// is `(peer's boot epoch, which node dialed it)`; `pair_min` is the
/// smaller id of the two nodes. A newer incarnation's link wins; of two
/// links of one incarnation dialed by each side at once, both sides keep
/// the one the smaller id dialed (so they agree without talking); a redial
/// by the same side replaces the old link (likely dead).
pub fn keeps_old_link(old: (u64, NodeId), new: (u64, NodeId), pair_min: NodeId) -> bool {
    match old.0.cmp(&new.0) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => old.1 != new.1 && old.1 == pair_min,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends run the rule on the same two links and must keep the same
    /// one, whichever arrived first.
    #[test]
    fn both_ends_keep_the_same_of_two_links() {
        let (a, b) = (NodeId(1), NodeId(2));
        let (dialed_by_a, dialed_by_b) = ((7, a), (7, b));
        // At a: the first link to arrive is `first`, the other `second`;
        // what a keeps must be what b keeps.
        let kept = |first: (u64, NodeId), second| {
            if keeps_old_link(first, second, a.min(b)) {
                first
            } else {
                second
            }
        };
        assert_eq!(kept(dialed_by_a, dialed_by_b), dialed_by_a);
        assert_eq!(kept(dialed_by_b, dialed_by_a), dialed_by_a);
        // A newer incarnation wins either way round; an older one loses.
        assert!(!keeps_old_link((7, a), (8, a), a));
        assert!(keeps_old_link((8, b), (7, a), a));
        // The same side dialing again replaces its old link.
        assert!(!keeps_old_link((7, b), (7, b), a));
    }
}
