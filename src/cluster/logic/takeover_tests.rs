use super::*;
use crate::cluster::logic::claims::ClaimTable;
use crate::cluster::logic::proto::Evict;
use crate::session::snapshot::MessageSnapshot;

const HOME: NodeId = NodeId(1);
const OLD: NodeId = NodeId(2);
const NEW: NodeId = NodeId(3);

fn delivery(n: u64) -> (MessageId, DeliverySnapshot) {
    let id = MessageId {
        node: 9,
        shard: 0,
        seq: n,
    };
    let d = DeliverySnapshot {
        message: MessageSnapshot {
            topic: "t".into(),
            payload: Bytes::from(n.to_le_bytes().to_vec()),
            qos: 1,
            retain: false,
            payload_format_indicator: None,
            message_expiry_interval_s: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
            content_type: None,
            origin: None,
            expires_at_unix_ms: None,
        },
        qos: 1,
        retain: false,
        subscription_ids: vec![],
        id: None,
    };
    (id, d)
}

/// A home and two nodes with every frame delivered at once.
struct World {
    home: ClaimTable,
    nodes: BTreeMap<NodeId, Takeovers>,
    now_ms: u64,
}

impl World {
    fn new() -> World {
        let mut nodes = BTreeMap::new();
        for n in [HOME, OLD, NEW] {
            nodes.insert(n, Takeovers::new(n));
        }
        World {
            home: ClaimTable::new(HOME),
            nodes,
            now_ms: 0,
        }
    }

    fn node(&mut self, n: NodeId) -> &mut Takeovers {
        self.nodes.get_mut(&n).unwrap()
    }

