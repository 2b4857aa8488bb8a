use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::smallvec;

use super::*;
use crate::codec::*;

fn sub(filter: &str, qos: QoS) -> (ByteStr, SubscriptionOptions) {
    (
        ByteStr::from(filter),
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    )
}

fn subscribe(packet_id: u16, filters: Vec<(ByteStr, SubscriptionOptions)>) -> Packet {
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

fn pair_v5() -> Pair {
    let mut p = Pair::new(cfg());
    p.connect(connect_v5("c1"));
    p
}

fn pair_v3() -> Pair {
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

fn close_of(actions: &[Action]) -> (ReasonCode, bool) {
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

fn disconnect_sent(sent: &[Packet]) -> Option<&Disconnect> {
    match sent.last() {
        Some(Packet::Disconnect(d)) => Some(d),
        _ => None,
    }
}

// ---- CONNECT / CONNACK ----

#[test]
fn connack_v5_announces_limits() {
    let mut p = Pair::new(cfg());
    let ack = p.connect(connect_v5("c1"));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    let pr = &ack.properties;
    assert_eq!(pr.receive_maximum, Some(16));
    assert_eq!(pr.maximum_packet_size, Some(1 << 20));
    assert_eq!(pr.topic_alias_maximum, Some(10));
    // Available features are not announced: absent means available.
    assert_eq!(pr.retain_available, None);
    assert_eq!(pr.wildcard_subscription_available, None);
    assert_eq!(pr.shared_subscription_available, None);
    assert_eq!(pr.subscription_identifiers_available, None);
    assert_eq!(pr.server_keep_alive_s, None);
    assert_eq!(pr.session_expiry_interval_s, None);
    assert_eq!(pr.assigned_client_identifier, None);
    assert_eq!(pr.maximum_qos, None);
}

/// What the admin API reads of a connection besides its session: Clean
/// Start as CONNECT set it, and the socket's descriptor once the shard set it.
#[test]
fn connection_keeps_clean_start_and_socket_fd_for_the_admin_api() {
    for clean_start in [true, false] {
        let mut p = Pair::new(cfg());
        p.connect(Connect {
            clean_start,
            ..connect_v5("c1")
        });
        assert_eq!(p.conn().clean_start(), clean_start);
        assert_eq!(p.conn().socket_fd(), None);
        p.conn().set_socket_fd(7);
        assert_eq!(p.conn().socket_fd(), Some(7));
    }
}

#[test]
fn connack_v3_has_no_properties() {
    let mut p = Pair::new(cfg());
    let ack = p.connect(connect_v3("c1"));
    assert_eq!(ack.reason_code, connack_v3::ACCEPTED);
    assert_eq!(ack.properties, ConnAckProperties::default());
}

#[test]
fn assigned_client_identifier_v5() {
    let mut p = Pair::new(cfg());
    let mut c = connect_v5("");
    c.clean_start = false; // allowed on v5
    let ack = p.connect(c);
    assert_eq!(
        ack.properties.assigned_client_identifier.as_deref(),
        Some("assigned-1")
    );
    assert_eq!(p.conn().client_id(), "assigned-1");
}

#[test]
fn server_keep_alive_caps() {
    for (asked, used, announced) in [
        (120, 60, Some(60)),
        (0, 60, Some(60)),
        (30, 30, None),
        (60, 60, None),
    ] {
        let mut p = Pair::new(cfg());
        let mut c = connect_v5("c1");
        c.keep_alive_s = asked;
        let ack = p.connect(c);
        assert_eq!(
            ack.properties.server_keep_alive_s, announced,
            "asked {asked}"
        );
        assert_eq!(p.conn().keep_alive_s(), used);
    }
    // 3.1.1 cannot be told: the client's value stands.
    let mut p = Pair::new(cfg());
    let mut c = connect_v3("c1");
    c.keep_alive_s = 120;
    p.connect(c);
    assert_eq!(p.conn().keep_alive_s(), 120);
}

#[test]
fn session_expiry_capped_and_announced() {
    let mut p = Pair::new(cfg());
    let ack = p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(u32::MAX)
    }));
    assert_eq!(ack.properties.session_expiry_interval_s, Some(3600));
    assert_eq!(p.conn().session().expiry_interval_s(), 3600);

    let mut p = Pair::new(cfg());
    let ack = p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(10)
    }));
    assert_eq!(ack.properties.session_expiry_interval_s, None);
    assert_eq!(p.conn().session().expiry_interval_s(), 10);
}

#[test]
fn check_connect_refusals() {
    let c = cfg();
    let refused = |conn: Connect| {
        Connection::check_connect(&conn, &c)
            .unwrap_err()
            .reason_code
    };

    let mut v3_empty = connect_v3("");
    v3_empty.clean_start = false;
    assert_eq!(refused(v3_empty), connack_v3::IDENTIFIER_REJECTED);
    assert!(Connection::check_connect(&connect_v3(""), &c).is_ok());
    let mut v5_empty = connect_v5("");
    v5_empty.clean_start = false;
    assert!(Connection::check_connect(&v5_empty, &c).is_ok());

    let long = "x".repeat(65);
    assert_eq!(
        refused(connect_v5(&long)),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    assert_eq!(refused(connect_v3(&long)), connack_v3::IDENTIFIER_REJECTED);
    assert_eq!(
        refused(connect_v5("a\nb")),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );

    let auth = with_props(connect_v5("c"), |p| {
        p.authentication_method = Some(ByteStr::from("SCRAM"))
    });
    assert_eq!(refused(auth), ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(
        refused(with_props(connect_v5("c"), |p| p.receive_maximum = Some(0))),
        ReasonCode::PROTOCOL_ERROR
    );

    let will = |topic: &str, retain: bool| Will {
        topic: ByteStr::from(topic),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain,
        properties: WillProperties::default(),
    };
    let mut w = connect_v5("c");
    w.will = Some(will("a/#", false));
    assert_eq!(refused(w), ReasonCode::TOPIC_NAME_INVALID);
    let mut w = connect_v3("c");
    w.will = Some(will("a/+", false));
    assert_eq!(refused(w), connack_v3::NOT_AUTHORIZED);

    let no_retain = SessionConfig {
        retain_available: false,
        ..cfg()
    };
    let mut w = connect_v5("c");
    w.will = Some(will("a", true));
    assert_eq!(
        Connection::check_connect(&w, &no_retain)
            .unwrap_err()
            .reason_code,
        ReasonCode::RETAIN_NOT_SUPPORTED
    );
    let mut w = connect_v3("c");
    w.will = Some(will("a", true));
    assert!(Connection::check_connect(&w, &no_retain).is_ok());
}

#[test]
fn second_connect_is_protocol_error() {
    let mut p = pair_v5();
    p.send(Packet::Connect(Box::new(connect_v5("c1"))));
    let d = disconnect_sent(&p.sent).expect("DISCONNECT").clone();
    assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR);
    assert!(d.properties.reason_string.is_some());
    assert_eq!(close_of(&p.actions), (ReasonCode::PROTOCOL_ERROR, false));
    assert!(p.conn.is_none());
}

#[test]
fn no_reason_string_when_problem_information_off() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.request_problem_information = Some(0)
    }));
    p.send(Packet::Auth(Box::default()));
    let d = disconnect_sent(&p.sent).expect("DISCONNECT");
    assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(d.properties.reason_string, None);
}

