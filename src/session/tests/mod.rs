//! Unit tests: a `Pair` drives one `Connection` with packets on a fake clock
//! and collects what it transmits and asks the shard to do.

mod authz;
mod connect;
mod end;
mod held;
mod inbound;
mod journal;
mod lifecycle;
mod outbound;
mod pressure;
mod protocol_errors;
mod resume;
mod shared;
mod sim;
mod store_quota;
mod subscriptions;
mod topics;
mod transmit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::codec::*;

pub(super) fn cfg() -> SessionConfig {
    SessionConfig {
        max_packet_size: 1 << 20,
        max_inflight: 16,
        max_mqueue_len: 100,
        // Off: most tests check the plain queue policy; `pressure` tests
        // turn it on.
        max_publisher_hold_ms: 0,
        max_session_expiry_interval_s: 3600,
        max_topic_alias: 10,
        server_keepalive_s: Some(60),
        retain_available: true,
        shared_subscription_available: true,
        wildcard_subscription_available: true,
        max_subscriptions: 0,
        max_client_id_len: 64,
        max_topic_levels: 128,
        allow_publish_sys: false,
        authz: None,
        authz_deny_action: crate::authz::DenyAction::Ignore,
        authz_deny_reason: crate::authz::DenyReason::NotAuthorized,
        authn: None,
    }
}

pub(super) fn connect_v5(id: &str) -> Connect {
    Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive_s: 30,
        client_id: ByteStr::from(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub(super) fn connect_v3(id: &str) -> Connect {
    Connect {
        protocol: Protocol::V311,
        ..connect_v5(id)
    }
}

pub(super) fn message(topic: &str, qos: QoS, payload: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: ByteStr::from(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: None,
        origin: None,
        expires_at: None,
        id: None,
    })
}

impl Message {
    pub(super) fn clone_for_test(m: &Message) -> Message {
        Message {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            origin: m.origin.clone(),
            expires_at: m.expires_at,
            id: m.id,
        }
    }
}

pub(super) fn delivery(topic: &str, qos: QoS, payload: &str) -> Delivery {
    Delivery {
        message: message(topic, qos, payload),
        qos,
        retain: false,
        subscription_ids: Default::default(),
        shared: None,
    }
}

pub(super) fn publish(topic: &str, qos: QoS, packet_id: u16, payload: &str) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        properties: None,
    })
}

pub(super) fn ack(packet_id: u16) -> PubAck {
    PubAck {
        packet_id,
        reason_code: ReasonCode::SUCCESS,
        properties: AckProperties::default(),
    }
}

/// The next packet `c` transmits, through the real encoder and decoder.
pub(super) fn transmit(c: &mut Connection, now: Instant) -> Option<Packet> {
    let mut out = BytesMut::new();
    if !c.poll_transmit(now, &mut out) {
        assert!(out.is_empty(), "bytes written for no packet");
        return None;
    }
    let packet = crate::codec::decode_any(&mut out, c.protocol(), u32::MAX)
        .expect("the connection encodes valid packets")
        .expect("one whole packet");
    assert!(out.is_empty(), "exactly one packet per poll_transmit");
    Some(packet)
}

/// One client seen from the broker side: its connection (while connected)
/// or its parked session (while offline), a fake clock, and everything the
/// connection transmitted and asked for since the last `take_*`.
pub(super) struct Pair {
    pub cfg: SessionConfig,
    pub now: Instant,
    pub conn: Option<Connection>,
    pub parked: Option<Session>,
    pub sent: Vec<Packet>,
    pub actions: Vec<Action>,
    pub wills: Vec<(Arc<Message>, Duration)>,
    /// What `Connection::take_shared_undelivered` gave at the close.
    pub redispatched: Vec<Delivery>,
}

impl Pair {
    pub fn new(cfg: SessionConfig) -> Pair {
        Pair {
            cfg,
            now: Instant::now(),
            conn: None,
            parked: None,
            sent: Vec::new(),
            actions: Vec::new(),
            wills: Vec::new(),
            redispatched: Vec::new(),
        }
    }

    /// Connects (check + accept, resuming any parked session) and pumps.
    pub fn connect(&mut self, c: Connect) -> ConnAck {
        assert!(self.conn.is_none(), "already connected");
        if let Err(refusal) = Connection::check_connect(&c, &self.cfg) {
            return refusal;
        }
        let assigned = c.client_id.is_empty();
        let id = if assigned {
            ByteStr::from("assigned-1")
        } else {
            c.client_id.clone()
        };
        let assigned_id = assigned.then_some(&id);
        if let Err(refusal) = Connection::check_connack_fits(&c, &self.cfg, assigned_id) {
            // Tests of a refusal that cannot be sent at all call
            // `check_connack_fits` themselves.
            return refusal.expect("a refusal CONNACK that fits");
        }
        let existing = self.parked.take();
        let start = self.sent.len();
        self.conn = Some(Connection::accept(
            c,
            id,
            assigned,
            existing,
            &Arc::new(self.cfg.clone()),
            self.now,
        ));
        self.pump();
        match self.sent.remove(start) {
            Packet::ConnAck(ack) => *ack,
            other => panic!("first packet is not CONNACK: {other:?}"),
        }
    }

