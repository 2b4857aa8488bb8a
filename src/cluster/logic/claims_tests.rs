use super::*;
use crate::cluster::logic::homes::Role;

const HOME: NodeId = NodeId(1);

fn at(node: u32, shard: u16) -> Location {
    Location::new(NodeId(node), shard)
}

fn claim(id: &str, claimant: Location, request: u64) -> Claim {
    Claim {
        client_id: id.into(),
        claimant: claimant.into(),
        request,
    }
}

fn answers(t: &mut ClaimTable) -> Vec<(NodeId, ClaimAnswer)> {
    std::iter::from_fn(|| t.poll_transmit())
        .filter_map(|(to, m)| match m {
            Message::ClaimAnswer(a) => Some((to, a)),
            Message::Evict(_) => None,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn done(t: &mut ClaimTable, a: &ClaimAnswer, owner: Location, now_ms: u64) {
    t.handle_claim_done(
        owner.node,
        ClaimDone {
            client_id: a.client_id.clone(),
            epoch: a.epoch.unwrap(),
            owner: owner.into(),
        },
        now_ms,
    );
}

#[test]
fn claims_of_one_id_are_served_one_at_a_time_with_the_previous_owner() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 10);
    t.handle_claim(NodeId(3), claim("c", at(3, 1), 1), 11);
    t.handle_claim(NodeId(4), claim("c", at(4, 0), 1), 12);
    let first = answers(&mut t);
    assert_eq!(first.len(), 1, "the others wait");
    assert_eq!((first[0].0, first[0].1.previous), (NodeId(2), None));
    done(&mut t, &first[0].1, at(2, 0), 13);
    let second = answers(&mut t);
    assert_eq!(second[0].0, NodeId(3));
    assert_eq!(second[0].1.previous, Some(at(2, 0).into()));
    assert!(second[0].1.epoch > first[0].1.epoch);
    done(&mut t, &second[0].1, at(3, 1), 14);
    // The previous owner is told it lost, in case its takeover failed.
    assert_eq!(t.stats().evictions, 1);
    let third = answers(&mut t);
    assert_eq!(third[0].1.previous, Some(at(3, 1).into()));
    done(&mut t, &third[0].1, at(4, 0), 15);
    assert_eq!(t.owner("c").map(|(l, _)| l), Some(at(4, 0)));
}

#[test]
fn a_claimant_that_never_finishes_is_taken_as_owner_after_the_timeout() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 0);
    t.handle_claim(NodeId(3), claim("c", at(3, 0), 1), 0);
    answers(&mut t);
    assert_eq!(t.poll_timeout(), Some(CLAIM_TIMEOUT_MS));
    t.handle_timeout(CLAIM_TIMEOUT_MS);
    let next = answers(&mut t);
    assert_eq!(next[0].1.previous, Some(at(2, 0).into()));
    assert_eq!(t.stats().timed_out, 1);
}

#[test]
fn owners_on_a_dead_node_are_forgotten() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 0);
    let a = answers(&mut t);
    done(&mut t, &a[0].1, at(2, 0), 1);
    t.handle_member_down(NodeId(2), 2);
    t.handle_claim(NodeId(3), claim("c", at(3, 0), 1), 3);
    assert_eq!(answers(&mut t)[0].1.previous, None, "a fresh session");
    // A claimant dying mid-claim releases the id for the next one.
    t.handle_claim(NodeId(4), claim("c", at(4, 0), 1), 4);
    t.handle_member_down(NodeId(3), 5);
    assert_eq!(answers(&mut t)[0].0, NodeId(4));
}

#[test]
fn too_many_waiting_claims_are_refused() {
    let mut t = ClaimTable::new(HOME);
    for i in 0..=(CLAIMS_WAITING_PER_ID_MAX as u64 + 1) {
        t.handle_claim(NodeId(2), claim("c", at(2, 0), i), 0);
    }
    let a = answers(&mut t);
    assert_eq!(a.len(), 2);
    assert!(a[0].1.epoch.is_some() && a[1].1.epoch.is_none());
    assert_eq!(t.stats().refused, 1);
}

#[test]
fn a_claim_naming_another_node_is_ignored() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(3, 0), 1), 0);
    assert!(answers(&mut t).is_empty());
}