#[test]
fn v3_protocol_error_closes_without_disconnect() {
    let mut p = pair_v3();
    p.send(Packet::Connect(Box::new(connect_v3("c1"))));
    assert!(p.sent.is_empty(), "{:?}", p.sent);
    assert_eq!(close_of(&p.actions).0, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn pingreq_gets_pingresp() {
    let mut p = pair_v5();
    p.send(Packet::PingReq);
    assert_eq!(p.take_sent(), vec![Packet::PingResp]);
}

#[test]
fn server_only_packet_from_client_is_protocol_error() {
    let mut p = pair_v5();
    p.send(Packet::PingResp);
    assert_eq!(close_of(&p.actions).0, ReasonCode::PROTOCOL_ERROR);
}

// ---- inbound PUBLISH ----

fn routed(actions: &[Action]) -> Vec<Arc<Message>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn inbound_qos0_routes_without_ack() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::AtMostOnce, 0, "x"));
    assert!(p.sent.is_empty());
    let m = routed(&p.take_actions());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].topic, "a/b");
    assert_eq!(m[0].origin.as_deref(), Some("c1"));
}

#[test]
fn inbound_qos1_routes_and_acks() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::AtLeastOnce, 7, "x"));
    assert_eq!(p.take_sent(), vec![Packet::PubAck(ack(7))]);
    assert_eq!(routed(&p.take_actions()).len(), 1);
}

#[test]
fn inbound_qos2_exactly_once() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::ExactlyOnce, 9, "x"));
    assert_eq!(p.take_sent(), vec![Packet::PubRec(ack(9))]);
    assert_eq!(routed(&p.take_actions()).len(), 1);
    // A resend before PUBREL: acknowledged again, not routed again.
    let Packet::Publish(mut dup) = publish("a/b", QoS::ExactlyOnce, 9, "x") else {
        unreachable!()
    };
    dup.dup = true;
    p.send(Packet::Publish(dup));
    assert_eq!(p.take_sent(), vec![Packet::PubRec(ack(9))]);
    assert!(routed(&p.take_actions()).is_empty());
    p.send(Packet::PubRel(ack(9)));
    assert_eq!(p.take_sent(), vec![Packet::PubComp(ack(9))]);
    // Unknown PUBREL: 0x92 on v5.
    p.send(Packet::PubRel(ack(9)));
    let comp = PubAck {
        reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..ack(9)
    };
    assert_eq!(p.take_sent(), vec![Packet::PubComp(comp)]);
    // After PUBREL the id is free: the same id is a new message.
    p.send(publish("a/b", QoS::ExactlyOnce, 9, "y"));
    assert_eq!(routed(&p.take_actions()).len(), 1);
}

#[test]
fn inbound_qos2_unknown_pubrel_v3() {
    let mut p = pair_v3();
    p.send(Packet::PubRel(ack(5)));
    assert_eq!(p.take_sent(), vec![Packet::PubComp(ack(5))]);
}

#[test]
fn inbound_qos2_state_survives_resume() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert_eq!(routed(&p.take_actions()).len(), 1);
    p.lose();
    p.take_sent();
    p.take_actions();
    p.connect(persistent_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert!(
        routed(&p.take_actions()).is_empty(),
        "duplicate after resume is not routed"
    );
    p.send(Packet::PubRel(ack(3)));
    assert_eq!(p.take_sent().last(), Some(&Packet::PubComp(ack(3))));
}

#[test]
fn inbound_receive_maximum_exceeded() {
    let mut p = Pair::new(SessionConfig {
        max_inflight: 2,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 1, "x"));
    p.send(publish("a", QoS::ExactlyOnce, 2, "x"));
    assert!(p
        .take_actions()
        .iter()
        .all(|a| matches!(a, Action::Publish(_))));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
    );
    let actions = p.take_actions();
    assert_eq!(routed(&actions).len(), 0);
    assert_eq!(
        close_of(&actions),
        (ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, false)
    );
}

#[test]
fn inbound_qos2_v311_not_limited_by_receive_maximum() {
    // A v3.1.1 client was never told a Receive Maximum: it may keep more
    // QoS 2 messages unreleased than max_inflight without being disconnected.
    let mut p = Pair::new(SessionConfig {
        max_inflight: 2,
        ..cfg()
    });
    p.connect(connect_v3("c1"));
    for id in 1..=10 {
        p.send(publish("a", QoS::ExactlyOnce, id, "x"));
    }
    assert_eq!(routed(&p.take_actions()).len(), 10);
    assert!(disconnect_sent(&p.sent).is_none());
    p.send(Packet::PubRel(ack(7)));
    assert_eq!(p.take_sent().last(), Some(&Packet::PubComp(ack(7))));
}

#[test]
fn inbound_message_properties_and_expiry() {
    let mut p = pair_v5();
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.retain = true;
    publ.properties
        .get_or_insert_default()
        .message_expiry_interval_s = Some(10);
    publ.properties.get_or_insert_default().content_type = Some(ByteStr::from("text/plain"));
    publ.properties.get_or_insert_default().user_properties =
        vec![(ByteStr::from("k"), ByteStr::from("v"))];
    publ.properties.get_or_insert_default().topic_alias = Some(1);
    p.send(Packet::Publish(publ));
    let m = routed(&p.take_actions()).remove(0);
    assert!(m.retain);
    assert_eq!(m.expires_at, Some(p.now + Duration::from_secs(10)));
    assert_eq!(m.properties().content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.properties().topic_alias, None);
    assert_eq!(m.properties().user_properties.len(), 1);
}

