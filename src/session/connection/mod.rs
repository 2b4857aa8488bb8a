//! [`Connection`]: a live client connection driving its [`Session`].
//!
//! The connection is one struct whose fields are private to this module;
//! its methods live in parts by concern, each an `impl Connection` block
//! that calls its siblings only through the few `pub(super)` methods they
//! expose:
//!
//! | part | concern | offers the others |
//! |---|---|---|
//! | `accept` | CONNECT checks, the CONNACK, a resumed session's resends | `ConnectExtras` |
//! | `inbound` | PUBLISH and PUBREL from the client: aliases in, limits, QoS 1/2 receive state | `handle_publish`, `handle_pubrel` |
//! | `access` | `$SYS` / `$share` names and the authorization rules | `may_publish`, `may_subscribe`, `deny_reason_code` |
//! | `subscriptions` | SUBSCRIBE and UNSUBSCRIBE | `handle_subscribe`, `handle_unsubscribe` |
//! | `outbound` | deliveries, the session queue, the inflight window, acks of our PUBLISHes, back-pressure | `handle_puback`, `handle_pubrec`, `handle_pubcomp`, `complete`, `drain`, `has_window`, `drop_too_large` |
//! | `transmit` | `poll_transmit`: each packet encoded in write order, fitted to the client's Maximum Packet Size | nothing |
//! | `aliases` | the topic alias tables of both directions | `Aliases` |
//! | `end` | DISCONNECT, kicks, takeover, the will, `into_session`, the one `close` | `close`, `close_error`, `protocol_error` |
//!
//! This file holds the struct, the transmit queue's entry type, the
//! packet dispatch and the keepalive timer.

mod accept;
mod access;
mod aliases;
mod end;
mod held;
mod inbound;
mod outbound;
mod subscriptions;
mod transmit;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{AckKind, AckProperties, ByteStr, Packet, Protocol, PubAck, ReasonCode};

use super::lazy::Lazy;
use super::pressure::Pressure;
use super::state::Session;
use super::{Action, Delivery, DropCounts, SessionConfig};

// `Connection::tx_qos0_len` is 16 bits.
const _: () = assert!(super::TX_QOS0_MAX <= u16::MAX as usize);

use accept::ConnectExtras;
use aliases::Aliases;

/// An entry of the transmit queue. PUBLISH packets are built only when they
/// are polled, so that expiry, the client's Maximum Packet Size and topic
/// aliases apply to the exact packet written, in write order.
///
/// Entries stay small (acks are the common ones); other control packets are
/// boxed.
#[derive(Debug)]
enum Tx {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP without properties.
    Ack(AckKind, u16, ReasonCode),
    /// The PUBACK/PUBREC (success) of a PUBLISH whose receiving nodes have
    /// not all queued it yet: nothing from here on is written until it is
    /// released (`held.rs`).
    Held(AckKind, u16),
    /// Any other packet but an outbound PUBLISH: sent as is.
    Control(Box<Packet>),
    /// The QoS 1/2 inflight message with this packet id.
    Publish(u16),
    /// A QoS 0 message (never inflight).
    Qos0(Delivery),
}

/// A live connection: wraps the [`Session`] while a client is connected.
///
/// See the module documentation for the call order.
#[derive(Debug)]
pub struct Connection {
    pub(super) session: Session,
    protocol: Protocol,
    /// Our limits, kept for the life of the connection; shared with every
    /// connection of the shard (a copy was 80 bytes per connection).
    cfg: Arc<SessionConfig>,
    /// User Name and will from CONNECT, in one box (`None` when the client
    /// set neither): see `ConnectExtras`.
    extras: Option<Box<ConnectExtras>>,

    /// Negotiated keepalive (after the Server Keep Alive cap); 0 = off.
    keep_alive_s: u16,
    /// When the last packet from the client arrived: keepalive runs from it.
    last_rx_at: Instant,
    /// Latest instant seen through any `handle_*`/`poll_transmit` until the
    /// close, and no longer updated after it: then it is the instant of the
    /// close, which dates the will's expiry (the close may come where no
    /// instant is passed in, `kick`). One field for both: 16 bytes of every
    /// connection (docs/performance.md, idle connections round 4).
    last_now: Instant,

    /// Outbound QoS 1/2 window: min(client Receive Maximum, cfg.max_inflight),
    /// both 16-bit.
    window_len: u16,
    /// Client's Maximum Packet Size (a four-byte integer in CONNECT);
    /// `u32::MAX` when it set none, larger than any packet MQTT can encode.
    client_packet_size_max: u32,
    /// Outbound aliases we may use: min(client Topic Alias Maximum, cap).
    alias_out_max: u16,
    /// Topic aliases of this connection, both directions in one `Lazy`
    /// (one pointer while the client uses none).
    aliases: Lazy<Aliases>,
    /// Request Problem Information (v5): when false no Reason String goes out.
    problem_info: bool,
    /// CONNECT had Session Expiry Interval 0: a DISCONNECT may not raise it
    /// (MQTT-3.14.2-2 protocol error).
    connect_expiry_zero: bool,

    /// Set on takeover by a Clean Start connection: the session ends, so the
    /// will goes out with no delay.
    will_delay_zero: bool,
    /// Decided at close: the will must be published.
    publish_will: bool,

