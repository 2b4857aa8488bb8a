//! Topic names the session refuses before anything is routed or stored:
//! more levels than `max_topic_levels` (PUBLISH, SUBSCRIBE, will), and the
//! reserved `$SYS` / `$share` names in a PUBLISH or will.

use super::*;
use crate::authz::DenyAction;

/// Three levels at most, as the reproduction.
fn cfg_levels(max_topic_levels: usize) -> SessionConfig {
    SessionConfig {
        max_topic_levels,
        ..cfg()
    }
}

fn connected(cfg: SessionConfig, c: Connect) -> Pair {
    let mut p = Pair::new(cfg);
    let ack = p.connect(c);
    assert!(!ack.reason_code.is_error(), "{ack:?}");
    p.take_sent();
    p.take_actions();
    p
}

fn closed_with(actions: &[Action]) -> Option<ReasonCode> {
    actions.iter().find_map(|a| match a {
        Action::Close { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// (packet, packet id, reason code) of each PUBACK / PUBREC sent.
fn acks(sent: &[Packet]) -> Vec<(&'static str, u16, ReasonCode)> {
    sent.iter()
        .map(|packet| match packet {
            Packet::PubAck(a) => ("PUBACK", a.packet_id, a.reason_code),
            Packet::PubRec(a) => ("PUBREC", a.packet_id, a.reason_code),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn subscribe(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 5,
        filters: filters
            .iter()
            .map(|f| {
                let options = SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                };
                (ByteStr::from(*f), options)
            })
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

fn aliased(topic: &str, alias: u16, qos: QoS, packet_id: u16) -> Packet {
    let Packet::Publish(mut publ) = publish(topic, qos, packet_id, "x") else {
        unreachable!()
    };
    publ.properties.get_or_insert_default().topic_alias = Some(alias);
    Packet::Publish(publ)
}

// ---- max_topic_levels: PUBLISH ----

#[test]
fn v5_publish_over_the_level_limit_is_refused_with_0x90_and_not_routed() {
    let mut p = connected(cfg_levels(3), connect_v5("c1"));
    p.send(publish("a/b/c", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("a/b/c/d", QoS::AtLeastOnce, 2, "x"));
    p.send(publish("a/b/c/d/e/f", QoS::ExactlyOnce, 3, "x"));
    // Empty levels count: "a//b/" has 4.
    p.send(publish("a//b/", QoS::AtLeastOnce, 4, "x"));
    assert_eq!(
        acks(&p.take_sent()),
        [
            ("PUBACK", 1, ReasonCode::SUCCESS),
            ("PUBACK", 2, ReasonCode::TOPIC_NAME_INVALID),
            ("PUBREC", 3, ReasonCode::TOPIC_NAME_INVALID),
            ("PUBACK", 4, ReasonCode::TOPIC_NAME_INVALID),
        ]
    );
    let actions = p.take_actions();
    assert_eq!(routed(&actions), ["a/b/c"]);
    assert_eq!(closed_with(&actions), None, "the connection stays");
    // The refused QoS 2 flow holds no packet id.
    assert!(p.conn().session().incoming_qos2.is_empty());
}

#[test]
fn v5_qos0_publish_over_the_level_limit_disconnects_with_0x90() {
    let mut p = connected(cfg_levels(3), connect_v5("c1"));
    p.send(publish("a/b/c/d", QoS::AtMostOnce, 0, "x"));
    match p.take_sent().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::TOPIC_NAME_INVALID),
        other => panic!("{other:?}"),
    }
    let actions = p.take_actions();
    assert!(routed(&actions).is_empty());
    assert_eq!(closed_with(&actions), Some(ReasonCode::TOPIC_NAME_INVALID));
}

#[test]
fn v3_publish_over_the_level_limit_closes_the_connection() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut p = connected(cfg_levels(3), connect_v3("c1"));
        p.send(publish("a/b/c/d", qos, 1, "x"));
        assert!(p.take_sent().is_empty(), "3.1.1: no ack, no DISCONNECT");
        let actions = p.take_actions();
        assert!(routed(&actions).is_empty());
        assert!(closed_with(&actions).is_some(), "{qos:?}");
        assert!(p.conn.is_none());
    }
}

#[test]
fn levels_are_counted_on_the_topic_an_alias_resolves_to() {
    let mut p = connected(cfg_levels(3), connect_v5("c1"));
    p.send(aliased("a/b/c", 1, QoS::AtLeastOnce, 1));
    p.send(aliased("", 1, QoS::AtLeastOnce, 2));
    p.send(aliased("a/b/c/d", 2, QoS::AtLeastOnce, 3));
    // Alias 2 now names a 4-level topic: a PUBLISH by alias alone is refused
    // the same way, not treated as an unknown alias.
    p.send(aliased("", 2, QoS::AtLeastOnce, 4));
    assert_eq!(
        acks(&p.take_sent()),
        [
            ("PUBACK", 1, ReasonCode::SUCCESS),
            ("PUBACK", 2, ReasonCode::SUCCESS),
            ("PUBACK", 3, ReasonCode::TOPIC_NAME_INVALID),
            ("PUBACK", 4, ReasonCode::TOPIC_NAME_INVALID),
        ]
    );
    assert_eq!(routed(&p.take_actions()), ["a/b/c", "a/b/c"]);
}

// ---- max_topic_levels: SUBSCRIBE ----

#[test]
fn filters_over_the_level_limit_get_0x8f_and_are_not_stored() {
    let mut p = connected(cfg_levels(3), connect_v5("c1"));
    p.send(subscribe(&[
        "a/b/c",
        "a/b/c/d",
        "a/+/+/#",
        "+/+/#",
        // The `$share/{group}/` prefix is not counted: 3 levels, then 4.
        "$share/g/a/b/c",
        "$share/g/a/b/c/d",
        "////",
    ]));
    let bad = ReasonCode::TOPIC_FILTER_INVALID;
    assert_eq!(
        suback_codes(&mut p),
        [
            ReasonCode::GRANTED_QOS_1,
            bad,
            bad,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_1,
            bad,
            bad
        ]
    );
    assert_eq!(
        subscribed(&p.take_actions()),
        ["a/b/c", "+/+/#", "$share/g/a/b/c"]
    );
    assert_eq!(p.conn().session().subscriptions().count(), 3);
}

#[test]
fn v3_filters_over_the_level_limit_get_0x80() {
    let mut p = connected(cfg_levels(3), connect_v3("c1"));
    p.send(subscribe(&["a/b/c/d", "a/b"]));
    assert_eq!(
        suback_codes(&mut p),
        [ReasonCode::SUBACK_FAILURE, ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(subscribed(&p.take_actions()), ["a/b"]);
}

#[test]
fn a_filter_of_65536_levels_is_refused_by_default() {
    let mut p = connected(cfg(), connect_v5("c1"));
    let deep = "/".repeat(65_535);
    p.send(subscribe(&[deep.as_str(), &format!("{deep}#")]));
    assert_eq!(suback_codes(&mut p), [ReasonCode::TOPIC_FILTER_INVALID; 2]);
    assert!(subscribed(&p.take_actions()).is_empty());
}

// ---- max_topic_levels: will ----

#[test]
fn will_over_the_level_limit_refuses_the_connect() {
    let cfg = cfg_levels(3);
    let refused = |c: Connect| Connection::check_connect(&c, &cfg).map_err(|a| a.reason_code);
    assert_eq!(refused(with_will(connect_v5("c"), "a/b/c")), Ok(()));
    assert_eq!(
        refused(with_will(connect_v5("c"), "a/b/c/d")),
        Err(ReasonCode::TOPIC_NAME_INVALID)
    );
    assert_eq!(
        refused(with_will(connect_v3("c"), "a/b/c/d")),
        Err(connack_v3::NOT_AUTHORIZED)
    );
}

// ---- $SYS and $share topic names ----

#[test]
fn v5_publish_to_sys_or_share_is_refused_with_0x87() {
    let mut p = connected(cfg(), connect_v5("c1"));
    p.send(publish("$SYS/broker/uptime", QoS::AtMostOnce, 0, "x"));
    p.send(publish("$SYS/broker/uptime", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("$SYS", QoS::ExactlyOnce, 2, "x"));
    p.send(publish("$share/g/a", QoS::AtLeastOnce, 3, "x"));
    p.send(publish("$SYSTEM/a", QoS::AtLeastOnce, 4, "x"));
    assert_eq!(
        acks(&p.take_sent()),
        [
            ("PUBACK", 1, ReasonCode::NOT_AUTHORIZED),
            ("PUBREC", 2, ReasonCode::NOT_AUTHORIZED),
            ("PUBACK", 3, ReasonCode::NOT_AUTHORIZED),
            ("PUBACK", 4, ReasonCode::SUCCESS),
        ]
    );
    let actions = p.take_actions();
    assert_eq!(routed(&actions), ["$SYSTEM/a"]);
    assert_eq!(closed_with(&actions), None);
}

#[test]
fn v3_publish_to_sys_is_acknowledged_but_not_routed() {
    let mut p = connected(cfg(), connect_v3("c1"));
    p.send(publish("$SYS/x", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("$SYS/x", QoS::ExactlyOnce, 2, "x"));
    p.send(Packet::PubRel(ack(2)));
    let sent = p.take_sent();
    assert!(
        matches!(
            sent.as_slice(),
            [Packet::PubAck(a), Packet::PubRec(b), Packet::PubComp(c)]
                if a.reason_code == ReasonCode::SUCCESS
                    && b.reason_code == ReasonCode::SUCCESS
                    && c.reason_code == ReasonCode::SUCCESS
        ),
        "{sent:?}"
    );
    assert!(routed(&p.take_actions()).is_empty());
}

#[test]
fn allow_publish_sys_lets_sys_through_but_never_share() {
    let cfg = SessionConfig {
        allow_publish_sys: true,
        ..cfg()
    };
    let mut p = connected(cfg, connect_v5("bridge"));
    p.send(publish("$SYS/remote/uptime", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("$share/g/a", QoS::AtLeastOnce, 2, "x"));
    assert_eq!(
        acks(&p.take_sent()),
        [
            ("PUBACK", 1, ReasonCode::SUCCESS),
            ("PUBACK", 2, ReasonCode::NOT_AUTHORIZED),
        ]
    );
    assert_eq!(routed(&p.take_actions()), ["$SYS/remote/uptime"]);
}

#[test]
fn sys_refusal_follows_deny_action_disconnect() {
    let cfg = SessionConfig {
        authz_deny_action: DenyAction::Disconnect,
        ..cfg()
    };
    let mut p = connected(cfg, connect_v5("c1"));
    p.send(publish("$SYS/x", QoS::AtMostOnce, 0, "x"));
    assert_eq!(
        closed_with(&p.take_actions()),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
}

#[test]
fn will_to_sys_is_accepted_then_dropped_unless_allowed() {
    let mut p = connected(cfg(), with_will(connect_v5("c1"), "$SYS/will"));
    p.lose();
    assert!(p.wills.is_empty(), "a $SYS will must not be published");

    let mut p = connected(cfg(), with_will(connect_v5("c1"), "$share/g/will"));
    p.lose();
    assert!(p.wills.is_empty(), "a $share will must not be published");

    let allowed = SessionConfig {
        allow_publish_sys: true,
        ..cfg()
    };
    let mut p = connected(allowed, with_will(connect_v5("c1"), "$SYS/will"));
    p.lose();
    assert_eq!(p.wills.len(), 1);
}