#[test]
fn inbound_retain_when_unavailable() {
    let mut p = Pair::new(SessionConfig {
        retain_available: false,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.retain = true;
    p.send(Packet::Publish(publ));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::RETAIN_NOT_SUPPORTED
    );
}

#[test]
fn inbound_subscription_identifier_is_protocol_error() {
    let mut p = pair_v5();
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.properties
        .get_or_insert_default()
        .subscription_identifiers
        .push(3);
    p.send(Packet::Publish(publ));
    assert_eq!(close_of(&p.take_actions()).0, ReasonCode::PROTOCOL_ERROR);
}

// ---- inbound topic aliases ----

fn aliased(topic: &str, alias: u16) -> Packet {
    let Packet::Publish(mut publ) = publish(topic, QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.properties.get_or_insert_default().topic_alias = Some(alias);
    Packet::Publish(publ)
}

#[test]
fn inbound_topic_alias_set_use_replace() {
    let mut p = pair_v5();
    p.send(aliased("a/b", 1));
    p.send(aliased("", 1));
    p.send(aliased("c/d", 1));
    p.send(aliased("", 1));
    p.send(aliased("e", 10));
    p.send(aliased("", 10));
    let topics: Vec<_> = routed(&p.take_actions())
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(topics, ["a/b", "a/b", "c/d", "c/d", "e", "e"]);
}

#[test]
fn inbound_topic_alias_errors() {
    for (packet, code) in [
        (aliased("a", 0), ReasonCode::TOPIC_ALIAS_INVALID),
        (aliased("a", 11), ReasonCode::TOPIC_ALIAS_INVALID),
        (aliased("", 2), ReasonCode::PROTOCOL_ERROR),
        (
            publish("", QoS::AtMostOnce, 0, "x"),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            publish("a/+", QoS::AtMostOnce, 0, "x"),
            ReasonCode::TOPIC_NAME_INVALID,
        ),
    ] {
        let mut p = pair_v5();
        p.send(packet.clone());
        assert_eq!(
            disconnect_sent(&p.sent).map(|d| d.reason_code),
            Some(code),
            "{packet:?}"
        );
        assert_eq!(close_of(&p.actions).0, code);
    }
    // No aliases announced: any alias is invalid.
    let mut p = Pair::new(SessionConfig {
        max_topic_alias: 0,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(aliased("a", 1));
    assert_eq!(close_of(&p.actions).0, ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn inbound_topic_aliases_reset_per_connection() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(aliased("a", 1));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    p.take_actions();
    p.connect(persistent_v5("c1"));
    p.send(aliased("", 1));
    assert_eq!(close_of(&p.actions).0, ReasonCode::PROTOCOL_ERROR);
}

// ---- outbound QoS ----

#[test]
fn outbound_qos1_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtLeastOnce, "m1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].qos, QoS::AtLeastOnce);
    assert!(!pubs[0].dup);
    assert_ne!(pubs[0].packet_id, 0);
    assert_eq!(p.conn().session().inflight_len(), 1);
    p.send(Packet::PubAck(ack(pubs[0].packet_id + 100))); // unknown: ignored
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().session().inflight_len(), 1);
    p.send(Packet::PubAck(ack(pubs[0].packet_id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn outbound_qos2_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::ExactlyOnce, "m1"));
    let id = p.publishes()[0].packet_id;
    p.send(Packet::PubRec(ack(id)));
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(id))]);
    p.send(Packet::PubRec(ack(id))); // repeated: PUBREL again
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(id))]);
    p.send(Packet::PubComp(ack(id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
    // Unknown PUBREC: PUBREL 0x92 (v5).
    p.send(Packet::PubRec(ack(77)));
    let rel = PubAck {
        reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..ack(77)
    };
    assert_eq!(p.take_sent(), vec![Packet::PubRel(rel)]);
}

#[test]
fn outbound_pubrec_error_ends_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::ExactlyOnce, "m1"));
    let id = p.publishes()[0].packet_id;
    p.send(Packet::PubRec(PubAck {
        reason_code: ReasonCode::QUOTA_EXCEEDED,
        ..ack(id)
    }));
    assert!(p.sent.is_empty(), "no PUBREL after an error PUBREC");
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn outbound_unknown_pubrec_ignored_v3() {
    let mut p = pair_v3();
    p.send(Packet::PubRec(ack(77)));
    assert!(p.sent.is_empty());
}

#[test]
fn outbound_qos0_has_no_packet_id() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtMostOnce, "m"));
    let pubs = p.publishes();
    assert_eq!((pubs[0].qos, pubs[0].packet_id), (QoS::AtMostOnce, 0));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    let first = p.publishes()[0].packet_id;
    // Force the allocator to wrap around onto ids in use.
    p.conn().session.next_packet_id = u16::MAX;
    for i in 0..3 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    let ids: Vec<u16> = p.publishes().iter().map(|x| x.packet_id).collect();
    assert_eq!(first, 1);
    assert_eq!(ids, [u16::MAX, 2, 3], "0 and the in-flight 1 are skipped");
}

#[test]
fn outbound_properties_passed_through_v5() {
    let mut p = pair_v5();
    let m = Arc::new(Message {
        topic: ByteStr::from("t"),
        payload: Bytes::from_static(b"p"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(999), // recomputed from expires_at
            content_type: Some(ByteStr::from("ct")),
            response_topic: Some(ByteStr::from("rt")),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![
                (ByteStr::from("a"), ByteStr::from("1")),
                (ByteStr::from("b"), ByteStr::from("2")),
            ],
            ..PublishProperties::default()
        }
        .boxed(),
        origin: Some(crate::session::Origin::new(&ByteStr::from("other"))),
        expires_at: Some(p.now + Duration::from_millis(4500)),
    });
    p.deliver(Delivery {
        message: m.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: smallvec![4, 9],
    });
    let out = p.publishes().remove(0);
    assert_eq!(out.qos, QoS::AtLeastOnce);
    assert!(!out.retain);
    assert_eq!(out.topic, "t");
    let pr = out.properties();
    assert_eq!(pr.payload_format_indicator, Some(1));
    assert_eq!(pr.message_expiry_interval_s, Some(5));
    assert_eq!(pr.content_type.as_deref(), Some("ct"));
    assert_eq!(pr.response_topic.as_deref(), Some("rt"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"cd"[..]));
    assert_eq!(pr.user_properties, m.properties().user_properties);
    assert_eq!(pr.subscription_identifiers.as_slice(), &[4, 9]);

    // 3.1.1: no properties at all.
    let mut p = pair_v3();
    p.deliver(Delivery {
        message: m,
        qos: QoS::AtLeastOnce,
        retain: true,
        subscription_ids: smallvec![4],
    });
    let out = p.publishes().remove(0);
    assert!(out.retain);
    assert!(out.properties.is_none());
}