    /// This and the next deques are `Lazy` (one pointer while empty, as
    /// they are while the client is idle), like the alias maps.
    tx: Lazy<VecDeque<Tx>>,
    /// `Tx::Qos0` entries in `tx`, bounded by
    /// [`TX_QOS0_MAX`](super::TX_QOS0_MAX). 16 bits (the bound fits): the
    /// narrow counters here keep `ConnHandle` in a smaller allocator size
    /// class and make room for `clean_start` and `socket_fd`
    /// (docs/performance.md, idle connections round 4 and "round 2" after
    /// issue 12).
    tx_qos0_len: u16,
    /// Ids of PUBLISHes carried over from an earlier connection that still
    /// wait for room in this connection's window before being resent.
    resend: Lazy<VecDeque<u16>>,
    actions: Lazy<VecDeque<Action>>,
    closed: bool,
    /// Clean Start of the CONNECT, for the admin API.
    clean_start: bool,
    /// The shard's descriptor of this connection's socket (-1 until set),
    /// for the admin API's `getpeername` (`shard::inspect`). Kept here, in
    /// padding, rather than the peer's address (18 bytes) in a box of its
    /// own: never used for I/O by this sans-IO state.
    socket_fd: i32,
    /// Whether the session queue is past its bound and holds publishers
    /// back (see `session::pressure`).
    pressure: Pressure,
}

impl Connection {
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn client_id(&self) -> &ByteStr {
        &self.session.client_id
    }

    /// The session this connection drives (read only).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for the shard's durable store to mark and record
    /// (`shard::durable`); the protocol's state is changed only through
    /// `handle_*`.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// CONNECT's User Name, if it had one.
    pub fn username(&self) -> Option<&ByteStr> {
        self.extras.as_ref()?.username.as_ref()
    }

    /// Negotiated keepalive in seconds (after the Server Keep Alive cap).
    pub fn keep_alive_s(&self) -> u16 {
        self.keep_alive_s
    }

    /// Clean Start as the client's CONNECT set it.
    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    /// The shard's descriptor of the connection's socket, if set
    /// (`set_socket_fd`): for the admin API's peer address only.
    pub fn socket_fd(&self) -> Option<i32> {
        (self.socket_fd >= 0).then_some(self.socket_fd)
    }

    /// Records the descriptor of the connection's socket (see `socket_fd`).
    pub fn set_socket_fd(&mut self, fd: i32) {
        self.socket_fd = fd;
    }

    /// Whether the connection has ended (an [`Action::Close`] was emitted).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Every message dropped by the session, all causes (see [`DropCounts`]).
    pub fn dropped_messages(&self) -> u64 {
        self.session.dropped_messages()
    }

    pub fn drop_counts(&self) -> DropCounts {
        self.session.extras.drops
    }

    /// A packet from the client.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        if self.closed {
            return;
        }
        self.last_now = now;
        self.last_rx_at = now;
        match packet {
            Packet::Publish(p) => self.handle_publish(p, now),
            Packet::PubRel(rel) => self.handle_pubrel(rel),
            Packet::PubAck(ack) => self.handle_puback(ack),
            Packet::PubRec(ack) => self.handle_pubrec(ack),
            Packet::PubComp(ack) => self.handle_pubcomp(ack),
            Packet::Subscribe(s) => self.handle_subscribe(s),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(u),
            Packet::PingReq => self.tx.push_back(Tx::Control(Box::new(Packet::PingResp))),
            Packet::Disconnect(d) => self.handle_disconnect(*d),
            Packet::Connect(_) => self.protocol_error("second CONNECT"),
            // No authentication method can have been negotiated (check_connect
            // refuses them), so any AUTH is out of place (MQTT-4.12.0-1).
            Packet::Auth(_) => self.protocol_error("AUTH without authentication method"),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.protocol_error("server-only packet from client")
            }
        }
    }

    /// Next thing the shard must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Gives back the memory of the transmit, resend and action queues (and
    /// of the session queue and inflight map) when they are empty: a deque
    /// keeps its buffer when emptied, so an
    /// idle connection would otherwise hold the one its CONNACK or PINGRESP
    /// was queued in. The connection's task calls it before waiting for its
    /// client after a read of control packets only (CONNECT, PINGREQ,
    /// SUBSCRIBE, ...), once the replies went out; never after a read that
    /// carried a PUBLISH or an acknowledgement, so a busy connection does
    /// not reallocate its queues on every read.
    pub fn release_idle_memory(&mut self) {
        self.tx.release_if_empty();
        self.resend.release_if_empty();
        self.actions.release_if_empty();
        self.session.queue.release_if_empty();
        self.session.inflight.release_if_empty();
    }

    /// Earliest instant at which `handle_timeout` must be called (keepalive:
    /// 1.5 times Keep Alive after the last packet from the client).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed || self.keep_alive_s == 0 {
            return None;
        }
        Some(self.last_rx_at + Duration::from_millis(u64::from(self.keep_alive_s) * 1500))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.last_now = now;
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.close_error(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
        }
    }

    fn is_v5(&self) -> bool {
        self.protocol.is_v5()
    }
}

fn ack(packet_id: u16, reason_code: ReasonCode) -> PubAck {
    PubAck {
        packet_id,
        reason_code,
        properties: AckProperties::default(),
    }
}

fn pubrel(packet_id: u16, reason_code: ReasonCode) -> Tx {
    Tx::Ack(AckKind::PubRel, packet_id, reason_code)
}
