//! [`Connection`]: a live client connection driving its [`Session`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authz::{DenyAction, DenyReason, Who};
use bytes::BytesMut;

use crate::codec::{
    self, connack_v3, AckKind, AckProperties, ByteStr, ConnAck, ConnAckProperties, Connect,
    Disconnect, DisconnectProperties, Packet, Protocol, PubAck, Publish, PublishProperties,
    PublishRef, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};
use crate::router::topic::{
    has_wildcard, is_share_topic, is_sys_topic, is_valid_topic_filter, is_valid_topic_name, levels,
    parse_shared,
};

use super::connack;
use super::lazy::{Empty, Lazy};
use super::origin::Origin;
use super::pressure::{self, Pressure};
use super::state::{is_expired, Awaiting, Session, Subscription};
use super::{
    Action, Delivery, DropCounts, Message, SessionConfig, OUTBOUND_TOPIC_ALIAS_MAX, TX_QOS0_MAX,
};

// `Connection::tx_qos0_len` is 16 bits.
const _: () = assert!(TX_QOS0_MAX <= u16::MAX as usize);

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
    /// `Tx::Qos0` entries in `tx`, bounded by [`TX_QOS0_MAX`]. 16 bits
    /// (the bound fits): the narrow counters here keep `ConnHandle` in a
    /// smaller allocator size class and make room for `clean_start` and
    /// `socket_fd` (docs/performance.md, idle connections round 4 and
    /// "round 2" after issue 12).
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

/// What a CONNECT may carry beyond the client id, kept for the life of the
/// connection. One box for both, present only when the client set either:
/// most clients set no will (inline, a will took 200 bytes of every
/// connection), and the user name is only read by authorization rules.
#[derive(Debug)]
struct ConnectExtras {
    username: Option<ByteStr>,
    will: Option<Will>,
}

impl ConnectExtras {
    fn of(username: Option<ByteStr>, will: Option<Will>) -> Option<Box<ConnectExtras>> {
        (username.is_some() || will.is_some()).then(|| Box::new(ConnectExtras { username, will }))
    }
}

/// The topic aliases of a connection (MQTT 5.0 section 3.3.2.3.4).
#[derive(Debug, Default)]
struct Aliases {
    /// Topic -> alias already sent on this connection.
    outbound: BTreeMap<ByteStr, u16>,
    /// Alias -> topic set by the client on this connection.
    inbound: BTreeMap<u16, ByteStr>,
}

impl Empty for Aliases {
    const EMPTY: &'static Self = &Aliases {
        outbound: BTreeMap::new(),
        inbound: BTreeMap::new(),
    };
    fn has_none(&self) -> bool {
        self.outbound.is_empty() && self.inbound.is_empty()
    }
}

impl Connection {
    fn will(&self) -> Option<&Will> {
        self.extras.as_ref()?.will.as_ref()
    }

    fn drop_will(&mut self) {
        if let Some(e) = &mut self.extras {
            e.will = None;
        }
    }