// ---- flow control and queue ----

#[test]
fn outbound_window_is_client_receive_maximum() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(2)
    }));
    for i in 0..4 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    p.deliver(delivery("t", QoS::AtMostOnce, "q0"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 2, "window of 2");
    assert_eq!(
        p.conn().session().queued_len(),
        3,
        "QoS 0 waits behind the others (order)"
    );
    p.send(Packet::PubAck(ack(pubs[0].packet_id)));
    let more = p.publishes();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].payload, "2");
    p.send(Packet::PubAck(ack(pubs[1].packet_id)));
    p.send(Packet::PubAck(ack(more[0].packet_id)));
    let rest: Vec<_> = p.publishes().iter().map(|x| x.payload.clone()).collect();
    assert_eq!(rest, ["3", "q0"]);
}

#[test]
fn outbound_window_capped_by_config() {
    let mut p = Pair::new(SessionConfig {
        max_inflight: 3,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    for i in 0..5 {
        p.deliver(delivery("t", QoS::ExactlyOnce, &format!("{i}")));
    }
    assert_eq!(p.publishes().len(), 3);
    // QoS 0 does not use the window, but waits behind queued messages.
    assert_eq!(p.conn().session().queued_len(), 2);
}

#[test]
fn qos0_bypasses_full_window_when_queue_empty() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(1)
    }));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::AtMostOnce, "b"));
    assert_eq!(p.publishes().len(), 2);
}

fn fill_queue(p: &mut Pair, qos: &[QoS]) {
    for (i, q) in qos.iter().enumerate() {
        p.deliver(delivery("t", *q, &format!("{i}")));
    }
}

fn queued_payloads(s: &Session) -> Vec<String> {
    s.queue
        .iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect()
}

#[test]
fn queue_policy_drops_oldest_qos0_first() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 3,
        ..cfg()
    });
    p.connect(persistent_v5("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    use QoS::*;
    fill_queue(&mut p, &[AtLeastOnce, AtMostOnce, AtMostOnce]);
    p.deliver(delivery("t", ExactlyOnce, "new"));
    let s = p.parked.as_ref().unwrap();
    assert_eq!(queued_payloads(s), ["0", "2", "new"]);
    assert_eq!(s.dropped_messages(), 1);
    assert_eq!(s.drop_counts().queue_full, 1);
}

#[test]
fn queue_policy_drops_new_when_no_qos0() {
    use QoS::*;
    for new_qos in [AtMostOnce, AtLeastOnce, ExactlyOnce] {
        let mut p = Pair::new(SessionConfig {
            max_mqueue_len: 2,
            ..cfg()
        });
        p.connect(persistent_v5("c1"));
        p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
        fill_queue(&mut p, &[AtLeastOnce, ExactlyOnce]);
        p.deliver(delivery("t", new_qos, "new"));
        let s = p.parked.as_ref().unwrap();
        assert_eq!(queued_payloads(s), ["0", "1"], "{new_qos:?}");
        assert_eq!(s.dropped_messages(), 1);
    }
}

#[test]
fn queue_policy_online_behind_full_window() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 1,
        ..cfg()
    });
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(1)
    }));
    fill_queue(
        &mut p,
        &[QoS::AtLeastOnce, QoS::AtLeastOnce, QoS::AtLeastOnce],
    );
    assert_eq!(p.publishes().len(), 1);
    assert_eq!(p.conn().session().queued_len(), 1);
    assert_eq!(p.conn().dropped_messages(), 1);
}

#[test]
fn offline_qos0_is_queued_and_delivered_on_resume() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_some());
    fill_queue(
        &mut p,
        &[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce],
    );
    let ack = p.connect(persistent_v5("c1"));
    assert!(ack.session_present);
    let pubs = p.publishes();
    let got: Vec<_> = pubs
        .iter()
        .map(|x| (x.payload.clone(), x.qos, x.dup))
        .collect();
    assert_eq!(
        got,
        [
            (Bytes::from("0"), QoS::AtMostOnce, false),
            (Bytes::from("1"), QoS::AtLeastOnce, false),
            (Bytes::from("2"), QoS::ExactlyOnce, false)
        ]
    );
}

#[test]
fn qos0_transmit_queue_is_bounded() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 10,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    let now = p.now;
    // The shard does not poll (socket backed up).
    for i in 0..TX_QOS0_MAX + 20 {
        p.conn()
            .handle_delivery(delivery("t", QoS::AtMostOnce, &format!("{i}")), now);
    }
    assert_eq!(p.conn().session().queued_len(), 10);
    assert_eq!(p.conn().dropped_messages(), 10);
    p.pump();
    let pubs = p.publishes();
    assert_eq!(pubs.len(), TX_QOS0_MAX + 10);
    // Order kept: the transmit queue first, then the queue (newest 10 kept,
    // since each overflow dropped the oldest queued QoS 0).
    assert_eq!(
        pubs[TX_QOS0_MAX - 1].payload,
        format!("{}", TX_QOS0_MAX - 1)
    );
    assert_eq!(pubs[TX_QOS0_MAX].payload, format!("{}", TX_QOS0_MAX + 10));
}

// ---- resume ----

#[test]
fn resume_resends_in_original_order_with_dup() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "b"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "c"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "d"));
    let pubs = p.publishes();
    let ids: Vec<u16> = pubs.iter().map(|x| x.packet_id).collect();
    p.send(Packet::PubRec(ack(ids[1]))); // b -> PUBREC'd
    p.take_sent();
    p.send(Packet::PubAck(ack(ids[3]))); // d done
    p.lose();
    p.deliver(delivery("t", QoS::AtLeastOnce, "e")); // offline
    let ack = p.connect(persistent_v5("c1"));
    assert!(ack.session_present);
    let sent = p.take_sent();
    let expect = [
        Packet::Publish(Publish {
            dup: true,
            ..pubs[0].clone()
        }),
        Packet::PubRel(super::ack(ids[1])),
        Packet::Publish(Publish {
            dup: true,
            ..pubs[2].clone()
        }),
    ];
    assert_eq!(sent[..3], expect[..]);
    let Packet::Publish(e) = &sent[3] else {
        panic!("{sent:?}")
    };
    assert_eq!((e.payload.as_ref(), e.dup), (&b"e"[..], false));
    assert!(!ids.contains(&e.packet_id) || e.packet_id == ids[3]);
    assert_eq!(sent.len(), 4);
}

