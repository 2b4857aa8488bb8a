//! The one table of a shard's calls to other shards awaiting their replies,
//! as plain data: tokens out, replies and lost peers in, finished calls out.
//! The shard wakes the waiter of a finished call (`mesh.rs`); tests and the
//! simulation (`sim.rs`) drive it directly.
//!
//! `Protocol` adds what the stop needs around it.
//!
//! Call order: `open` (a token, the peers asked, and an opaque waiter) ->
//! `handle_reply` for each reply / `handle_lost` for a request that never
//! left / `handle_peer_stopped` when a peer stops -> each of these returns
//! the waiter of a call that just finished -> `take` its outcome.

use super::msg::Mark;
use super::state::ShardId;
use ahash::AHashMap;

/// What one call got: a reply per peer that answered, in arrival order,
/// and the peers that cannot answer (the request could not be sent, or the
/// peer stopped first).
#[derive(Debug, PartialEq)]
pub struct Outcome<R> {
    pub replies: Vec<(ShardId, R)>,
    pub lost: Vec<ShardId>,
}

impl<R> Outcome<R> {
    /// The one reply of a call to one peer, if it came.
    pub fn into_single(mut self) -> Option<R> {
        debug_assert!(self.replies.len() + self.lost.len() == 1);
        self.replies.pop().map(|(_, r)| r)
    }
}

struct Pending<R, W> {
    /// Peers still to answer (a handful: at most the shard count).
    waiting_for: Vec<ShardId>,
    outcome: Outcome<R>,
    /// Taken when the call finishes; the caller gets its outcome with
    /// `take`.
    waiter: Option<W>,
}

pub struct ReplyTable<R, W> {
    next_token: u64,
    pending: AHashMap<u64, Pending<R, W>>,
    /// Replies that matched no open call (late, duplicate, or from a peer
    /// not asked): a broken invariant in tests, counted in production.
    stray: u64,
}

impl<R, W> Default for ReplyTable<R, W> {
    fn default() -> Self {
        ReplyTable {
            next_token: 1,
            pending: AHashMap::new(),
            stray: 0,
        }
    }
}

impl<R, W> ReplyTable<R, W> {
    /// A call to `peers` (each asked once); its token goes in the requests.
    pub fn open(&mut self, peers: impl IntoIterator<Item = ShardId>, waiter: W) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let waiting_for: Vec<ShardId> = peers.into_iter().collect();
        debug_assert!(!waiting_for.is_empty(), "a call asks at least one peer");
        self.pending.insert(
            token,
            Pending {
                waiting_for,
                outcome: Outcome {
                    replies: Vec::new(),
                    lost: Vec::new(),
                },
                waiter: Some(waiter),
            },
        );
        token
    }

    /// A reply from `from`; the waiter to wake if it was the last one due.
    pub fn handle_reply(&mut self, token: u64, from: ShardId, reply: R) -> Option<W> {
        let Some(p) = self.pending.get_mut(&token) else {
            self.stray += 1;
            return None;
        };
        let Some(at) = p.waiting_for.iter().position(|&s| s == from) else {
            self.stray += 1;
            return None;
        };
        p.waiting_for.swap_remove(at);
        p.outcome.replies.push((from, reply));
        Self::finished(p)
    }

    /// The request of `token` to `peer` could not be sent (the message was
    /// handed back): that peer will not answer.
    pub fn handle_lost(&mut self, token: u64, peer: ShardId) -> Option<W> {
        let p = self.pending.get_mut(&token)?;
        let at = p.waiting_for.iter().position(|&s| s == peer)?;
        p.waiting_for.swap_remove(at);
        p.outcome.lost.push(peer);
        Self::finished(p)
    }

    /// `peer` stopped: it sent everything it will ever send (its `Stop`
    /// came after its last reply), so every call still waiting for it
    /// has lost it. The waiters of the calls that finished.
    pub fn handle_peer_stopped(&mut self, peer: ShardId) -> Vec<W> {
        let mut woken = Vec::new();
        for p in self.pending.values_mut() {
            if let Some(at) = p.waiting_for.iter().position(|&s| s == peer) {
                p.waiting_for.swap_remove(at);
                p.outcome.lost.push(peer);
                woken.extend(Self::finished(p));
            }
        }
        woken
    }

    fn finished(p: &mut Pending<R, W>) -> Option<W> {
        if p.waiting_for.is_empty() {
            p.waiter.take()
        } else {
            None
        }
    }

    /// The outcome of a finished call (and its token retired); `None` while
    /// replies are still due.
    pub fn take(&mut self, token: u64) -> Option<Outcome<R>> {
        if !self.pending.get(&token)?.waiting_for.is_empty() {
            return None;
        }
        self.pending.remove(&token).map(|p| p.outcome)
    }

    /// The waiter of call `token` while replies are still due.
    #[cfg(test)]
    pub fn pending_waiter(&self, token: u64) -> Option<&W> {
        self.pending.get(&token)?.waiter.as_ref()
    }

    /// Calls not yet taken (finished or not).
    pub fn open_calls(&self) -> usize {
        self.pending.len()
    }

    pub fn stray_replies(&self) -> u64 {
        self.stray
    }
}