#[test]
fn after_a_partition_the_older_owner_is_evicted() {
    let mut t = ClaimTable::new(HOME);
    let old = ClaimEpoch {
        claimed_at_ms: 100,
        home: 1,
        counter: 1,
    };
    let new = ClaimEpoch {
        claimed_at_ms: 200,
        home: 9,
        counter: 1,
    };
    t.handle_owner_report(
        NodeId(2),
        OwnerReport {
            client_id: "c".into(),
            owner: at(2, 0).into(),
            epoch: old,
        },
    );
    t.handle_owner_report(
        NodeId(3),
        OwnerReport {
            client_id: "c".into(),
            owner: at(3, 0).into(),
            epoch: new,
        },
    );
    let sent: Vec<_> = std::iter::from_fn(|| t.poll_transmit()).collect();
    assert_eq!(
        sent,
        [(
            NodeId(2),
            Message::Evict(Evict {
                client_id: "c".into(),
                epoch: old
            })
        )]
    );
    assert_eq!(t.owner("c"), Some((at(3, 0), new)));
    // The loser reporting late is evicted again, the winner kept.
    t.handle_owner_report(
        NodeId(2),
        OwnerReport {
            client_id: "c".into(),
            owner: at(2, 0).into(),
            epoch: old,
        },
    );
    assert!(matches!(
        t.poll_transmit(),
        Some((NodeId(2), Message::Evict(_)))
    ));
    assert_eq!(t.owner("c"), Some((at(3, 0), new)));
}

#[test]
fn ids_homed_elsewhere_after_a_change_are_dropped() {
    let mut homes = Homes::new();
    homes.handle_member_up(HOME, Role::Core);
    let mut t = ClaimTable::new(HOME);
    for i in 0..100 {
        t.handle_claim(NodeId(2), claim(&format!("c{i}"), at(2, 0), i), 0);
    }
    let a = answers(&mut t);
    for (_, ans) in &a {
        done(&mut t, ans, at(2, 0), 1);
    }
    homes.handle_member_up(NodeId(5), Role::Core);
    t.handle_homes_changed(&homes);
    let kept = (0..100)
        .filter(|i| t.owner(&format!("c{i}")).is_some())
        .count();
    let homed = (0..100)
        .filter(|i| homes.home_of(&format!("c{i}")) == Some(HOME))
        .count();
    assert_eq!(kept, homed);
    assert!(kept > 20 && kept < 80, "{kept}");
}

#[test]
fn a_claim_sent_again_is_answered_again_or_ignored_while_it_waits() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 10);
    t.handle_claim(NodeId(3), claim("c", at(3, 0), 7), 11);
    let first = answers(&mut t);
    assert_eq!(first.len(), 1);
    // Both claimants lost their link and send their claims again.
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 12);
    t.handle_claim(NodeId(3), claim("c", at(3, 0), 7), 12);
    let again = answers(&mut t);
    assert_eq!(again, first, "the served claim gets the same answer");
    done(&mut t, &first[0].1, at(2, 0), 13);
    let second = answers(&mut t);
    assert_eq!(second.len(), 1, "the waiting claim was queued once");
    assert_eq!(second[0].0, NodeId(3));
    done(&mut t, &second[0].1, at(3, 0), 14);
    assert!(answers(&mut t).is_empty());
}

#[test]
fn an_ended_session_is_forgotten_unless_it_moved_on() {
    let mut t = ClaimTable::new(HOME);
    t.handle_claim(NodeId(2), claim("c", at(2, 0), 1), 10);
    let a = answers(&mut t).remove(0).1;
    done(&mut t, &a, at(2, 0), 11);
    let ended = |owner: Location, epoch| OwnerEnded {
        client_id: "c".into(),
        owner: owner.into(),
        epoch,
    };
    t.handle_owner_ended(NodeId(3), ended(at(2, 0), a.epoch.unwrap()));
    assert_eq!(t.ids(), 1, "only the owner itself may end it");
    t.handle_claim(NodeId(3), claim("c", at(3, 0), 1), 12);
    let b = answers(&mut t).remove(0).1;
    done(&mut t, &b, at(3, 0), 13);
    t.handle_owner_ended(NodeId(2), ended(at(2, 0), a.epoch.unwrap()));
    assert_eq!(t.ids(), 1, "a late end of the old owner changes nothing");
    t.handle_owner_ended(NodeId(3), ended(at(3, 0), b.epoch.unwrap()));
    assert_eq!(t.ids(), 0);
    assert_eq!(t.owner("c"), None);
}