#[test]
fn resume_untransmitted_publish_has_no_dup() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "a"), now);
    p.lose(); // before the shard polled it out
    assert_eq!(p.parked.as_ref().unwrap().inflight_len(), 1);
    p.connect(persistent_v5("c1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert!(!pubs[0].dup);
}

#[test]
fn resume_respects_smaller_window() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    for i in 0..4 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    let first = p.publishes();
    p.lose();
    let mut c = persistent_v5("c1");
    c.properties.receive_maximum = Some(2);
    p.connect(c);
    let resent = p.publishes();
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|x| x.dup));
    p.send(Packet::PubAck(ack(resent[0].packet_id)));
    let next = p.publishes();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].packet_id, next[0].dup), (first[2].packet_id, true));
}

#[test]
fn clean_start_discards_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(subscribe(1, vec![sub("a", QoS::AtLeastOnce)]));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.lose();
    p.take_sent();
    let mut c = persistent_v5("c1");
    c.clean_start = true;
    let ack = p.connect(c);
    assert!(!ack.session_present);
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().session().subscriptions().count(), 0);
}

#[test]
fn v3_persistent_session() {
    let mut p = Pair::new(cfg());
    let mut c = connect_v3("c1");
    c.clean_start = false;
    p.connect(c.clone());
    assert_eq!(p.conn().session().expiry_interval_s(), 3600);
    p.send(subscribe(1, vec![sub("a", QoS::AtLeastOnce)]));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_some());
    assert!(p.connect(c).session_present);

    // Clean session 1: ends with the connection.
    let mut p = Pair::new(cfg());
    p.connect(connect_v3("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_none());
}

// ---- session expiry on DISCONNECT ----

#[test]
fn disconnect_changes_session_expiry() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(1)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(0);
    p.send(Packet::Disconnect(Box::new(d)));
    assert!(p.parked.is_none(), "expiry lowered to 0: session ends");

    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(1)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(99999);
    p.send(Packet::Disconnect(Box::new(d)));
    assert_eq!(
        p.parked.as_ref().unwrap().expiry_interval_s(),
        3600,
        "capped"
    );
}

#[test]
fn disconnect_cannot_raise_expiry_from_zero() {
    let mut p = pair_v5();
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(10);
    p.send(Packet::Disconnect(Box::new(d)));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::PROTOCOL_ERROR
    );
    assert!(p.parked.is_none());
}

// ---- keepalive ----

#[test]
fn keepalive_timeout_closes_with_will() {
    let mut p = Pair::new(cfg());
    let mut c = connect_v5("c1");
    c.keep_alive_s = 10;
    c.will = Some(Will {
        topic: ByteStr::from("will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    p.connect(c);
    let start = p.now;
    assert_eq!(
        p.conn().poll_timeout(),
        Some(start + Duration::from_secs(15))
    );
    p.advance(Duration::from_secs(14));
    p.send(Packet::PingReq); // resets the timer
    assert_eq!(
        p.conn().poll_timeout(),
        Some(start + Duration::from_secs(29))
    );
    p.advance(Duration::from_secs(14));
    assert!(p.conn.is_some());
    p.advance(Duration::from_secs(1));
    assert!(p.conn.is_none());
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::KEEP_ALIVE_TIMEOUT
    );
    assert_eq!(close_of(&p.actions), (ReasonCode::KEEP_ALIVE_TIMEOUT, true));
    assert_eq!(p.wills.len(), 1);
    assert_eq!(p.wills[0].0.payload, "gone");
}

#[test]
fn keepalive_zero_has_no_timeout() {
    let mut p = Pair::new(SessionConfig {
        server_keepalive_s: None,
        ..cfg()
    });
    let mut c = connect_v5("c1");
    c.keep_alive_s = 0;
    p.connect(c);
    assert_eq!(p.conn().poll_timeout(), None);
    p.advance(Duration::from_secs(100_000));
    assert!(p.conn.is_some());
}

// ---- will ----

fn will_connect(delay_s: Option<u32>, expiry_s: u32) -> Connect {
    let mut c = with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(expiry_s)
    });
    c.will = Some(Will {
        topic: ByteStr::from("will/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval_s: delay_s,
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(100),
            content_type: Some(ByteStr::from("ct")),
            response_topic: Some(ByteStr::from("rt")),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![
                (ByteStr::from("a"), ByteStr::from("2")),
                (ByteStr::from("c"), ByteStr::from("3")),
            ],
        },
    });
    c
}

#[test]
fn will_on_connection_lost_carries_properties() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(Some(5), 60));
    p.advance(Duration::from_secs(2));
    p.lose();
    assert!(close_of(&p.actions).1);
    let (m, delay) = p.wills.remove(0);
    assert_eq!(delay, Duration::from_secs(5));
    assert_eq!(m.topic, "will/t");
    assert_eq!(m.payload, "bye");
    assert_eq!(m.qos, QoS::ExactlyOnce);
    assert!(m.retain);
    assert_eq!(m.origin.as_deref(), Some("c1"));
    let pr = m.properties();
    assert_eq!(pr.payload_format_indicator, Some(1));
    assert_eq!(pr.content_type.as_deref(), Some("ct"));
    assert_eq!(pr.response_topic.as_deref(), Some("rt"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"cd"[..]));
    assert_eq!(pr.user_properties.len(), 2);
    assert_eq!(pr.message_expiry_interval_s, Some(100));
    assert_eq!(m.expires_at, Some(p.now + Duration::from_secs(105)));
}

#[test]
fn will_delay_capped_by_session_expiry() {
    for (delay, expiry, expect) in [
        (Some(5), 2, 2),
        (Some(5), 0, 0),
        (None, 60, 0),
        (Some(3), 5, 3),
    ] {
        let mut p = Pair::new(cfg());
        p.connect(will_connect(delay, expiry));
        p.lose();
        assert_eq!(
            p.wills.remove(0).1,
            Duration::from_secs(expect),
            "{delay:?} {expiry}"
        );
    }
}

