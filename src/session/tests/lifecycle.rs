//! `Lifecycle` transitions and their events; a session moved as a snapshot
//! (by value and as bytes) resumes exactly as one that never moved.

use super::unit::{persistent_v5, with_props};
use super::*;
use crate::session::lifecycle::{EndReason, WillPlan};

fn clock(p: &Pair) -> WallClock {
    WallClock {
        instant: p.now,
        unix_ms: 1_765_000_000_000,
    }
}

fn events(l: &mut Lifecycle) -> Vec<SessionEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// A client with subscriptions, QoS 1/2 messages in every handshake
/// state, an inbound QoS 2 exchange open and messages queued while
/// offline; `moved` sends its parked session through a snapshot.
/// Carries a parked session somewhere and back.
type Move<'a> = &'a dyn Fn(Session, &WallClock) -> Session;

fn resumed_after_disconnect(moved: Option<Move<'_>>) -> Vec<Packet> {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            ByteStr::from("t/#"),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: false,
                retain_handling: 1,
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(42),
            ..SubscribeProperties::default()
        },
    }));
    p.send(publish("in", QoS::ExactlyOnce, 7, "q2"));
    // SUBACK and PUBREC.
    assert_eq!(p.take_sent().len(), 2);
    for (qos, payload) in [
        (QoS::AtLeastOnce, "a"),
        (QoS::ExactlyOnce, "b"),
        (QoS::ExactlyOnce, "c"),
        (QoS::AtMostOnce, "z"),
    ] {
        p.deliver(delivery("t/x", qos, payload));
    }
    let ids: Vec<u16> = p
        .publishes()
        .iter()
        .filter(|x| x.qos != QoS::AtMostOnce)
        .map(|x| x.packet_id)
        .collect();
    p.send(Packet::PubRec(ack(ids[1])));
    p.lose();
    p.deliver(delivery("t/y", QoS::AtLeastOnce, "offline"));
    p.deliver(delivery("t/y", QoS::AtMostOnce, "offline0"));
    if let Some(move_it) = moved {
        let parked = p.parked.take().expect("parked");
        p.parked = Some(move_it(parked, &clock(&p)));
    }
    let ack = p.connect(persistent_v5("c1"));
    assert!(ack.session_present);
    // The inbound QoS 2 exchange is still open: a resent PUBLISH is
    // acknowledged and not routed again.
    p.take_actions();
    p.send(publish("in", QoS::ExactlyOnce, 7, "q2"));
    assert!(p.take_actions().is_empty());
    let subs: Vec<_> = p
        .conn()
        .session()
        .subscriptions()
        .map(|(f, o, id)| (f.to_string(), *o, id))
        .collect();
    assert_eq!(subs.len(), 1);
    assert_eq!((subs[0].0.as_str(), subs[0].2), ("t/#", Some(42)));
    p.take_sent()
}

#[test]
fn a_session_moved_by_value_resumes_as_if_it_never_moved() {
    let stayed = resumed_after_disconnect(None);
    let moved = resumed_after_disconnect(Some(&|s, clock| {
        let mut here = Lifecycle::new();
        let snapshot = here.handle_export(s, 3, clock);
        assert!(matches!(
            events(&mut here).as_slice(),
            [SessionEvent::TakenOver { to: 3, .. }]
        ));
        Lifecycle::new().handle_import(*snapshot, clock)
    }));
    assert!(stayed.len() >= 5, "{stayed:?}");
    assert_eq!(moved, stayed);
}

#[test]
fn a_session_moved_as_bytes_resumes_as_if_it_never_moved() {
    let stayed = resumed_after_disconnect(None);
    let moved = resumed_after_disconnect(Some(&|s, clock| {
        let bytes = SessionSnapshot::of(&s, None, None, clock).encode().unwrap();
        drop(s);
        let (s, expires_at, will) = SessionSnapshot::decode(&bytes)
            .unwrap()
            .into_session(clock)
            .unwrap();
        assert!(expires_at.is_none() && will.is_none());
        s
    }));
    assert_eq!(moved, stayed);
}

#[test]
fn connect_creates_resumes_or_discards() {
    let p = Pair::new(cfg());
    let now = clock(&p);
    let mut l = Lifecycle::new();
    let id = ByteStr::from("c1");

    let c = l.handle_connect(&id, None, false, &now);
    assert!(c.resume.is_none() && c.discard.is_none());
    let fresh = Session::new(id.clone(), 600, 10);
    l.handle_online(&fresh, false, &now);

    let c = l.handle_connect(&id, Some(fresh), false, &now);
    let resumed = c.resume.expect("resumed");
    l.handle_online(&resumed, true, &now);

    let c = l.handle_connect(&id, Some(resumed), true, &now);
    assert!(c.resume.is_none() && c.discard.is_some());
    let at_unix_ms = now.unix_ms;
    assert_eq!(
        events(&mut l),
        [
            SessionEvent::Created {
                client_id: id.clone(),
                expiry_interval_s: 600,
                at_unix_ms
            },
            SessionEvent::Resumed {
                client_id: id.clone(),
                expiry_interval_s: 600,
                at_unix_ms
            },
            SessionEvent::Ended {
                client_id: id.clone(),
                reason: EndReason::CleanStart,
                at_unix_ms
            },
        ]
    );
}

