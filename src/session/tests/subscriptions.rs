//! SUBSCRIBE and UNSUBSCRIBE: reason codes, unsupported features,
//! subscription identifiers, the SUBACK before retained messages.

use super::*;
use crate::codec::*;

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