#[test]
fn will_not_published_on_normal_disconnect() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::NORMAL_DISCONNECTION, false)
    );
    assert!(p.wills.is_empty());
    assert!(p.sent.is_empty(), "no DISCONNECT back to the client");
}

#[test]
fn will_published_on_disconnect_with_will() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(disconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE));
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, true)
    );
    assert_eq!(p.wills.len(), 1);
}

#[test]
fn will_published_on_protocol_error_and_kick() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(Packet::Auth(Box::default()));
    assert_eq!(p.wills.len(), 1);

    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.conn().kick(ReasonCode::SERVER_SHUTTING_DOWN);
    p.pump();
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::SERVER_SHUTTING_DOWN
    );
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::SERVER_SHUTTING_DOWN, true)
    );
    assert_eq!(p.wills.len(), 1);
}

#[test]
fn will_on_takeover() {
    // (will delay, session expiry, new connection clean start) -> delay published, if any
    for (delay, expiry, clean, expect) in [
        (Some(10), 60, false, None),   // resumed before the delay: cancelled
        (Some(10), 60, true, Some(0)), // session ends: now
        (None, 60, false, Some(0)),    // no delay: now
        (Some(10), 0, false, Some(0)), // session ends with the connection
    ] {
        let mut p = Pair::new(cfg());
        p.connect(will_connect(delay, expiry));
        p.conn().takeover(clean);
        p.pump();
        assert_eq!(
            disconnect_sent(&p.sent).unwrap().reason_code,
            ReasonCode::SESSION_TAKEN_OVER
        );
        assert_eq!(
            close_of(&p.actions),
            (ReasonCode::SESSION_TAKEN_OVER, expect.is_some())
        );
        let got = p.wills.first().map(|w| w.1.as_secs());
        assert_eq!(got, expect, "{delay:?} {expiry} {clean}");
    }
}

#[test]
fn takeover_v3_sends_nothing() {
    let mut p = pair_v3();
    p.conn().takeover(false);
    p.pump();
    assert!(p.sent.is_empty());
    assert_eq!(close_of(&p.actions).0, ReasonCode::SESSION_TAKEN_OVER);
}

#[test]
fn close_happens_once() {
    let mut p = pair_v5();
    let now = p.now;
    let c = p.conn();
    c.kick(ReasonCode::ADMINISTRATIVE_ACTION);
    c.handle_connection_lost(now);
    c.handle_packet(Packet::PingReq, now);
    c.kick(ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(c.is_closed());
    p.pump();
    assert_eq!(close_of(&p.actions).0, ReasonCode::ADMINISTRATIVE_ACTION);
    assert_eq!(p.sent.len(), 1, "only the DISCONNECT: {:?}", p.sent);
}

#[test]
fn delivery_after_close_goes_to_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    p.conn().kick(ReasonCode::SERVER_SHUTTING_DOWN);
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "late"), now);
    p.pump();
    assert!(matches!(p.sent.last(), Some(Packet::Disconnect(_))));
    assert_eq!(p.parked.as_ref().unwrap().queued_len(), 1);
}

#[test]
fn untransmitted_qos0_counted_on_close() {
    let mut p = pair_v5();
    let now = p.now;
    p.conn()
        .handle_delivery(delivery("t", QoS::AtMostOnce, "x"), now);
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "y"), now);
    let c = p.conn.take().unwrap();
    let mut c = c;
    c.handle_connection_lost(now);
    assert_eq!(c.drop_counts().closed, 1);
    assert!(transmit(&mut c, now).is_none(), "no PUBLISH after close");
}

// ---- message expiry ----

fn expiring(topic: &str, qos: QoS, payload: &str, at: Instant) -> Delivery {
    let mut m = Message::clone_for_test(&message(topic, qos, payload));
    m.expires_at = Some(at);
    Delivery {
        message: Arc::new(m),
        qos,
        retain: false,
        subscription_ids: SmallVec::new(),
    }
}

#[test]
fn expired_delivery_is_dropped() {
    let mut p = pair_v5();
    let now = p.now;
    p.deliver(expiring("t", QoS::AtLeastOnce, "x", now));
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().drop_counts().expired, 1);
}

#[test]
fn message_expires_while_queued() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.lose();
    let now = p.now;
    p.deliver(expiring(
        "t",
        QoS::AtLeastOnce,
        "short",
        now + Duration::from_secs(5),
    ));
    p.deliver(expiring(
        "t",
        QoS::AtLeastOnce,
        "long",
        now + Duration::from_secs(60),
    ));
    p.now += Duration::from_millis(5500);
    p.connect(persistent_v5("c1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].payload, "long");
    assert_eq!(pubs[0].properties().message_expiry_interval_s, Some(55));
    assert_eq!(p.conn().drop_counts().expired, 1);
}

#[test]
fn inflight_expiry_untransmitted_dropped_transmitted_resent() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    let at = now + Duration::from_secs(5);
    p.deliver(expiring("t", QoS::ExactlyOnce, "sent", at));
    assert_eq!(p.publishes().len(), 1);
    // Admitted to the window but not yet written when the connection drops.
    p.conn()
        .handle_delivery(expiring("t", QoS::ExactlyOnce, "unsent", at), now);
    p.lose();
    assert_eq!(p.parked.as_ref().unwrap().inflight_len(), 2);
    p.now += Duration::from_secs(6);
    p.connect(persistent_v5("c1"));
    // Onward delivery of "sent" had started: resent; "unsent" expired.
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(
        (pubs[0].payload.as_ref(), pubs[0].dup),
        (&b"sent"[..], true)
    );
    assert_eq!(pubs[0].properties().message_expiry_interval_s, Some(1));
    assert_eq!(p.conn().drop_counts().expired, 1);
    assert_eq!(p.conn().session().inflight_len(), 1);
}

// ---- outbound topic aliases ----

#[test]
fn outbound_topic_aliases() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.topic_alias_maximum = Some(1)
    }));
    for (t, q) in [
        ("a", QoS::AtMostOnce),
        ("a", QoS::AtLeastOnce),
        ("b", QoS::ExactlyOnce),
        ("a", QoS::AtMostOnce),
    ] {
        p.deliver(delivery(t, q, "x"));
    }
    let got: Vec<_> = p
        .publishes()
        .iter()
        .map(|x| (x.topic.to_string(), x.properties().topic_alias))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), Some(1)),
            ("".into(), Some(1)),
            ("b".into(), None),
            ("".into(), Some(1))
        ]
    );
}

