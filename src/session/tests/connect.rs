//! CONNECT checks and refusals, the CONNACK's contents, and the
//! protocol errors of a connection's first and control packets.

use bytes::Bytes;

use super::*;
use crate::codec::*;

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
