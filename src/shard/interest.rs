//! The `Interest` part of a shard: the numbering of its router's interest
//! changes and how far it applied the other shards' (`router::interest`,
//! which also explains the race the marks close).

use super::state::ShardId;
use crate::router::{InterestChange, InterestClock, InterestMarks, NumberedChange};
use smallvec::SmallVec;
use std::cell::RefCell;
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
        let update = NumberedChange {
            seq: self.clock.borrow_mut().issue(),
            change,
        };
        if self.count > 1 && update.adds_ordinary_interest() {
            self.marks.set(self.id, update.seq);
        }
        update
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