#[test]
fn outbound_topic_aliases_off_and_reset() {
    // Client allows none.
    let mut p = pair_v5();
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    assert!(p
        .publishes()
        .iter()
        .all(|x| x.properties().topic_alias.is_none() && x.topic == "a"));
    // Reset per connection.
    let mut p = Pair::new(cfg());
    let c = with_props(persistent_v5("c1"), |p| p.topic_alias_maximum = Some(5));
    p.connect(c.clone());
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    p.lose();
    p.connect(c);
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 2);
    assert_eq!(
        (pubs[1].topic.as_str(), pubs[1].properties().topic_alias),
        ("a", Some(1))
    );
}

#[test]
fn resend_after_resume_reestablishes_alias() {
    let mut p = Pair::new(cfg());
    let c = with_props(persistent_v5("c1"), |p| p.topic_alias_maximum = Some(5));
    p.connect(c.clone());
    p.deliver(delivery("a", QoS::AtLeastOnce, "1"));
    p.deliver(delivery("a", QoS::AtLeastOnce, "2"));
    let pubs = p.publishes();
    assert_eq!(pubs[1].topic, "");
    p.lose();
    p.connect(c);
    let pubs = p.publishes();
    assert_eq!(
        (pubs[0].topic.as_str(), pubs[0].properties().topic_alias),
        ("a", Some(1))
    );
    assert_eq!(
        (pubs[1].topic.as_str(), pubs[1].properties().topic_alias),
        ("", Some(1))
    );
}

// ---- client Maximum Packet Size ----

#[test]
fn too_large_publish_dropped_and_completed() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(64);
        p.receive_maximum = Some(1);
    }));
    let big = "x".repeat(100);
    p.deliver(delivery("t", QoS::AtLeastOnce, &big));
    p.deliver(delivery("t", QoS::AtLeastOnce, "small"));
    p.deliver(delivery("t", QoS::AtMostOnce, &big));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].payload, "small");
    assert_eq!(p.conn().drop_counts().too_large, 2);
    assert_eq!(p.conn().dropped_messages(), 2);
}

#[test]
fn too_large_on_resend_completes_qos1_and_releases_qos2() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let big = "x".repeat(100);
    p.deliver(delivery("t", QoS::AtLeastOnce, &big));
    p.deliver(delivery("t", QoS::ExactlyOnce, &big));
    let first = p.publishes();
    assert_eq!(first.len(), 2);
    p.lose();
    // The new connection accepts only small packets.
    p.connect(with_props(persistent_v5("c1"), |p| {
        p.maximum_packet_size = Some(64)
    }));
    // QoS 1 completes silently; QoS 2 moves on to PUBREL so the client frees
    // the id it may hold. Both were transmitted once: not counted as dropped.
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(first[1].packet_id))]);
    assert_eq!(p.conn().session().inflight_len(), 1);
    assert_eq!(p.conn().dropped_messages(), 0);
    p.send(Packet::PubComp(ack(first[1].packet_id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn too_large_alias_setting_publish_does_not_commit_alias() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(40);
        p.topic_alias_maximum = Some(2);
    }));
    p.deliver(delivery("t", QoS::AtMostOnce, &"x".repeat(40)));
    p.deliver(delivery("t", QoS::AtMostOnce, "s"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(
        (pubs[0].topic.as_str(), pubs[0].properties().topic_alias),
        ("t", Some(1))
    );
}

#[test]
fn disconnect_reason_string_stripped_when_too_large() {
    // 24 bytes: the CONNACK fits exactly, the DISCONNECT with its Reason
    // String ("session expiry raised from 0", 35 bytes) does not.
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(24)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(10);
    p.send(Packet::Disconnect(Box::new(d)));
    let d = disconnect_sent(&p.sent).unwrap();
    assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(d.properties.reason_string, None);
}

#[test]
fn oversized_suback_closes_with_0x95() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(24)
    }));
    // A SUBACK of 30 reason codes is 35 bytes.
    let filters = (0..30)
        .map(|i| sub(&format!("f{i}"), QoS::AtMostOnce))
        .collect();
    p.send(subscribe(1, filters));
    assert!(!p.sent.iter().any(|x| matches!(x, Packet::SubAck(_))));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::PACKET_TOO_LARGE
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----

fn subacks(sent: &[Packet]) -> Vec<ReasonCode> {
    match sent {
        [Packet::SubAck(s)] => s.reason_codes.clone(),
        other => panic!("expected one SUBACK: {other:?}"),
    }
}