#[test]
fn offline_sets_the_expiry_and_the_will_on_the_wall_clock() {
    let mut p = Pair::new(cfg());
    let will_connect = |delay_s: u32| {
        let mut c = with_props(persistent_v5("c1"), |p| {
            p.session_expiry_interval_s = Some(600)
        });
        c.will = Some(Will {
            topic: ByteStr::from("w"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval_s: Some(delay_s),
                ..WillProperties::default()
            },
        });
        c
    };
    p.connect(will_connect(30));
    p.lose();
    let now = clock(&p);
    let will = p.wills.pop();
    let mut l = Lifecycle::with_offline_snapshots();
    let offline = l.handle_offline(p.parked.take().unwrap(), will, &now);
    assert_eq!(
        offline.expires_at,
        Some(now.instant + Duration::from_secs(600))
    );
    let WillPlan::At(w, due) = &offline.will else {
        panic!("{:?}", offline.will)
    };
    assert_eq!(*due, now.instant + Duration::from_secs(30));
    let emitted = events(&mut l);
    let [SessionEvent::Offline {
        expires_at_unix_ms,
        will_due_unix_ms,
        snapshot: Some(snapshot),
        ..
    }] = emitted.as_slice()
    else {
        panic!("one Offline event with a snapshot")
    };
    assert_eq!(*expires_at_unix_ms, Some(now.unix_ms + 600_000));
    assert_eq!(*will_due_unix_ms, Some(now.unix_ms + 30_000));
    let will_snapshot = snapshot.will.as_ref().expect("the will travels");
    assert_eq!(will_snapshot.due_unix_ms, now.unix_ms + 30_000);
    assert_eq!(will_snapshot.message.payload, w.payload);
    // Read back: the same deadlines as instants.
    let (_, expires_at, will) = (**snapshot).clone().into_session(&now).unwrap();
    assert_eq!(expires_at, offline.expires_at);
    assert_eq!(will.map(|(_, due)| due), Some(*due));

    // No delay: the will goes now; without `with_offline_snapshots` no
    // snapshot is made.
    p.connect(will_connect(0));
    p.lose();
    let mut l = Lifecycle::new();
    let offline = l.handle_offline(p.parked.take().unwrap(), p.wills.pop(), &now);
    assert!(matches!(offline.will, WillPlan::PublishNow(_)));
    assert!(matches!(
        events(&mut l).as_slice(),
        [SessionEvent::Offline {
            snapshot: None,
            will_due_unix_ms: None,
            ..
        }]
    ));
}

#[test]
fn a_session_that_never_expires_has_no_deadline() {
    let p = Pair::new(cfg());
    let now = clock(&p);
    let mut l = Lifecycle::new();
    let offline = l.handle_offline(Session::new(ByteStr::from("c"), u32::MAX, 10), None, &now);
    assert_eq!(offline.expires_at, None);
    l.handle_expired(&offline.session, &now);
    l.handle_ended(&ByteStr::from("d"), &now);
    let kinds: Vec<_> = events(&mut l).iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["offline", "expired", "ended"]);
}

#[test]
fn unpolled_events_are_bounded() {
    let p = Pair::new(cfg());
    let now = clock(&p);
    let mut l = Lifecycle::new();
    let id = ByteStr::from("c");
    for _ in 0..crate::limits::SESSION_EVENTS_MAX + 5 {
        l.handle_ended(&id, &now);
    }
    assert_eq!(l.events_dropped(), 5);
    assert_eq!(events(&mut l).len(), crate::limits::SESSION_EVENTS_MAX);
}

/// An event about a session that stays (online, parked) carries a copy of
/// its id: a clone would give the session's id a shared header for the
/// rest of its life, paid by every idle connection.
#[test]
fn events_about_a_kept_session_do_not_share_its_id() {
    let p = Pair::new(cfg());
    let now = clock(&p);
    let mut l = Lifecycle::new();
    let session = Session::new(ByteStr::from("kept"), 60, 10);
    let session_bytes = session.client_id().as_str().as_ptr();
    l.handle_online(&session, false, &now);
    let offline = l.handle_offline(session, None, &now);
    let seen = events(&mut l);
    assert_eq!(seen.len(), 2);
    for event in seen {
        let id = match &event {
            SessionEvent::Created { client_id, .. } | SessionEvent::Offline { client_id, .. } => {
                client_id
            }
            other => panic!("unexpected event {other:?}"),
        };
        assert_eq!(id.as_str(), "kept");
        assert_ne!(id.as_str().as_ptr(), session_bytes, "{}", event.kind());
    }
    assert_eq!(offline.session.client_id().as_str().as_ptr(), session_bytes);
}