    /// Validates a CONNECT before anything else happens. `Err` is the
    /// refusal CONNACK (right code for the protocol) to send before closing.
    // The refusal CONNACK is the API's error type; it is built once per
    // refused connection, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn check_connect(connect: &Connect, cfg: &SessionConfig) -> Result<(), ConnAck> {
        let v5 = connect.protocol.is_v5();
        let refuse = |code_v5: ReasonCode, code_v3: ReasonCode| {
            Err(ConnAck {
                session_present: false,
                reason_code: if v5 { code_v5 } else { code_v3 },
                properties: ConnAckProperties::default(),
            })
        };
        let id = &connect.client_id;
        if id.len() > cfg.max_client_id_len || id.chars().any(char::is_control) {
            return refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                connack_v3::IDENTIFIER_REJECTED,
            );
        }
        // MQTT-3.1.3-8 (3.1.1): an empty id needs Clean Session 1. v5 lets the
        // server assign one whatever Clean Start is.
        if !v5 && id.is_empty() && !connect.clean_start {
            return refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                connack_v3::IDENTIFIER_REJECTED,
            );
        }
        if v5 {
            let p = &connect.properties;
            // No enhanced authentication method is supported (MQTT-4.12.0-1).
            if p.authentication_method.is_some() {
                return refuse(
                    ReasonCode::BAD_AUTHENTICATION_METHOD,
                    connack_v3::NOT_AUTHORIZED,
                );
            }
            // Both are protocol errors when 0 (sections 3.1.2.11.3 and .4).
            if p.receive_maximum == Some(0) || p.maximum_packet_size == Some(0) {
                return refuse(ReasonCode::PROTOCOL_ERROR, connack_v3::NOT_AUTHORIZED);
            }
        }
        if let Some(will) = &connect.will {
            // Deeper than `max_topic_levels`: the will could never be
            // published, so the client learns it now.
            if !is_valid_topic_name(&will.topic) || levels(&will.topic) > cfg.max_topic_levels {
                // 3.1.1 has no fitting return code; any non-zero one refuses.
                return refuse(ReasonCode::TOPIC_NAME_INVALID, connack_v3::NOT_AUTHORIZED);
            }
            // MQTT-3.2.2-14 (v5). A 3.1.1 client cannot know; its will simply
            // loses the retain flag (see `take_will`).
            if v5 && will.retain && !cfg.retain_available {
                return refuse(ReasonCode::RETAIN_NOT_SUPPORTED, connack_v3::NOT_AUTHORIZED);
            }
        }
        Ok(())
    }

    /// Whether the client can receive the CONNACK [`Connection::accept`]
    /// would send, with the final client id (`assigned_client_id` when the
    /// shard made one up). Checked before the session is acquired, so a
    /// CONNECT that cannot be accepted takes nothing over. `Err`: the
    /// refusal CONNACK to send before closing, or `None` to close without
    /// sending anything (see `connack::check_fits` for why).
    #[allow(clippy::result_large_err)] // built once per refused connection
    pub fn check_connack_fits(
        connect: &Connect,
        cfg: &SessionConfig,
        assigned_client_id: Option<&ByteStr>,
    ) -> Result<(), Option<ConnAck>> {
        connack::check_fits(connect, cfg, assigned_client_id)
    }

    /// A refusal CONNACK for `connect` made to fit the client's Maximum
    /// Packet Size (MQTT-3.1.2-24): optional properties go first; `None`
    /// when even the reason code alone does not fit (send nothing, close).
    pub fn fit_refusal(refusal: ConnAck, connect: &Connect) -> Option<ConnAck> {
        let size_max = connack::client_packet_size_max(connect);
        connack::fit(refusal, connect.protocol, size_max)
    }

    /// Accepts a CONNECT that passed [`Connection::check_connect`] and
    /// [`Connection::check_connack_fits`].
    ///
    /// `client_id` is the final id (`assigned` when the shard made it up for
    /// an empty one: v5 then returns it as Assigned Client Identifier).
    /// `existing` is the session for this id, already taken over from
    /// wherever it lived; it is discarded when Clean Start is set.
    ///
    /// Queues CONNACK, then the resends of the resumed session in original
    /// order (PUBLISH with DUP=1 if it was transmitted before, PUBREL for
    /// PUBREC'd ones), then queued messages, within the window.
    pub fn accept(
        connect: Connect,
        client_id: ByteStr,
        assigned: bool,
        existing: Option<Session>,
        cfg: &Arc<SessionConfig>,
        now: Instant,
    ) -> Connection {
        let v5 = connect.protocol.is_v5();
        let props = &connect.properties;
        let negotiated = connack::negotiate(&connect, cfg);
        let client_packet_size_max = connack::client_packet_size_max(&connect);
        let expiry_s = negotiated.expiry_s;

        // `client_id` is moved in, not cloned: the first clone of a `Bytes`
        // made from a `Vec` allocates a shared header (24 bytes), which an
        // idle connection would keep for nothing.
        let (mut session, session_present) = match existing {
            Some(mut s) if !connect.clean_start => {
                assert_eq!(s.client_id, client_id, "existing session of another client");
                s.client_id = client_id;
                (s, true)
            }
            _ => (Session::new(client_id, expiry_s, cfg.max_mqueue_len), false),
        };
        session.expiry_interval_s = expiry_s;
        session.queue_len_max = super::state::queue_len_max_u32(cfg.max_mqueue_len);

        let receive_maximum = connack::receive_maximum(cfg);
        let connack = if v5 {
            let assigned_client_id = assigned.then(|| session.client_id.clone());
            ConnAck {
                session_present,
                reason_code: ReasonCode::SUCCESS,
                properties: connack::properties(&negotiated, cfg, assigned_client_id),
            }
        } else {
            ConnAck {
                session_present,
                reason_code: connack_v3::ACCEPTED,
                properties: ConnAckProperties::default(),
            }
        };

        let client_receive_maximum = if v5 {
            props.receive_maximum.unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let mut conn = Connection {
            protocol: connect.protocol,
            cfg: Arc::clone(cfg),
            extras: ConnectExtras::of(connect.username, connect.will),
            keep_alive_s: negotiated.keep_alive_s,
            last_rx_at: now,
            last_now: now,
            window_len: client_receive_maximum.min(receive_maximum),
            client_packet_size_max,
            alias_out_max: if v5 {
                props
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(OUTBOUND_TOPIC_ALIAS_MAX)
            } else {
                0
            },
            aliases: Lazy::new(),
            problem_info: !v5 || props.request_problem_information != Some(0),
            connect_expiry_zero: negotiated.expiry_requested_s == 0,
            will_delay_zero: false,
            publish_will: false,
            tx: Lazy::new(),
            tx_qos0_len: 0,
            resend: Lazy::new(),
            actions: Lazy::new(),
            closed: false,
            clean_start: connect.clean_start,
            socket_fd: -1,
            pressure: Pressure::Free,
            session,
        };
        conn.tx
            .push_back(Tx::Control(Box::new(Packet::ConnAck(Box::new(connack)))));
        conn.queue_resends();
        conn.drain(now);
        conn
    }

    /// Queues what a resumed session owes the client (MQTT-4.4.0-1): in
    /// original order, PUBREL for PUBREC'd messages and PUBLISH for the
    /// others, as far as the window allows; the remaining PUBLISHes go out
    /// as acknowledgements make room (see `drain`).
    fn queue_resends(&mut self) {
        let mut order: Vec<(u64, u16, Awaiting)> = self
            .session
            .inflight
            .iter()
            .map(|(&id, o)| (o.seq, id, o.state))
            .collect();
        order.sort_unstable_by_key(|e| e.0);
        // Every PUBLISH starts in the backlog, so the window counts only the
        // PUBREL'd messages while the loop admits them in order.
        self.resend.extend(
            order
                .iter()
                .filter(|e| e.2 != Awaiting::PubComp)
                .map(|e| e.1),
        );
        for (_, id, state) in order {
            if state == Awaiting::PubComp {
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            } else if self.resend.front() == Some(&id) && self.has_window() {
                self.resend.pop_front();
                self.tx.push_back(Tx::Publish(id));
            }
        }
    }

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
        *self.session.drops
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
            // An ack of the wrong kind for the flow its packet id is in is
            // a protocol error (3.1.1 MQTT-4.8.0-1, 5.0 section 4.13): left
            // alone, the message would hold its window slot for good. An
            // ack for an id with no flow is tolerated: a resend after a
            // reconnect can produce one.
            Packet::PubAck(ack) => match self.out_state(ack.packet_id) {
                Some(Awaiting::PubAck) => self.complete(ack.packet_id),
                Some(Awaiting::PubRec | Awaiting::PubComp) => {
                    self.protocol_error("PUBACK for a QoS 2 message")
                }
                None => {}
            },
            Packet::PubRec(ack) => self.handle_pubrec(ack),
            Packet::PubComp(ack) => match self.out_state(ack.packet_id) {
                Some(Awaiting::PubComp) => self.complete(ack.packet_id),
                Some(Awaiting::PubAck) => self.protocol_error("PUBCOMP for a QoS 1 message"),
                Some(Awaiting::PubRec) => self.protocol_error("PUBCOMP before PUBREC"),
                None => {}
            },
            Packet::PubRel(rel) => {
                let reason = if self.session.incoming_qos2.remove(&rel.packet_id) || !self.is_v5() {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                let pubcomp = Tx::Ack(AckKind::PubComp, rel.packet_id, reason);
                self.tx.push_back(pubcomp);
            }
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

    fn handle_publish(&mut self, mut p: Publish, now: Instant) {
        let alias = match p.properties.as_deref_mut() {
            Some(properties) if self.is_v5() => {
                let alias = properties.topic_alias.take();
                if properties.is_empty() {
                    p.properties = None;
                }
                alias
            }
            _ => None,
        };
        let topic = match alias {
            Some(a) if a == 0 || a > self.cfg.max_topic_alias => {
                return self
                    .close_error(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range");
            }
            Some(a) if p.topic.is_empty() => match self.aliases.inbound.get(&a) {
                Some(topic) => topic.clone(),
                None => return self.protocol_error("unknown topic alias"),
            },
            _ => p.topic,
        };
        if topic.is_empty() {
            return self.protocol_error("empty topic name");
        }
        if !is_valid_topic_name(&topic) {
            return self.close_error(ReasonCode::TOPIC_NAME_INVALID, "wildcard in topic name");
        }
        if let Some(a) = alias {
            // Bounded: at most cfg.max_topic_alias entries.
            self.aliases.inbound.insert(a, topic.clone());
        }
        // Counted on the topic as resolved, whether it came by name or alias.
        if levels(&topic) > self.cfg.max_topic_levels {
            return self.refuse_topic_levels(p.qos, p.packet_id);
        }
        if p.properties
            .as_ref()
            .is_some_and(|p| !p.subscription_identifiers.is_empty())
        {
            return self.protocol_error("subscription identifier in PUBLISH"); // MQTT-3.3.4-6
        }
        if p.retain && !self.cfg.retain_available {
            return self.close_error(ReasonCode::RETAIN_NOT_SUPPORTED, "retain not supported");
        }
        // A QoS 2 resend of a message already routed (so allowed then) keeps
        // its flow: refusing it now would strand its packet id.
        let qos2_resend =
            p.qos == QoS::ExactlyOnce && self.session.incoming_qos2.contains(&p.packet_id);
        if !qos2_resend && !self.may_publish(&topic) {
            return self.refuse_publish(p.qos, p.packet_id);
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let puback = Tx::Ack(AckKind::PubAck, p.packet_id, ReasonCode::SUCCESS);
                self.tx.push_back(puback);
            }
            QoS::ExactlyOnce => {
                let pubrec = Tx::Ack(AckKind::PubRec, p.packet_id, ReasonCode::SUCCESS);
                if self.session.incoming_qos2.contains(&p.packet_id) {
                    // A resend of a message already routed (MQTT-4.3.3-10).
                    self.tx.push_back(pubrec);
                    return;
                }
                // v5 clients were told our Receive Maximum; v3.1.1 clients
                // never were, so only the packet-id space (65535 ids, a
                // bounded set) limits them, as in Mosquitto and EMQX.
                if self.is_v5()
                    && self.session.incoming_qos2.len() >= self.cfg.max_inflight.max(1) as usize
                {
                    return self.close_error(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "receive maximum exceeded",
                    );
                }
                self.session.incoming_qos2.insert(p.packet_id);
                self.tx.push_back(pubrec);
            }
        }
        let expires_at = p
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval_s)
            .map(|s| now + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
            origin: Some(Origin::new(&self.session.client_id)),
            expires_at,
        };
        self.actions.push_back(Action::Publish(Arc::new(message)));
    }

    fn handle_pubrec(&mut self, rec: PubAck) {
        let id = rec.packet_id;
        match self.out_state(id) {
            Some(Awaiting::PubRec) if rec.reason_code.is_error() => {
                // The receiver refused the message: the flow ends here
                // (MQTT 5.0 section 4.3.3) and the slot is free.
                self.complete(id);
            }
            Some(Awaiting::PubRec) => {
                let o = self.session.inflight.get_mut(&id).expect("state was read");
                o.state = Awaiting::PubComp;
                self.unbacklog(id);
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            }
            // A repeated PUBREC: answer it again.
            Some(Awaiting::PubComp) => {
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            }
            Some(Awaiting::PubAck) => self.protocol_error("PUBREC for a QoS 1 message"),
            None => {
                if self.is_v5() {
                    let rel = pubrel(id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                    self.tx.push_back(rel);
                }
            }
        }
    }

    fn handle_subscribe(&mut self, s: Subscribe) {
        // Checked before anything is applied, so the packet is all or nothing.
        let no_local_shared = s
            .filters
            .iter()
            .any(|(f, o)| o.no_local && matches!(parse_shared(f), Ok(Some(_))));
        if no_local_shared {
            return self.protocol_error("No Local on a shared subscription"); // MQTT-3.8.3-4
        }
        let identifier = s.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(s.filters.len());
        for (filter, options) in s.filters {
            reason_codes.push(self.subscribe_one(filter, options, identifier));
        }
        let suback = SubAck {
            packet_id: s.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.tx
            .push_back(Tx::Control(Box::new(Packet::SubAck(suback))));
    }

    fn subscribe_one(
        &mut self,
        filter: ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> ReasonCode {
        let v5 = self.is_v5();
        let fail = |code: ReasonCode| if v5 { code } else { ReasonCode::SUBACK_FAILURE };
        // The filter that goes into the topic tree: for a shared
        // subscription the part after `$share/{group}/`.
        let tree_filter = match parse_shared(&filter) {
            Err(_) => return fail(ReasonCode::TOPIC_FILTER_INVALID),
            Ok(Some(_)) if !self.cfg.shared_subscription_available => {
                return fail(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            }
            Ok(Some(shared)) => shared.filter,
            Ok(None) if !is_valid_topic_filter(&filter) => {
                return fail(ReasonCode::TOPIC_FILTER_INVALID)
            }
            Ok(None) => &filter,
        };
        // Refused here, so no router stores a deeper filter (the trie
        // asserts `limits::TOPIC_LEVELS_MAX`). As EMQX: 0x8F.
        if levels(tree_filter) > self.cfg.max_topic_levels {
            return fail(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let wildcard = has_wildcard(tree_filter);
        if wildcard && !self.cfg.wildcard_subscription_available {
            return fail(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if !self.may_subscribe(&filter) {
            return fail(self.deny_reason_code());
        }
        let subscriptions = &mut self.session.subscriptions;
        let existed = subscriptions.contains_key(&filter);
        let max = self.cfg.max_subscriptions;
        if !existed && max > 0 && subscriptions.len() >= max {
            return fail(ReasonCode::QUOTA_EXCEEDED);
        }
        subscriptions.insert(
            filter.clone(),
            Subscription {
                options,
                identifier,
            },
        );
        self.actions.push_back(Action::Subscribe {
            filter,
            options,
            identifier,
            existed,
        });
        ReasonCode(options.qos as u8)
    }

    fn handle_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(if self.is_v5() { u.filters.len() } else { 0 });
        for filter in u.filters {
            let code = if self.session.subscriptions.remove(&filter).is_some() {
                self.actions.push_back(Action::Unsubscribe { filter });
                ReasonCode::SUCCESS
            } else if !is_valid_filter(&filter) {
                ReasonCode::TOPIC_FILTER_INVALID
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            };
            if self.is_v5() {
                reason_codes.push(code);
            }
        }
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.tx
            .push_back(Tx::Control(Box::new(Packet::UnsubAck(unsuback))));
    }

    fn handle_disconnect(&mut self, d: Disconnect) {
        if let (true, Some(expiry_s)) = (self.is_v5(), d.properties.session_expiry_interval_s) {
            if self.connect_expiry_zero && expiry_s != 0 {
                return self.protocol_error("session expiry raised from 0"); // MQTT-3.14.2-2
            }
            self.session.expiry_interval_s = expiry_s.min(self.cfg.max_session_expiry_interval_s);
        }
        // Only a normal disconnection discards the will (MQTT-3.14.4-3); 0x04
        // and the error codes publish it.
        let will = d.reason_code != ReasonCode::NORMAL_DISCONNECTION;
        self.close(d.reason_code, will, false, None);
    }

    /// A routed message for this client. Retained messages matched at
    /// subscribe time come the same way with `d.retain = true` and count
    /// toward the window like any other. After the connection closed, the
    /// message goes to the session queue (as [`Session::deliver_offline`]).
    pub fn handle_delivery(&mut self, d: Delivery, now: Instant) {
        if self.closed {
            return self.session.deliver_offline(d, now);
        }
        self.last_now = now;
        if is_expired(&d, now) {
            self.session.drops.expired += 1;
            return;
        }
        // Straight to the socket only when nothing older waits, to keep order.
        if self.session.queue.is_empty() && self.resend.is_empty() {
            if d.qos == QoS::AtMostOnce {
                if (self.tx_qos0_len as usize) < TX_QOS0_MAX {
                    self.tx_qos0_len += 1;
                    self.tx.push_back(Tx::Qos0(d));
                    return;
                }
            } else if self.has_window() {
                let id = self.session.insert_inflight(d);
                self.tx.push_back(Tx::Publish(id));
                return;
            }
        }
        self.enqueue_online(d);
    }

    /// Queues `d` for the live client: past the queue's bound only a QoS
    /// 1/2 message, when no QoS 0 message can make room and the client is
    /// not stalled; the client is then congested (see `session::pressure`).
    fn enqueue_online(&mut self, d: Delivery) {
        let bound = self.session.queue_len_max as usize;
        let session = &mut self.session;
        if session.queue.len() < bound
            || d.qos == QoS::AtMostOnce
            || session.queue_qos0_len > 0
            || self.pressure == Pressure::Stalled
            || self.cfg.max_publisher_hold_ms == 0
        {
            return session.enqueue(d);
        }
        self.pressure = Pressure::Congested;
        session.enqueue_within(d, pressure::queue_len_hard_max(bound));
    }

    /// Whether the queue is past its bound while the client still counts
    /// as reading: the shard pauses the publishers of what it delivers.
    pub fn is_congested(&self) -> bool {
        self.pressure == Pressure::Congested && !self.closed
    }

    /// True once when a congested (or stalled) client's queue is back at
    /// half its bound: the shard then resumes the publishers it paused.
    /// Call after `poll_transmit`, which is where the queue drains.
    pub fn poll_relieved(&mut self) -> bool {
        if self.pressure == Pressure::Free
            || self.session.queue.len() > pressure::resume_len(self.session.queue_len_max as usize)
        {
            return false;
        }
        self.pressure = Pressure::Free;
        true
    }

    /// A congested client made no progress for the hold time: it holds
    /// nobody back any more, and its queue is bounded by
    /// `max_mqueue_len` again (new messages are dropped and counted) until
    /// it drains to half of it.
    pub fn stall(&mut self) {
        if self.pressure == Pressure::Congested {
            self.pressure = Pressure::Stalled;
        }
    }

    /// Grows whenever the outbound window takes a new QoS 1/2 message, which
    /// for a congested client means an acknowledgement freed a slot: what
    /// `pressure::StallClock` watches.
    pub fn progress(&self) -> u64 {
        self.session.next_seq
    }

    /// The shard stops reading a paused publisher's socket, so the client
    /// may have sent packets (PINGREQ) that were not read: its keep-alive
    /// counts from the end of the pause.
    pub fn handle_resumed(&mut self, now: Instant) {
        if !self.closed {
            self.last_now = now;
            self.last_rx_at = now;
        }
    }

    /// Same as [`Connection::handle_delivery`]: named for the call site in
    /// the shard that feeds retained messages after [`Action::Subscribe`].
    pub fn handle_retained(&mut self, mut d: Delivery, now: Instant) {
        d.retain = true;
        self.handle_delivery(d, now);
    }

    /// Encodes the next packet to send to the client into `out` and returns
    /// true, or returns false when there is nothing to send (sans-IO: the
    /// shard calls it in a loop and writes `out` to the socket). A PUBLISH
    /// larger than the client's Maximum Packet Size is dropped and counted
    /// (QoS > 0 ones count as completed, MQTT-3.1.2-25); other packets lose
    /// Reason String and User Properties first, and if still too large are
    /// dropped and the connection closed with 0x95. Outbound topic aliases
    /// are applied here, in write order.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> bool {
        if now > self.last_now && !self.closed {
            self.last_now = now;
        }
        loop {
            if self.tx.is_empty() {
                self.drain(now);
            }
            let Some(tx) = self.tx.pop_front() else {
                return false;
            };
            match tx {
                Tx::Ack(kind, id, reason) => {
                    if self.client_packet_size_max >= 6 {
                        codec::encode_short_ack(kind, id, reason, self.protocol, out);
                        return true;
                    }
                    let a = ack(id, reason);
                    let packet = match kind {
                        AckKind::PubAck => Packet::PubAck(a),
                        AckKind::PubRec => Packet::PubRec(a),
                        AckKind::PubRel => Packet::PubRel(a),
                        AckKind::PubComp => Packet::PubComp(a),
                    };
                    if self.put_control(packet, out) {
                        return true;
                    }
                }
                Tx::Control(packet) => {
                    if self.put_control(*packet, out) {
                        return true;
                    }
                }
                Tx::Qos0(d) => {
                    self.tx_qos0_len -= 1;
                    if is_expired(&d, now) {
                        self.session.drops.expired += 1;
                        continue;
                    }
                    match self.put_publish(&d, 0, false, now, out) {
                        Some(new_alias) => {
                            self.commit_alias(new_alias);
                            return true;
                        }
                        None => self.session.drops.too_large += 1,
                    }
                }
                Tx::Publish(id) => {
                    let Some(o) = self.session.inflight.get(&id) else {
                        continue; // completed before it was written (bogus ack)
                    };
                    if o.state == Awaiting::PubComp {
                        continue;
                    }
                    // Once transmitted, onward delivery has started
                    // (MQTT-3.3.2-5 deletes only messages not yet started),
                    // and the client may hold QoS 2 state for this id: the
                    // resend must happen even if the message has expired.
                    let transmitted = o.transmitted;
                    if !transmitted && is_expired(&o.delivery, now) {
                        self.session.drops.expired += 1;
                        self.complete(id);
                        continue;
                    }
                    let Some(new_alias) = self.put_publish(&o.delivery, id, transmitted, now, out)
                    else {
                        self.drop_too_large(id, transmitted);
                        continue;
                    };
                    self.commit_alias(new_alias);
                    self.session
                        .inflight
                        .get_mut(&id)
                        .expect("read above")
                        .transmitted = true;
                    return true;
                }
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

    /// Server-initiated end (takeover 0x8E, shutdown 0x8B, admin 0x98):
    /// queues DISCONNECT with that reason (v5 only) and `Action::Close` with
    /// `will = true`: the client did not disconnect normally. For a takeover
    /// prefer [`Connection::takeover`], which applies the will delay rules.
    pub fn kick(&mut self, reason: ReasonCode) {
        self.close(reason, true, true, None);
    }

    /// An administrator's kick (`DELETE /api/v5/clients/{clientid}`):
    /// `kick` with `reason` (0x98 Administrative action), and the session
    /// ends with the connection whatever its expiry interval, so the will
    /// (if any) goes out with no delay. On a connection already closing,
    /// only the session's end is added.
    pub fn kick_ending_session(&mut self, reason: ReasonCode) {
        self.session.expiry_interval_s = 0;
        self.kick(reason);
    }

    /// The server is stopping, which ends every session: the will, if any,
    /// is due now whatever its delay (MQTT-3.1.3-9) and is returned for
    /// the shard to publish before it disconnects anyone, so that clients
    /// still connected on any shard receive it. The connection stays open
    /// (`kick_after_queued` closes it).
    pub fn take_will_at_stop(&mut self) -> Option<Arc<Message>> {
        if self.closed || self.will().is_none() {
            return None;
        }
        self.will_delay_zero = true;
        self.publish_will = true;
        self.take_will().map(|(will, _)| will)
    }

    /// `kick` for a stopping server: what is already queued for the client
    /// (the wills of the other clients among it) is sent before the
    /// DISCONNECT instead of being left in the session.
    pub fn kick_after_queued(&mut self, reason: ReasonCode) {
        if self.closed {
            return;
        }
        let queued = std::mem::take(&mut self.tx);
        let qos0 = self.tx_qos0_len;
        self.kick(reason);
        let mut disconnect = std::mem::replace(&mut self.tx, queued);
        self.tx.extend(disconnect.drain(..));
        self.tx_qos0_len = qos0;
    }

    /// Session takeover by a new connection for the same client id:
    /// `kick(0x8E)` with the will rules of MQTT 5.0 sections 3.1.3.2.2 and
    /// 3.1.4. The will is published only when the session ends now or the
    /// will has no delay:
    /// - new connection with Clean Start: the old session ends, so the will
    ///   goes out now (delay 0), whatever its delay;
    /// - new connection resuming the session: a will with a (session-capped)
    ///   delay > 0 is discarded, since a new connection arrived before the
    ///   delay passed (MQTT-3.1.3-9); a will with no delay goes out now.
    ///
    /// The shard applies the same rule to a will still pending from an
    /// earlier connection when the client reconnects.
    pub fn takeover(&mut self, new_clean_start: bool) {
        if !self.closed {
            if new_clean_start {
                self.will_delay_zero = true;
            } else if self.will_delay_s() > 0 {
                self.drop_will();
            }
        }
        self.kick(ReasonCode::SESSION_TAKEN_OVER);
    }

    /// The socket is gone (read EOF or error) without a DISCONNECT: the will
    /// must be published. Emits `Action::Close` (reason 0x80, nothing sent)
    /// so every connection ends with exactly one Close.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.last_now = now;
        self.close(ReasonCode::UNSPECIFIED_ERROR, true, false, None);
    }

    /// After Close: the will to publish, if any, with its delay (Will Delay
    /// Interval min()'d with the session expiry; 0 when the session ends
    /// with the connection, MQTT-3.1.3-9). Its Message Expiry counts from
    /// the moment the will is due (close + delay). A will whose topic the
    /// authorization rules deny for publishing is dropped here (EMQX checks
    /// the will when it is published, not at CONNECT).
    pub fn take_will(&mut self) -> Option<(Arc<Message>, Duration)> {
        if !self.publish_will {
            return None;
        }
        let delay_s = self.will_delay_s();
        let will = self.extras.as_mut()?.will.take()?;
        self.publish_will = false;
        if !self.may_publish(&will.topic) {
            return None;
        }
        let delay = Duration::from_secs(u64::from(delay_s));
        let p = will.properties;
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain && self.cfg.retain_available,
            expires_at: p
                .message_expiry_interval_s
                .map(|s| self.last_now + delay + Duration::from_secs(u64::from(s))),
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval_s: p.message_expiry_interval_s,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..PublishProperties::default()
            }
            .boxed(),
            origin: Some(Origin::new(&self.session.client_id)),
        };
        Some((Arc::new(message), delay))
    }

    /// Consumes the connection, keeping the session if it outlives the
    /// connection (Session Expiry Interval > 0); `None` if it ends now.
    /// QoS 1/2 messages not yet acknowledged stay in the session and are
    /// resent on resume.
    pub fn into_session(self) -> Option<Session> {
        (self.session.expiry_interval_s > 0).then_some(self.session)
    }

    // ---- internals ----

    fn is_v5(&self) -> bool {
        self.protocol.is_v5()
    }

    fn who(&self) -> Who<'_> {
        Who {
            client_id: &self.session.client_id,
            username: self.extras.as_ref().and_then(|e| e.username.as_deref()),
        }
    }

    /// Whether this client may publish to `topic` (a PUBLISH or the will):
    /// not to `$share` names, which no subscription can match, nor to the
    /// server's `$SYS` tree unless `allow_publish_sys` (MQTT 5.0 section
    /// 4.7.2: a server SHOULD prevent clients from using such names), and
    /// only where the authorization rules allow it. A refusal here is
    /// handled as an authorization denial (`refuse_publish`, `take_will`).
    fn may_publish(&self, topic: &str) -> bool {
        if is_share_topic(topic) || (!self.cfg.allow_publish_sys && is_sys_topic(topic)) {
            return false;
        }
        self.cfg
            .authz
            .as_ref()
            .is_none_or(|authz| authz.check_publish(&self.who(), topic))
    }

    /// Whether the authorization rules let this client subscribe to
    /// `filter`.
    fn may_subscribe(&self, filter: &str) -> bool {
        self.cfg
            .authz
            .as_ref()
            .is_none_or(|authz| authz.check_subscribe(&self.who(), filter))
    }

    /// The v5 reason code of an authorization refusal.
    fn deny_reason_code(&self) -> ReasonCode {
        match self.cfg.authz_deny_reason {
            DenyReason::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
            DenyReason::UnspecifiedError => ReasonCode::UNSPECIFIED_ERROR,
        }
    }

    /// A PUBLISH the rules deny: never routed. `Ignore` acknowledges it (v5
    /// with 0x87 Not authorized; v3.1.1 cannot refuse, so as usual, and its
    /// QoS 2 PUBREL then gets PUBCOMP like any other); `Disconnect` closes
    /// the connection.
    fn refuse_publish(&mut self, qos: QoS, packet_id: u16) {
        if self.cfg.authz_deny_action == DenyAction::Disconnect {
            return self.close_error(self.deny_reason_code(), "not authorized");
        }
        let reason = if self.is_v5() {
            self.deny_reason_code()
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self
                .tx
                .push_back(Tx::Ack(AckKind::PubAck, packet_id, reason)),
            QoS::ExactlyOnce => self
                .tx
                .push_back(Tx::Ack(AckKind::PubRec, packet_id, reason)),
        }
    }

    /// A PUBLISH whose topic has more than `max_topic_levels` levels: never
    /// routed. v5 QoS 1/2 are refused with PUBACK/PUBREC 0x90 (Topic Name
    /// invalid) and the connection stays; where no acknowledgement can
    /// carry a refusal (v5 QoS 0, any 3.1.1 PUBLISH) the connection closes
    /// (v5: DISCONNECT 0x90; EMQX closes for every such PUBLISH) rather than
    /// let the client believe the message went out.
    fn refuse_topic_levels(&mut self, qos: QoS, packet_id: u16) {
        let kind = match qos {
            QoS::AtLeastOnce if self.is_v5() => AckKind::PubAck,
            QoS::ExactlyOnce if self.is_v5() => AckKind::PubRec,
            _ => return self.close_error(ReasonCode::TOPIC_NAME_INVALID, "too many topic levels"),
        };
        self.tx
            .push_back(Tx::Ack(kind, packet_id, ReasonCode::TOPIC_NAME_INVALID));
    }

    fn will_delay_s(&self) -> u32 {
        match self.will() {
            Some(_) if self.will_delay_zero => 0,
            Some(w) => w
                .properties
                .will_delay_interval_s
                .unwrap_or(0)
                .min(self.session.expiry_interval_s),
            None => 0,
        }
    }

    fn out_state(&self, id: u16) -> Option<Awaiting> {
        self.session.inflight.get(&id).map(|o| o.state)
    }

    /// Room in the outbound window. Messages in the resend backlog hold ids
    /// but not yet window slots.
    fn has_window(&self) -> bool {
        self.session
            .inflight
            .len()
            .saturating_sub(self.resend.len())
            < usize::from(self.window_len)
    }

    /// A QoS 1/2 PUBLISH larger than the client's Maximum Packet Size: not
    /// sent, and the flow behaves as completed (MQTT-3.1.2-25). A message
    /// transmitted before (on a connection that allowed larger packets)
    /// counts as delivered, not dropped; for QoS 2 it gets a PUBREL instead,
    /// so a client holding its packet id (awaiting PUBREL) releases it and
    /// cannot mistake a later message with that id for a duplicate.
    fn drop_too_large(&mut self, id: u16, transmitted: bool) {
        if !transmitted {
            self.session.drops.too_large += 1;
            return self.complete(id);
        }
        let o = self.session.inflight.get_mut(&id).expect("inflight");
        if o.state == Awaiting::PubRec {
            o.state = Awaiting::PubComp;
            let rel = pubrel(id, ReasonCode::SUCCESS);
            self.tx.push_front(rel);
        } else {
            self.complete(id);
        }
    }

    /// Ends an outbound QoS 1/2 flow: frees its id and window slot.
    fn complete(&mut self, id: u16) {
        self.session.inflight.remove(&id);
        self.unbacklog(id);
    }

    fn unbacklog(&mut self, id: u16) {
        if !self.resend.is_empty() {
            self.resend.retain(|&r| r != id);
        }
    }

    /// Moves resends, then queued messages, to the transmit queue as far as
    /// the window and the QoS 0 bound allow, in order: the first message
    /// that has to wait blocks the ones behind it.
    fn drain(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        while let Some(&id) = self.resend.front() {
            if !self.has_window() {
                return;
            }
            self.resend.pop_front();
            self.tx.push_back(Tx::Publish(id));
        }
        while let Some(d) = self.session.queue.front() {
            if is_expired(d, now) {
                self.session.queue_pop_front();
                self.session.drops.expired += 1;
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                if self.tx_qos0_len as usize >= TX_QOS0_MAX {
                    return;
                }
                let d = self.session.queue_pop_front().expect("front exists");
                self.tx_qos0_len += 1;
                self.tx.push_back(Tx::Qos0(d));
            } else {
                if !self.has_window() {
                    return;
                }
                let d = self.session.queue_pop_front().expect("front exists");
                let id = self.session.insert_inflight(d);
                self.tx.push_back(Tx::Publish(id));
            }
        }
    }

    /// Encodes the outbound PUBLISH for `d` into `out`, straight from the
    /// shared message and this delivery's fields (no `Publish` value, no
    /// reference counts taken). `Some(alias it would establish)` when
    /// written (committed by the caller once the packet is sent), `None`
    /// when it exceeds the client's Maximum Packet Size (nothing written).
    fn put_publish(
        &self,
        d: &Delivery,
        packet_id: u16,
        dup: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Option<Option<(ByteStr, u16)>> {
        let m = &*d.message;
        let mut topic: &str = &m.topic;
        let mut new_alias = None;
        // Only built when this delivery adds a property of its own.
        let own_properties;
        let mut properties = None;
        if self.is_v5() {
            let mut topic_alias = None;
            if self.alias_out_max > 0 {
                if let Some(&a) = self.aliases.outbound.get(&m.topic) {
                    topic_alias = Some(a);
                    topic = "";
                } else if self.aliases.outbound.len() < self.alias_out_max as usize {
                    let a = self.aliases.outbound.len() as u16 + 1;
                    topic_alias = Some(a);
                    new_alias = Some((m.topic.clone(), a));
                }
            }
            let message_expiry_interval_s = m.expires_at.map(|at| remaining_s(at, now));
            if message_expiry_interval_s.is_none()
                && topic_alias.is_none()
                && d.subscription_ids.is_empty()
            {
                // The common case: the message's own properties, if any.
                properties = m.properties.as_deref();
            } else {
                let mp = m.properties();
                own_properties = PublishProperties {
                    payload_format_indicator: mp.payload_format_indicator,
                    message_expiry_interval_s,
                    topic_alias,
                    response_topic: mp.response_topic.clone(),
                    correlation_data: mp.correlation_data.clone(),
                    user_properties: mp.user_properties.clone(),
                    subscription_identifiers: d.subscription_ids.clone(),
                    content_type: mp.content_type.clone(),
                };
                properties = Some(&own_properties);
            }
        }
        let publish = PublishRef {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            payload: &m.payload,
            properties,
        };
        match codec::encode_publish(
            &publish,
            self.protocol,
            self.client_packet_size_max as usize,
            out,
        ) {
            Ok(true) => Some(new_alias),
            Ok(false) => None,
            Err(e) => {
                // A routed message was validated on the way in; this would be
                // a bug, and the message is dropped rather than sent broken.
                tracing::warn!(error = %e, "cannot encode an outbound PUBLISH");
                None
            }
        }
    }

    fn commit_alias(&mut self, new_alias: Option<(ByteStr, u16)>) {
        if let Some((topic, alias)) = new_alias {
            self.aliases.outbound.insert(topic, alias);
        }
    }

    /// Encodes a non-PUBLISH packet into `out`, made to fit the client's
    /// Maximum Packet Size: Reason String and User Properties go first
    /// (MQTT-3.2.2-19/20 and the same rule on every ack); a packet still too
    /// large is not sent and the connection is closed with 0x95. False when
    /// nothing was written.
    fn put_control(&mut self, mut packet: Packet, out: &mut BytesMut) -> bool {
        let protocol = self.protocol;
        let fits =
            |p: &Packet, max: usize| max == usize::MAX || codec::encoded_len(p, protocol) <= max;
        if !fits(&packet, self.client_packet_size_max as usize) {
            match &mut packet {
                Packet::ConnAck(c) => {
                    c.properties.reason_string = None;
                    c.properties.user_properties.clear();
                }
                Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                    a.properties = AckProperties::default();
                }
                Packet::SubAck(s) => s.properties = AckProperties::default(),
                Packet::UnsubAck(u) => u.properties = AckProperties::default(),
                Packet::Disconnect(d) => {
                    d.properties.reason_string = None;
                    d.properties.user_properties.clear();
                }
                _ => {}
            }
            if !fits(&packet, self.client_packet_size_max as usize) {
                match packet {
                    // Nothing may precede the CONNACK (MQTT-3.2.0-1), so no
                    // DISCONNECT; and the connection was never accepted, so
                    // no will. `check_connack_fits` refuses such a CONNECT
                    // before it gets here.
                    Packet::ConnAck(_) => {
                        self.close(ReasonCode::PACKET_TOO_LARGE, false, false, None)
                    }
                    Packet::Disconnect(_) => {}
                    _ => self
                        .close_error(ReasonCode::PACKET_TOO_LARGE, "packet too large for client"),
                }
                return false;
            }
        }
        match codec::encode(&packet, self.protocol, out) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode {}", packet.kind());
                false
            }
        }
    }

    fn protocol_error(&mut self, why: &'static str) {
        self.close_error(ReasonCode::PROTOCOL_ERROR, why);
    }

    /// Closes for the client's fault: DISCONNECT (v5) with a short Reason
    /// String unless the client asked for no problem information, and the
    /// will is published.
    fn close_error(&mut self, reason: ReasonCode, why: &'static str) {
        self.close(reason, true, true, Some(why));
    }

    /// The one way a connection ends. Untransmitted QoS 1/2 PUBLISHes stay
    /// inflight in the session for the resume; untransmitted QoS 0 ones are
    /// dropped and counted. Control packets already queued (acks) are still
    /// flushed, before the DISCONNECT.
    fn close(
        &mut self,
        reason: ReasonCode,
        will: bool,
        send_disconnect: bool,
        why: Option<&'static str>,
    ) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.publish_will = will && self.will().is_some();
        if !will {
            self.drop_will();
        }
        let drops = &mut self.session.drops;
        self.tx.retain(|t| match t {
            Tx::Ack(..) | Tx::Control(_) => true,
            Tx::Publish(_) => false,
            Tx::Qos0(_) => {
                drops.closed += 1;
                false
            }
        });
        self.tx_qos0_len = 0;
        self.resend.clear();
        if send_disconnect && self.is_v5() {
            let reason_string = why.filter(|_| self.problem_info).map(ByteStr::from_static);
            let disconnect = Disconnect {
                reason_code: reason,
                properties: DisconnectProperties {
                    reason_string,
                    ..DisconnectProperties::default()
                },
            };
            self.tx
                .push_back(Tx::Control(Box::new(Packet::Disconnect(Box::new(
                    disconnect,
                )))));
        }
        self.actions.push_back(Action::Close {
            reason,
            will: self.publish_will,
        });
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

/// Message Expiry Interval to send: the whole seconds left, rounded up so a
/// message still alive never goes out with 0.
fn remaining_s(expires_at: Instant, now: Instant) -> u32 {
    let left = expires_at.saturating_duration_since(now);
    let s = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    // An expired message is only ever resent (see poll_transmit); 1 keeps
    // it from reading as "expires immediately".
    s.clamp(1, u64::from(u32::MAX)) as u32
}

fn is_valid_filter(filter: &str) -> bool {
    match parse_shared(filter) {
        Ok(Some(_)) => true,
        Ok(None) => is_valid_topic_filter(filter),
        Err(_) => false,
    }
}