#[test]
fn subscribe_reason_codes_v5() {
    let mut p = Pair::new(SessionConfig {
        max_subscriptions: 4,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(subscribe(
        3,
        vec![
            sub("a/b", QoS::AtMostOnce),
            sub("a/+", QoS::AtLeastOnce),
            sub("#", QoS::ExactlyOnce),
            sub("a/#/b", QoS::AtMostOnce),
            sub("$share//a", QoS::AtMostOnce),
            sub("$share/g/a", QoS::AtLeastOnce),
            sub("x", QoS::AtMostOnce),    // 5th: quota
            sub("a/b", QoS::ExactlyOnce), // existed: replaces, no quota
        ],
    ));
    use ReasonCode as R;
    assert_eq!(
        subacks(&p.take_sent()),
        [
            R(0),
            R(1),
            R(2),
            R::TOPIC_FILTER_INVALID,
            R::TOPIC_FILTER_INVALID,
            R(1),
            R::QUOTA_EXCEEDED,
            R(2)
        ]
    );
    let subs: Vec<_> = p
        .take_actions()
        .into_iter()
        .map(|a| match a {
            Action::Subscribe {
                filter,
                options,
                existed,
                ..
            } => (filter.to_string(), options.qos, existed),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        subs,
        [
            ("a/b".into(), QoS::AtMostOnce, false),
            ("a/+".into(), QoS::AtLeastOnce, false),
            ("#".into(), QoS::ExactlyOnce, false),
            ("$share/g/a".into(), QoS::AtLeastOnce, false),
            ("a/b".into(), QoS::ExactlyOnce, true),
        ]
    );
    assert_eq!(p.conn().session().subscriptions().count(), 4);
}

#[test]
fn subscribe_unsupported_features() {
    let mut p = Pair::new(SessionConfig {
        shared_subscription_available: false,
        wildcard_subscription_available: false,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(subscribe(
        1,
        vec![
            sub("$share/g/a", QoS::AtMostOnce),
            sub("a/+", QoS::AtMostOnce),
            sub("a", QoS::AtMostOnce),
        ],
    ));
    use ReasonCode as R;
    assert_eq!(
        subacks(&p.take_sent()),
        [
            R::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            R::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            R(0)
        ]
    );
}

#[test]
fn subscribe_failures_v3_are_0x80() {
    let mut p = Pair::new(SessionConfig {
        max_subscriptions: 1,
        wildcard_subscription_available: false,
        ..cfg()
    });
    p.connect(connect_v3("c1"));
    p.send(subscribe(
        1,
        vec![
            sub("a", QoS::AtLeastOnce),
            sub("a/#/b", QoS::AtMostOnce),
            sub("b", QoS::AtMostOnce),
            sub("+", QoS::AtMostOnce),
        ],
    ));
    use ReasonCode as R;
    assert_eq!(subacks(&p.take_sent()), [R(1), R(0x80), R(0x80), R(0x80)]);
}

#[test]
fn subscription_identifier_stored() {
    let mut p = pair_v5();
    p.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![sub("a", QoS::AtLeastOnce), sub("b", QoS::AtMostOnce)],
        properties: SubscribeProperties {
            subscription_identifier: Some(42),
            user_properties: vec![],
        },
    }));
    let ids: Vec<_> = p
        .conn()
        .session()
        .subscriptions()
        .map(|(f, _, id)| (f.to_string(), id))
        .collect();
    assert_eq!(ids, [("a".into(), Some(42)), ("b".into(), Some(42))]);
    assert!(p.take_actions().iter().all(|a| matches!(
        a,
        Action::Subscribe {
            identifier: Some(42),
            ..
        }
    )));
}

#[test]
fn no_local_on_shared_is_protocol_error() {
    let mut p = pair_v5();
    let o = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::default()
    };
    p.send(subscribe(
        1,
        vec![sub("a", QoS::AtMostOnce), (ByteStr::from("$share/g/a"), o)],
    ));
    let actions = p.take_actions();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Subscribe { .. })),
        "nothing applied"
    );
    assert_eq!(close_of(&actions).0, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn suback_before_retained_messages() {
    let mut p = pair_v5();
    let now = p.now;
    let c = p.conn();
    c.handle_packet(subscribe(1, vec![sub("r", QoS::AtLeastOnce)]), now);
    // The shard handles Action::Subscribe, then feeds retained messages.
    assert!(matches!(c.poll_action(), Some(Action::Subscribe { .. })));
    c.handle_retained(delivery("r", QoS::AtLeastOnce, "kept"), now);
    let first = transmit(c, now).unwrap();
    let second = transmit(c, now).unwrap();
    assert!(matches!(first, Packet::SubAck(_)), "{first:?}");
    let Packet::Publish(publ) = second else {
        panic!("{second:?}")
    };
    assert!(publ.retain);
}

#[test]
fn unsubscribe_v5_and_v3() {
    let mut p = pair_v5();
    p.send(subscribe(1, vec![sub("a", QoS::AtMostOnce)]));
    p.take_sent();
    p.take_actions();
    p.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec![
            ByteStr::from("a"),
            ByteStr::from("b"),
            ByteStr::from("a/#/x"),
        ],
        properties: UnsubscribeProperties::default(),
    }));
    let sent = p.take_sent();
    let [Packet::UnsubAck(u)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(u.packet_id, 2);
    assert_eq!(
        u.reason_codes,
        [
            ReasonCode::SUCCESS,
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
            ReasonCode::TOPIC_FILTER_INVALID
        ]
    );
    assert_eq!(
        p.take_actions(),
        vec![Action::Unsubscribe {
            filter: ByteStr::from("a")
        }]
    );

    let mut p = pair_v3();
    p.send(subscribe(1, vec![sub("a", QoS::AtMostOnce)]));
    p.take_sent();
    p.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec![ByteStr::from("a")],
        properties: UnsubscribeProperties::default(),
    }));
    let sent = p.take_sent();
    let [Packet::UnsubAck(u)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert!(u.reason_codes.is_empty());
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Session>();
    assert_send::<Delivery>();
    assert_send::<Action>();
}

/// Issue 11 item 7: between the takeover's kick and the moment the shard
/// takes the session out of the closed connection, deliveries still reach
/// the connection; they must stay in the session for the new connection.
#[test]
fn delivery_after_takeover_stays_in_the_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "sent"));
    let first = p.publishes();
    assert_eq!(first.len(), 1);
    p.conn().takeover(false);
    let now = p.now;
    // The shard has not yet seen the Close: the connection is still where
    // deliveries are routed.
    for payload in ["late-1", "late-2"] {
        p.conn()
            .handle_delivery(delivery("t", QoS::AtLeastOnce, payload), now);
    }
    p.pump();
    assert!(p.conn.is_none(), "closed and parked");
    assert_eq!(
        disconnect_sent(&p.take_sent()).unwrap().reason_code,
        ReasonCode::SESSION_TAKEN_OVER
    );
    assert_eq!(
        queued_payloads(p.parked.as_ref().unwrap()),
        ["late-1", "late-2"]
    );
    assert!(p.connect(persistent_v5("c1")).session_present);
    let got: Vec<_> = p
        .publishes()
        .iter()
        .map(|x| (x.payload.clone(), x.dup))
        .collect();
    assert_eq!(
        got,
        [
            (Bytes::from("sent"), true),
            (Bytes::from("late-1"), false),
            (Bytes::from("late-2"), false)
        ]
    );
}

/// A session moved between shards gets what the old shard's subscriptions
/// delivered after it left, then what the new shard's delivered, and a
/// message both delivered (the same routed `Arc`) once.
#[test]
fn deliver_moved_queues_each_message_once_old_shard_first() {
    let mut s = Session::new(ByteStr::from("c1"), 60, 100);
    let both = delivery("t", QoS::AtLeastOnce, "both");
    let twin = Delivery {
        message: both.message.clone(),
        ..both.clone()
    };
    // Equal content, another message: not a duplicate.
    let lookalike = delivery("t", QoS::AtLeastOnce, "both");
    let old_shard = vec![
        delivery("t", QoS::AtLeastOnce, "old-1"),
        both,
        delivery("t", QoS::AtMostOnce, "old-2"),
    ];
    let here = vec![twin, lookalike, delivery("t", QoS::AtLeastOnce, "new")];
    s.deliver_moved(old_shard, here, Instant::now());
    assert_eq!(
        queued_payloads(&s),
        ["old-1", "old-2", "both", "both", "new"]
    );
}