/// A shard's side of the mesh protocol, as plain data: its calls (the
/// reply table), which peers it told to stop (nothing more may go to them)
/// and which stopped (nobody is left to answer a request to them), and the
/// marks of the stop's steps that arrived. `mesh.rs` does the I/O around
/// it; the simulation (`sim.rs`) drives it with a seeded scheduler.
pub struct Protocol<R, W> {
    id: ShardId,
    count: u16,
    pub calls: ReplyTable<R, W>,
    stop_sent: Vec<bool>,
    peer_stopped: Vec<bool>,
    marks: [u16; Mark::COUNT],
    /// Peers gone without their stop (they failed): no mark will come
    /// from them, so waiting for marks does not wait for them.
    failed: u16,
    /// Messages handed back because their peer stopped or was told to.
    handed_back: u64,
}

impl<R, W> Protocol<R, W> {
    pub fn new(id: ShardId, count: u16) -> Self {
        Protocol {
            id,
            count,
            calls: ReplyTable::default(),
            stop_sent: vec![false; count as usize],
            peer_stopped: vec![false; count as usize],
            marks: [0; Mark::COUNT],
            failed: 0,
            handed_back: 0,
        }
    }

    pub fn peers(&self) -> impl Iterator<Item = ShardId> {
        let (id, count) = (self.id, self.count);
        (0..count).filter(move |&s| s != id)
    }

    /// Whether a message may go to `to`: not after this shard's
    /// `Mark::Stop` to it (its last message there).
    pub fn may_send(&self, to: ShardId) -> bool {
        !self.stop_sent[to as usize]
    }

    /// Whether a request to `to` can be answered: it may be sent and `to`
    /// has not stopped.
    pub fn may_request(&self, to: ShardId) -> bool {
        self.may_send(to) && !self.peer_stopped[to as usize]
    }

    /// A message could not go out and is back with its sender.
    pub fn handle_handed_back(&mut self) {
        self.handed_back += 1;
    }

    /// This shard sent `mark` to `to`.
    pub fn handle_mark_sent(&mut self, to: ShardId, mark: Mark) {
        if mark == Mark::Stop {
            self.stop_sent[to as usize] = true;
        }
    }

    /// `from`'s `mark` arrived, after everything it sent before. A stop
    /// ends every call still waiting for it: the waiters to wake.
    pub fn handle_mark(&mut self, from: ShardId, mark: Mark) -> Vec<W> {
        let seen = &mut self.marks[mark as usize];
        *seen += 1;
        assert!(*seen < self.count, "one mark per peer");
        if mark == Mark::Stop {
            self.peer_stopped(from)
        } else {
            Vec::new()
        }
    }

    /// `peer`'s channel closed: after its stop, nothing new; without it,
    /// the peer failed, and no mark will come from it.
    pub fn handle_peer_gone(&mut self, peer: ShardId) -> Vec<W> {
        if self.peer_stopped[peer as usize] {
            return Vec::new();
        }
        self.failed += 1;
        self.peer_stopped(peer)
    }

    /// `peer` will send nothing more: calls waiting for it have lost it.
    fn peer_stopped(&mut self, peer: ShardId) -> Vec<W> {
        self.peer_stopped[peer as usize] = true;
        self.calls.handle_peer_stopped(peer)
    }

    /// Whether every peer's `mark` arrived (or the peer failed).
    pub fn all_marked(&self, mark: Mark) -> bool {
        self.marks[mark as usize] + self.failed >= self.count - 1
    }

    pub fn handed_back(&self) -> u64 {
        self.handed_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = ReplyTable<&'static str, &'static str>;

    #[test]
    fn a_call_finishes_with_its_last_reply_and_wakes_once() {
        let mut t = Table::default();
        let token = t.open([1, 2, 3], "w");
        assert_eq!(t.handle_reply(token, 2, "b"), None);
        assert_eq!(t.take(token), None, "replies still due");
        assert_eq!(t.handle_reply(token, 1, "a"), None);
        assert_eq!(t.handle_reply(token, 3, "c"), Some("w"));
        let outcome = t.take(token).unwrap();
        assert_eq!(outcome.replies, vec![(2, "b"), (1, "a"), (3, "c")]);
        assert!(outcome.lost.is_empty());
        assert_eq!(t.open_calls(), 0);
        assert_eq!(t.take(token), None, "taken once");
    }

    #[test]
    fn late_duplicate_and_unasked_replies_are_stray() {
        let mut t = Table::default();
        let token = t.open([1], "w");
        assert_eq!(t.handle_reply(token, 2, "x"), None, "peer 2 was not asked");
        assert_eq!(t.handle_reply(token, 1, "a"), Some("w"));
        assert_eq!(t.handle_reply(token, 1, "again"), None);
        assert_eq!(t.take(token).unwrap().into_single(), Some("a"));
        assert_eq!(t.handle_reply(token, 1, "late"), None);
        assert_eq!(t.handle_reply(99, 1, "unknown"), None);
        assert_eq!(t.stray_replies(), 4);
    }

    #[test]
    fn a_request_handed_back_or_a_stopped_peer_ends_the_wait() {
        let mut t = Table::default();
        let all = t.open([1, 2], "all");
        let one = t.open([2], "one");
        let other = t.open([1], "other");
        assert_eq!(t.handle_lost(all, 1), None);
        assert_eq!(t.handle_lost(all, 1), None, "lost once");
        let mut woken = t.handle_peer_stopped(2);
        woken.sort();
        assert_eq!(woken, vec!["all", "one"]);
        let outcome = t.take(all).unwrap();
        assert!(outcome.replies.is_empty());
        assert_eq!(outcome.lost, vec![1, 2]);
        assert_eq!(t.take(one).unwrap().into_single(), None);
        assert_eq!(t.take(other), None, "peer 1 may still answer");
        assert_eq!(t.handle_reply(other, 1, "a"), Some("other"));
        assert_eq!(t.stray_replies(), 0);
    }
}
