//! Shared groups and their forwards between driver cores (the harness is
//! `super`'s).

use super::*;

#[test]
fn shared_group_members_reach_every_peer() {
    let mut c = Cluster::new(&[1, 2, 3], 2);
    c.connect_all();
    let (done, mut released) = oneshot::channel();
    let now = c.now_ms;
    let members = |n| InterestChange {
        filter: ByteStr::from("t/#"),
        group: Some(ByteStr::from("g")),
        members: n,
    };
    c.node(2).core.handle_request(
        ToDriver::Interest {
            shard: 1,
            change: members(1),
            done: Some(done),
        },
        &clock(now),
    );
    c.settle();
    for node in [1, 3] {
        for shard in 0..2 {
            assert!(
                c.has_route(node, shard, 2, "$share/g/t/#"),
                "{node}/{shard}"
            );
        }
    }
    assert_eq!(answered(&mut released), Some(()), "SUBACK after the peers");
    let now = c.now_ms;
    c.node(2).core.handle_request(
        ToDriver::Interest {
            shard: 1,
            change: members(0),
            done: None,
        },
        &clock(now),
    );
    c.settle();
    assert!(!c.has_route(1, 0, 2, "$share/g/t/#"));
}

#[test]
fn a_shared_pick_on_a_node_is_forwarded_for_its_group_and_acked_with_the_rest() {
    let mut c = Cluster::new(&[1, 2, 3], 2);
    c.connect_all();
    c.node(2).hold_queued = true;
    let key = |g: &str| crate::router::SharedKey {
        group: ByteStr::from(g),
        filter: ByteStr::from("t/#"),
    };
    // Node 2: ordinary subscribers and a member of group g; node 3: a
    // member of group h.
    let mut answer = c
        .publish_shared(
            1,
            1,
            &[2],
            vec![(NodeId(2), key("g")), (NodeId(3), key("h"))],
            "t/1",
            QoS::AtLeastOnce,
        )
        .expect("qos 1");
    c.settle();
    let on2: Vec<String> = c.node(2).delivered[1].iter().map(|d| d.3.clone()).collect();
    assert_eq!(on2, ["t/1", "t/1>g"]);
    let on3: Vec<String> = c.node(3).delivered[1].iter().map(|d| d.3.clone()).collect();
    assert_eq!(on3, ["t/1>h"]);
    // Node 2 queued only its first frame: the publisher still waits.
    let held = std::mem::take(&mut c.node(2).held);
    let now = c.now_ms;
    queued(&mut c.node(2).core, &held[0], now);
    c.settle();
    assert_eq!(
        answered(&mut answer),
        None,
        "node 2's shared frame is not queued"
    );
    queued(&mut c.node(2).core, &held[1], now);
    c.settle();
    assert_eq!(answered(&mut answer), Some(true));
}

#[test]
fn a_forward_for_an_invalid_group_is_refused_and_acknowledged() {
    use crate::cluster::logic::proto::{Forward, MessageId, SharedTarget};
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    let forward = Forward {
        id: MessageId {
            node: 1,
            shard: 0,
            seq: 1,
        },
        stream_seq: 1,
        message: crate::session::snapshot::MessageSnapshot::of(
            &message("t/1", QoS::AtLeastOnce),
            &clock(T0),
        ),
        shared: Some(SharedTarget {
            group: "g+".into(),
            filter: "t/#".into(),
        }),
    };
    let body = Message::Forward(forward).encode().unwrap();
    let kind = crate::cluster::logic::proto::kind::Forward;
    c.node(2).core.handle_frame(
        NodeId(1),
        StreamId::Data { shard: 0 },
        kind,
        &bytes::Bytes::from(body),
        &clock(T0),
    );
    c.settle();
    assert!(c.node(2).delivered[0].is_empty());
    assert_eq!(c.node(2).core.stats().bad_messages, 1);
}
