//! Authorization hooks: SUBSCRIBE and PUBLISH checked against the rules,
//! the will checked when it is due.

use std::sync::Arc;

use super::*;
use crate::authz::{Authz, DenyAction, DenyReason, Permission, Rule, RuleAction};
use crate::codec::*;

fn rule(permission: Permission, action: RuleAction, topics: &[&str]) -> Rule {
    Rule {
        permission,
        action,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        client_id: None,
        username: None,
    }
}

/// The Paho conformance rule plus a publish deny on `secret/#`.
fn rules() -> Vec<Rule> {
    vec![
        rule(
            Permission::Deny,
            RuleAction::Subscribe,
            &["test/nosubscribe"],
        ),
        rule(Permission::Deny, RuleAction::Publish, &["secret/#"]),
    ]
}

fn cfg_with(rules: &[Rule], no_match: Permission, deny_action: DenyAction) -> SessionConfig {
    SessionConfig {
        authz: Some(Arc::new(Authz::new(rules, no_match).unwrap())),
        authz_deny_action: deny_action,
        ..cfg()
    }
}

fn pair(connect: Connect, deny_action: DenyAction) -> Pair {
    let mut p = Pair::new(cfg_with(&rules(), Permission::Allow, deny_action));
    let ack = p.connect(connect);
    assert!(!ack.reason_code.is_error(), "{ack:?}");
    p.take_sent();
    p.take_actions();
    p
}