    /// Delivers frames until none is left; returns every node's events.
    fn run(&mut self) -> Vec<(NodeId, TakeoverEvent)> {
        let mut events = Vec::new();
        loop {
            let mut frames = Vec::new();
            while let Some((to, m)) = self.home.poll_transmit() {
                frames.push((HOME, to, m));
            }
            for (&n, t) in self.nodes.iter_mut() {
                while let Some((to, m)) = t.poll_transmit() {
                    frames.push((n, to, m));
                }
                while let Some(e) = t.poll_event() {
                    events.push((n, e));
                }
            }
            if frames.is_empty() {
                return events;
            }
            let now = self.now_ms;
            for (from, to, m) in frames {
                match m {
                    Message::Claim(c) => self.home.handle_claim(from, c, now),
                    Message::ClaimDone(d) => self.home.handle_claim_done(from, d, now),
                    Message::ClaimAnswer(a) => self.node(to).handle_claim_answer(a, now),
                    Message::TakeoverKick(k) => self.node(to).handle_kick(from, k, now),
                    Message::TakeoverExport(x) => self.node(to).handle_export(from, x, now),
                    Message::HeldRequest(r) => self.node(to).handle_held_request(from, r, now),
                    Message::HeldDeliveries(h) => self.node(to).handle_held(from, h),
                    Message::Evict(e) => self.node(to).handle_evict(e),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    fn tick(&mut self, ms: u64) -> Vec<(NodeId, TakeoverEvent)> {
        self.now_ms += ms;
        let now = self.now_ms;
        for t in self.nodes.values_mut() {
            t.handle_timeout(now);
        }
        self.home.handle_timeout(now);
        self.run()
    }
}

fn start_on_old(w: &mut World) {
    w.node(OLD)
        .connect("c", Location::new(OLD, 0), Some(HOME), 0);
    let ev = w.run();
    assert_eq!(
        ev,
        [(
            OLD,
            TakeoverEvent::Start {
                client_id: "c".into(),
                at: Location::new(OLD, 0),
                previous: None
            }
        )]
    );
}

#[test]
fn a_session_moves_with_its_held_deliveries_each_once_and_in_order() {
    let mut w = World::new();
    start_on_old(&mut w);
    w.node(NEW)
        .connect("c", Location::new(NEW, 1), Some(HOME), 1);
    let ev = w.run();
    assert_eq!(
        ev,
        [(
            OLD,
            TakeoverEvent::Export {
                client_id: "c".into()
            }
        )]
    );
    // Matched on the old node after the export started: held.
    let (id1, d1) = delivery(1);
    assert!(w.node(OLD).hold("c", id1, d1));
    w.node(OLD)
        .handle_exported("c", Some(Bytes::from_static(b"snapshot")));
    let ev = w.run();
    assert_eq!(
        ev,
        [(
            NEW,
            TakeoverEvent::Import {
                client_id: "c".into(),
                at: Location::new(NEW, 1),
                snapshot: Some(Bytes::from_static(b"snapshot"))
            }
        )]
    );
    // Routed on the new node once its routes are in: buffered, and also
    // matched on the old node (both have the subscriptions now).
    let (id2, d2) = delivery(2);
    assert_eq!(w.node(NEW).intercept("c", id2, d2.clone()), None);
    assert!(w.node(OLD).hold("c", id2, d2));
    w.node(NEW).handle_routes_acked("c", 2);
    assert!(w.run().is_empty(), "the old node lingers");
    // Late on the old node's data stream, within the linger.
    let (id3, d3) = delivery(3);
    assert!(w.node(OLD).hold("c", id3, d3));
    let ev = w.tick(TAKEOVER_LINGER_MS);
    let delivered: Vec<u64> = ev
        .iter()
        .filter_map(|(_, e)| match e {
            TakeoverEvent::Deliver { id, .. } => Some(id.seq),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [1, 2, 3], "merged by id, each message once");
    assert!(ev.contains(&(
        OLD,
        TakeoverEvent::Drop {
            client_id: "c".into()
        }
    )));
    assert!(ev.contains(&(
        NEW,
        TakeoverEvent::Online {
            client_id: "c".into(),
            at: Location::new(NEW, 1)
        }
    )));
    assert_eq!(
        w.home.owner("c").map(|(at, _)| at),
        Some(Location::new(NEW, 1))
    );
    assert_eq!(w.node(NEW).stats().duplicates_dropped, 1);
    assert!(
        !w.node(OLD).hold("c", id1, delivery(1).1),
        "no longer moving"
    );
    assert_eq!(w.node(OLD).owned().count(), 0);
    assert_eq!(w.node(NEW).owned().count(), 1);
}

#[test]
fn a_dead_previous_owner_gives_a_fresh_session() {
    let mut w = World::new();
    start_on_old(&mut w);
    w.node(NEW)
        .connect("c", Location::new(NEW, 0), Some(HOME), 1);
    let ev = w.run();
    assert_eq!(ev.len(), 1, "the kick reached the old node: {ev:?}");
    // The old node dies before exporting.
    w.nodes.remove(&OLD);
    w.home.handle_member_down(OLD, 2);
    w.node(NEW).handle_member_down(OLD);
    let ev = w.run();
    assert_eq!(
        ev,
        [(
            NEW,
            TakeoverEvent::Start {
                client_id: "c".into(),
                at: Location::new(NEW, 0),
                previous: None
            }
        )]
    );
    assert_eq!(w.home.owner("c").map(|(at, _)| at.node), Some(NEW));
}

#[test]
fn a_silent_previous_owner_times_out_into_a_fresh_session() {
    let mut w = World::new();
    start_on_old(&mut w);
    w.node(NEW)
        .connect("c", Location::new(NEW, 0), Some(HOME), 0);
    w.run();
    // The old node never calls handle_exported.
    let ev = w.tick(TAKEOVER_TIMEOUT_MS);
    assert!(ev.contains(&(
        NEW,
        TakeoverEvent::Start {
            client_id: "c".into(),
            at: Location::new(NEW, 0),
            previous: None
        }
    )));
    assert_eq!(w.node(NEW).stats().export_timeouts, 1);
}

#[test]
fn a_kick_for_a_session_not_here_exports_nothing() {
    let mut w = World::new();
    start_on_old(&mut w);
    w.node(OLD).handle_session_ended("c", None);
    w.node(NEW)
        .connect("c", Location::new(NEW, 0), Some(HOME), 0);
    let ev = w.run();
    assert!(matches!(
        &ev[..],
        [(NEW, TakeoverEvent::Import { snapshot: None, .. })]
    ));
    w.node(NEW).handle_routes_acked("c", 0);
    assert!(w.run().is_empty());
    let ev = w.tick(TAKEOVER_LINGER_MS);
    assert!(ev
        .iter()
        .any(|(_, e)| matches!(e, TakeoverEvent::Online { .. })));
}

#[test]
fn no_home_refuses_and_a_second_connect_while_moving_is_refused() {
    let mut w = World::new();
    w.node(NEW).connect("c", Location::new(NEW, 0), None, 0);
    w.node(OLD)
        .connect("d", Location::new(OLD, 0), Some(HOME), 0);
    w.node(OLD)
        .connect("d", Location::new(OLD, 1), Some(HOME), 0);
    let ev = w.run();
    assert!(ev.contains(&(
        NEW,
        TakeoverEvent::Refused {
            client_id: "c".into()
        }
    )));
    assert!(ev.contains(&(
        OLD,
        TakeoverEvent::Refused {
            client_id: "d".into()
        }
    )));
}

#[test]
fn evict_drops_only_an_older_owner() {
    let mut w = World::new();
    start_on_old(&mut w);
    let (_, _, epoch) = w
        .node(OLD)
        .owned()
        .next()
        .map(|(a, b, c)| (a.to_owned(), b, c))
        .unwrap();
    let older = ClaimEpoch {
        counter: epoch.counter - 1,
        ..epoch
    };
    w.node(OLD).handle_evict(Evict {
        client_id: "c".into(),
        epoch: older,
    });
    assert_eq!(
        w.node(OLD).poll_event(),
        None,
        "newer than the evicted epoch"
    );
    w.node(OLD).handle_evict(Evict {
        client_id: "c".into(),
        epoch,
    });
    assert_eq!(
        w.node(OLD).poll_event(),
        Some(TakeoverEvent::Evict {
            client_id: "c".into()
        })
    );
}