    pub fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connected")
    }

    /// Client packet in, then pump.
    pub fn send(&mut self, p: Packet) {
        let now = self.now;
        self.conn().handle_packet(p, now);
        self.pump();
    }

    pub fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match &mut self.conn {
            Some(c) => c.handle_delivery(d, now),
            None => self
                .parked
                .as_mut()
                .expect("a session")
                .deliver_offline(d, now),
        }
        self.pump();
    }

    /// Everything the connection has to send and do, as the shard would.
    /// Closes (parks the session, takes the will) after Action::Close.
    pub fn pump(&mut self) {
        let now = self.now;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        while let Some(p) = transmit(conn, now) {
            self.sent.push(p);
        }
        let mut closed = false;
        while let Some(a) = conn.poll_action() {
            closed |= matches!(a, Action::Close { .. });
            self.actions.push(a);
        }
        if closed {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let mut conn = self.conn.take().expect("connected");
        if let Some(w) = conn.take_will() {
            self.wills.push(w);
        }
        self.redispatched.extend(conn.take_shared_undelivered());
        self.parked = conn.into_session();
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        if let Some(c) = &mut self.conn {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        self.pump();
    }

    pub fn lose(&mut self) {
        let now = self.now;
        self.conn().handle_connection_lost(now);
        self.pump();
    }

    pub fn take_sent(&mut self) -> Vec<Packet> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn publishes(&mut self) -> Vec<Publish> {
        self.take_sent()
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p,
                other => panic!("expected PUBLISH, got {other:?}"),
            })
            .collect()
    }
}

// Helpers shared by the authorization and topic-limit tests.

pub(super) fn suback_codes(p: &mut Pair) -> Vec<ReasonCode> {
    match p.take_sent().as_slice() {
        [Packet::SubAck(s)] => s.reason_codes.clone(),
        other => panic!("expected one SUBACK, got {other:?}"),
    }
}

pub(super) fn subscribed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Subscribe { filter, .. } => Some(filter.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn routed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(m) => Some(m.topic.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn with_will(mut c: Connect, topic: &str) -> Connect {
    c.will = Some(Will {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c
}

pub(super) fn sub(filter: &str, qos: QoS) -> (ByteStr, SubscriptionOptions) {
    (
        ByteStr::from(filter),
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    )
}

pub(super) fn subscribe(packet_id: u16, filters: Vec<(ByteStr, SubscriptionOptions)>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters,
        properties: SubscribeProperties::default(),
    })
}

pub(super) fn disconnect(code: ReasonCode) -> Packet {
    Packet::Disconnect(Box::new(Disconnect {
        reason_code: code,
        properties: DisconnectProperties::default(),
    }))
}

pub(super) fn pair_v5() -> Pair {
    let mut p = Pair::new(cfg());
    p.connect(connect_v5("c1"));
    p
}

pub(super) fn pair_v3() -> Pair {
    let mut p = Pair::new(cfg());
    p.connect(connect_v3("c1"));
    p
}

pub(super) fn with_props(mut c: Connect, f: impl FnOnce(&mut ConnectProperties)) -> Connect {
    f(&mut c.properties);
    c
}

pub(super) fn persistent_v5(id: &str) -> Connect {
    let mut c = with_props(connect_v5(id), |p| p.session_expiry_interval_s = Some(600));
    c.clean_start = false;
    c
}

pub(super) fn close_of(actions: &[Action]) -> (ReasonCode, bool) {
    let closes: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { reason, will } => Some((*reason, *will)),
            _ => None,
        })
        .collect();
    assert_eq!(closes.len(), 1, "exactly one Close: {actions:?}");
    closes[0]
}

pub(super) fn disconnect_sent(sent: &[Packet]) -> Option<&Disconnect> {
    match sent.last() {
        Some(Packet::Disconnect(d)) => Some(d),
        _ => None,
    }
}

pub(super) fn queued_payloads(s: &Session) -> Vec<String> {
    s.queue
        .iter()
        .map(|(_, d)| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect()
}

/// Every delivery is built, moved into the targets list, the connection's
/// queue or window, and dropped: its size is paid per message per
/// subscriber (docs/performance.md, "Publish path after issue 12's parts").
#[test]
fn delivery_is_at_most_40_bytes() {
    assert!(std::mem::size_of::<Delivery>() <= 40);
}