fn subscribe(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: filters
            .iter()
            .map(|f| {
                (
                    ByteStr::from(*f),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

#[test]
fn denied_filter_gets_0x87_on_v5_and_no_subscribe_action() {
    let mut p = pair(connect_v5("c1"), DenyAction::Ignore);
    p.send(subscribe(&[
        "a/b",
        "test/nosubscribe",
        "$share/g/test/nosubscribe",
    ]));
    assert_eq!(
        suback_codes(&mut p),
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED
        ]
    );
    assert_eq!(subscribed(&p.take_actions()), ["a/b"]);
    assert_eq!(p.conn().session().subscriptions().count(), 1);
}

#[test]
fn denied_filter_gets_0x80_on_v3() {
    let mut p = pair(connect_v3("c1"), DenyAction::Ignore);
    p.send(subscribe(&["test/nosubscribe", "test/other"]));
    assert_eq!(
        suback_codes(&mut p),
        [ReasonCode::SUBACK_FAILURE, ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(subscribed(&p.take_actions()), ["test/other"]);
}

#[test]
fn denied_publish_v5_acks_with_0x87_and_is_not_routed() {
    let mut p = pair(connect_v5("c1"), DenyAction::Ignore);
    p.send(publish("secret/a", QoS::AtMostOnce, 0, "x"));
    p.send(publish("secret/a", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("secret/a", QoS::ExactlyOnce, 2, "x"));
    p.send(publish("public/a", QoS::AtLeastOnce, 3, "x"));
    let acks: Vec<(&str, u16, ReasonCode)> = p
        .sent
        .iter()
        .map(|packet| match packet {
            Packet::PubAck(a) => ("PUBACK", a.packet_id, a.reason_code),
            Packet::PubRec(a) => ("PUBREC", a.packet_id, a.reason_code),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        acks,
        [
            ("PUBACK", 1, ReasonCode::NOT_AUTHORIZED),
            ("PUBREC", 2, ReasonCode::NOT_AUTHORIZED),
            ("PUBACK", 3, ReasonCode::SUCCESS),
        ]
    );
    let actions = p.take_actions();
    assert_eq!(routed(&actions), ["public/a"]);
    assert!(!actions.iter().any(|a| matches!(a, Action::Close { .. })));
    // The refused QoS 2 flow holds no packet id: a PUBREL for it is unknown.
    assert!(p.conn().session().incoming_qos2.is_empty());
}

#[test]
fn denied_publish_v3_is_acknowledged_normally_but_not_routed() {
    let mut p = pair(connect_v3("c1"), DenyAction::Ignore);
    p.send(publish("secret/a", QoS::AtMostOnce, 0, "x"));
    p.send(publish("secret/a", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("secret/a", QoS::ExactlyOnce, 2, "x"));
    p.send(Packet::PubRel(ack(2)));
    let sent = p.take_sent();
    assert!(
        matches!(
            sent.as_slice(),
            [Packet::PubAck(a), Packet::PubRec(b), Packet::PubComp(c)]
                if a.packet_id == 1 && a.reason_code == ReasonCode::SUCCESS
                    && b.packet_id == 2 && b.reason_code == ReasonCode::SUCCESS
                    && c.packet_id == 2 && c.reason_code == ReasonCode::SUCCESS
        ),
        "{sent:?}"
    );
    assert!(routed(&p.take_actions()).is_empty());
}

#[test]
fn deny_action_disconnect_closes_with_0x87() {
    let mut p = pair(connect_v5("c1"), DenyAction::Disconnect);
    p.send(publish("public/a", QoS::AtMostOnce, 0, "x"));
    p.send(publish("secret/a", QoS::AtLeastOnce, 1, "x"));
    let sent = p.take_sent();
    match sent.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    let actions = p.take_actions();
    assert_eq!(routed(&actions), ["public/a"]);
    assert!(actions.contains(&Action::Close {
        reason: ReasonCode::NOT_AUTHORIZED,
        will: false
    }));
    assert!(p.conn.is_none(), "closed");

    // v3.1.1: closed without a packet.
    let mut p = pair(connect_v3("c1"), DenyAction::Disconnect);
    p.send(publish("secret/a", QoS::AtMostOnce, 0, "x"));
    assert!(p.take_sent().is_empty());
    assert!(p.take_actions().iter().any(|a| matches!(
        a,
        Action::Close {
            reason: ReasonCode::NOT_AUTHORIZED,
            ..
        }
    )));
}

#[test]
fn denied_subscribe_does_not_disconnect_even_with_deny_action_disconnect() {
    // deny_action is about PUBLISH only (EMQX): SUBACK carries the refusal.
    let mut p = pair(connect_v5("c1"), DenyAction::Disconnect);
    p.send(subscribe(&["test/nosubscribe"]));
    assert_eq!(suback_codes(&mut p), [ReasonCode::NOT_AUTHORIZED]);
    assert!(p.conn.is_some());
}

#[test]
fn aliased_publish_is_checked_on_the_resolved_topic() {
    let mut p = pair(connect_v5("c1"), DenyAction::Ignore);
    let mut first = publish("secret/a", QoS::AtLeastOnce, 1, "x");
    let mut again = publish("", QoS::AtLeastOnce, 2, "x");
    for packet in [&mut first, &mut again] {
        if let Packet::Publish(p) = packet {
            p.properties.get_or_insert_default().topic_alias = Some(1);
        }
    }
    p.send(first);
    p.send(again);
    let codes: Vec<ReasonCode> = p
        .take_sent()
        .iter()
        .map(|x| match x {
            Packet::PubAck(a) => a.reason_code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, [ReasonCode::NOT_AUTHORIZED; 2]);
    assert!(routed(&p.take_actions()).is_empty());
}

#[test]
fn will_to_a_denied_topic_is_accepted_then_dropped() {
    let mut p = pair(
        with_will(connect_v5("c1"), "secret/will"),
        DenyAction::Ignore,
    );
    p.lose();
    assert!(p.wills.is_empty(), "denied will must not be published");

    let mut p = pair(
        with_will(connect_v5("c1"), "public/will"),
        DenyAction::Ignore,
    );
    p.lose();
    assert_eq!(p.wills.len(), 1);
}

#[test]
fn rules_see_client_id_and_username() {
    let mut own = rule(
        Permission::Allow,
        RuleAction::All,
        &["devices/${clientid}/#"],
    );
    own.username = Some("alice".to_string());
    let cfg = cfg_with(&[own], Permission::Deny, DenyAction::Ignore);

    let mut alice = connect_v5("d1");
    alice.username = Some(ByteStr::from("alice"));
    let mut p = Pair::new(cfg.clone());
    p.connect(alice);
    p.take_sent();
    p.send(subscribe(&["devices/d1/#", "devices/d2/#"]));
    assert_eq!(
        suback_codes(&mut p),
        [ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED]
    );

    // Same client id, no user name: the rule does not apply, no_match denies.
    let mut p = Pair::new(cfg);
    p.connect(connect_v5("d1"));
    p.take_sent();
    p.send(subscribe(&["devices/d1/#"]));
    assert_eq!(suback_codes(&mut p), [ReasonCode::NOT_AUTHORIZED]);
}

#[test]
fn assigned_client_id_is_what_placeholders_see() {
    let cfg = cfg_with(
        &[rule(
            Permission::Allow,
            RuleAction::Publish,
            &["${clientid}/out"],
        )],
        Permission::Deny,
        DenyAction::Ignore,
    );
    let mut p = Pair::new(cfg);
    p.connect(connect_v5(""));
    p.take_sent();
    p.take_actions();
    p.send(publish("assigned-1/out", QoS::AtMostOnce, 0, "x"));
    p.send(publish("other/out", QoS::AtMostOnce, 0, "x"));
    assert_eq!(routed(&p.take_actions()), ["assigned-1/out"]);
}

#[test]
fn qos2_resend_of_a_routed_message_keeps_its_flow() {
    // A resend carries the same packet id; even if (wrongly) on another
    // topic, it must not be refused: the id is held until PUBREL.
    let mut p = pair(connect_v5("c1"), DenyAction::Ignore);
    p.send(publish("public/a", QoS::ExactlyOnce, 5, "x"));
    p.send(publish("secret/a", QoS::ExactlyOnce, 5, "x"));
    let codes: Vec<ReasonCode> = p
        .take_sent()
        .iter()
        .map(|x| match x {
            Packet::PubRec(a) => a.reason_code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, [ReasonCode::SUCCESS; 2]);
    assert_eq!(routed(&p.take_actions()), ["public/a"]);
}

#[test]
fn deny_reason_unspecified_error_puts_0x80_in_every_v5_refusal() {
    let with_reason = |deny_action| SessionConfig {
        authz_deny_reason: DenyReason::UnspecifiedError,
        ..cfg_with(&rules(), Permission::Allow, deny_action)
    };
    let mut p = Pair::new(with_reason(DenyAction::Ignore));
    p.connect(connect_v5("c1"));
    p.take_sent();
    p.send(subscribe(&["test/nosubscribe"]));
    assert_eq!(suback_codes(&mut p), [ReasonCode::UNSPECIFIED_ERROR]);
    p.send(publish("secret/a", QoS::AtLeastOnce, 1, "x"));
    p.send(publish("secret/a", QoS::ExactlyOnce, 2, "x"));
    match p.take_sent().as_slice() {
        [Packet::PubAck(a), Packet::PubRec(b)] => {
            assert_eq!(a.reason_code, ReasonCode::UNSPECIFIED_ERROR);
            assert_eq!(b.reason_code, ReasonCode::UNSPECIFIED_ERROR);
        }
        other => panic!("{other:?}"),
    }

    let mut p = Pair::new(with_reason(DenyAction::Disconnect));
    p.connect(connect_v5("c1"));
    p.take_sent();
    p.send(publish("secret/a", QoS::AtMostOnce, 0, "x"));
    match p.take_sent().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::UNSPECIFIED_ERROR),
        other => panic!("{other:?}"),
    }
}
