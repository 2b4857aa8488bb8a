//! The `Interest` part of a shard: the numbering of its router's interest
//! changes and how far it applied the other shards' (`router::interest`,
//! which also explains the race the marks close).

use super::state::{Shard, ShardId};
use crate::router::{InterestChange, InterestClock, InterestMarks, NumberedChange};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub struct Interest {
    id: ShardId,
    count: u16,
    /// This shard's interest sequence and how far it applied the others'.
    clock: RefCell<InterestClock>,
    /// Per shard, its latest added ordinary interest (this shard writes
    /// only its own): a publish also goes to the shards whose additions
    /// this shard has not applied yet.
    marks: Arc<InterestMarks>,
}

impl Interest {
    pub fn new(id: ShardId, count: u16, marks: Arc<InterestMarks>) -> Interest {
        Interest {
            id,
            count,
            clock: RefCell::new(InterestClock::new(id, count)),
            marks,
        }
    }

    /// Numbers an interest change this shard's router just made, and marks
    /// an addition of ordinary interest for the other shards' publish paths.
    /// Called in the same step as the router's change, with no await
    /// between: the mark must be up while the router holds the
    /// subscription and before any shard can have applied it.
    pub fn number(&self, change: InterestChange) -> NumberedChange {
        let adds = change.group.is_none() && change.members > 0;
        let mut clock = self.clock.borrow_mut();
        let update = NumberedChange {
            seq: clock.issue_change(adds),
            change,
        };
        debug_assert_eq!(adds, update.adds_ordinary_interest());
        if self.count > 1 && adds {
            self.marks.set(self.id, clock.mark());
        }
        update
    }

    /// A SUBSCRIBE was decoded on this shard: other shards send publishes
    /// here until `end_subscribe` (`InterestClock::begin_subscribe`). False
    /// on a one-shard node, where nothing is to be told.
    fn begin_subscribe(&self) -> bool {
        if self.count < 2 {
            return false;
        }
        let mut clock = self.clock.borrow_mut();
        clock.begin_subscribe();
        self.marks.set(self.id, clock.mark());
        true
    }

    fn end_subscribe(&self) {
        let mut clock = self.clock.borrow_mut();
        clock.end_subscribe();
        self.marks.set(self.id, clock.mark());
    }

    /// Adds to `shards` every shard whose added interest this shard has not
    /// applied yet: their new subscribers may match.
    #[inline]
    pub fn add_shards_behind(&self, shards: &mut SmallVec<[ShardId; 4]>) {
        self.clock.borrow().behind(&self.marks, |s| {
            if !shards.contains(&s) {
                shards.push(s);
            }
        });
    }

    /// Shard `from`'s change `seq` is applied here; false when it came out
    /// of order.
    pub fn applied_from(&self, from: ShardId, seq: u64) -> bool {
        self.clock.borrow_mut().applied_from(from, seq)
    }
}

/// A SUBSCRIBE decoded and not finished yet (`Shard::subscribe_pending`):
/// dropped when its connection has carried it out, or with the connection.
pub struct SubscribePending(Rc<Shard>);

impl Drop for SubscribePending {
    fn drop(&mut self) {
        self.0.interest.end_subscribe();
    }
}

impl Shard {
    /// A SUBSCRIBE was decoded on this shard: other shards send publishes
    /// here until the guard drops (`InterestClock::begin_subscribe`).
    pub fn subscribe_pending(self: &Rc<Self>) -> Option<SubscribePending> {
        self.interest
            .begin_subscribe()
            .then(|| SubscribePending(self.clone()))
    }
}
