//! Disconnected sessions pushed to another node (node evacuation's
//! `evicting_sessions`, a rebalance's session phase): the driver's part,
//! sans-IO. The shards' part is `shard::session_push`.
//!
//! A push is an invitation: the node moving a session away (the source)
//! sends [`SessionPush`] to the target; the target adopts the session with
//! the cluster's session takeover, exactly as if its client had connected
//! there (`driver::takeover`): it claims the id at its home (which records
//! the target as the owner under a newer epoch), the home names the source,
//! the source exports the session (kick-free: it is offline) and keeps its
//! subscriptions matching and holding; the target imports it as an offline
//! session, subscribes, waits for its routes to be acknowledged
//! cluster-wide, takes what the source held and tells the home it is done.
//! Then it answers [`SessionPushDone`] and the source counts the session
//! moved. Reusing the takeover keeps one protocol for a session changing
//! node, with its ordering, its merge of held deliveries and its claim
//! serialisation (a connect of the id anywhere waits behind the push at the
//! home, bounded by `limits::SESSION_PUSH_CONNECTS_WAITING_MAX` and
//! `SESSION_PUSH_CONNECT_WAIT_MS`). ADR 0006 says why push is done this way.
//!
//! Source: [`SessionPushes::handle_request`] (a shard asks), answered by
//! the target's `SessionPushDone`, or `false` when the target goes down or
//! does not answer within `SESSION_PUSH_TIMEOUT_MS`.
//! Target: [`SessionPushes::handle_push`] makes an [`AdoptJob`] for a
//! shard; its end ([`SessionPushes::handle_adopted`]) answers the source.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::sync::oneshot;
use tracing::debug;

use crate::cluster::logic::proto::{Message, SessionPush, SessionPushDone};
use crate::limits::{SESSION_PUSHES_MAX, SESSION_PUSH_TIMEOUT_MS};
use crate::router::location::{NodeId, ShardId};

/// A session this node asked a peer to adopt.
struct Outgoing {
    to: NodeId,
    request: u64,
    moved: oneshot::Sender<bool>,
    deadline_ms: u64,
}

/// Work for a shard of the target: adopt `client_id`'s session from
/// `from` (`ShardContext::adopt_pushed`), then `handle_adopted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptJob {
    pub client_id: String,
    pub from: NodeId,
    pub request: u64,
    pub shard: ShardId,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    pub pushed: u64,
    pub push_failed: u64,
    pub adopted: u64,
    pub adopt_failed: u64,
}

/// One node's session pushes in both roles. Sans-IO.
pub struct SessionPushes {
    shard_count: u16,
    next_request: u64,
    /// The adopting shard of the next incoming push (round robin).
    next_shard: u16,
    outgoing: HashMap<String, Outgoing>,
    /// Incoming pushes being adopted, by (source, client id).
    adopting: BTreeMap<(NodeId, String), u64>,
    transmits: VecDeque<(NodeId, Message)>,
    jobs: VecDeque<AdoptJob>,
    stats: PushStats,
}

impl SessionPushes {
    pub fn new(shard_count: u16) -> SessionPushes {
        assert!(shard_count >= 1);
        SessionPushes {
            shard_count,
            next_request: 0,
            next_shard: 0,
            outgoing: HashMap::new(),
            adopting: BTreeMap::new(),
            transmits: VecDeque::new(),
            jobs: VecDeque::new(),
            stats: PushStats::default(),
        }
    }

    pub fn stats(&self) -> PushStats {
        self.stats
    }

    fn busy(&self) -> bool {
        self.outgoing.len() + self.adopting.len() >= SESSION_PUSHES_MAX
    }

    // ------------------------------------------------------------ source

    /// A shard asks to move `client_id` to `to` (a running peer:
    /// `running` says whether it is one).
    pub fn handle_request(
        &mut self,
        client_id: String,
        to: NodeId,
        running: bool,
        moved: oneshot::Sender<bool>,
        now_ms: u64,
    ) {
        if !running || self.busy() || self.outgoing.contains_key(&client_id) {
            self.stats.push_failed += 1;
            let _ = moved.send(false);
            return;
        }
        self.next_request += 1;
        let request = self.next_request;
        self.transmits.push_back((
            to,
            Message::SessionPush(SessionPush {
                client_id: client_id.clone(),
                request,
            }),
        ));
        self.outgoing.insert(
            client_id,
            Outgoing {
                to,
                request,
                moved,
                deadline_ms: now_ms + SESSION_PUSH_TIMEOUT_MS,
            },
        );
    }

    /// The target's answer.
    pub fn handle_done(&mut self, from: NodeId, done: SessionPushDone) {
        let ours = self
            .outgoing
            .get(&done.client_id)
            .is_some_and(|o| o.to == from && o.request == done.request);
        if !ours {
            return;
        }
        let out = self.outgoing.remove(&done.client_id).expect("present");
        if done.moved {
            self.stats.pushed += 1;
        } else {
            self.stats.push_failed += 1;
        }
        let _ = out.moved.send(done.moved);
    }

    // ------------------------------------------------------------ target

    /// `from` asks this node to adopt a session.
    pub fn handle_push(&mut self, from: NodeId, push: SessionPush) {
        let key = (from, push.client_id);
        if self.busy() || self.adopting.contains_key(&key) {
            self.stats.adopt_failed += 1;
            self.transmits.push_back((
                from,
                Message::SessionPushDone(SessionPushDone {
                    client_id: key.1,
                    request: push.request,
                    moved: false,
                }),
            ));
            return;
        }
        let shard = self.next_shard;
        self.next_shard = (self.next_shard + 1) % self.shard_count;
        self.adopting.insert(key.clone(), push.request);
        self.jobs.push_back(AdoptJob {
            client_id: key.1,
            from,
            request: push.request,
            shard,
        });
    }

    /// A shard ran `job`: `moved` if the session is on this node now.
    pub fn handle_adopted(&mut self, job: AdoptJob, moved: bool) {
        self.adopting.remove(&(job.from, job.client_id.clone()));
        if moved {
            self.stats.adopted += 1;
        } else {
            self.stats.adopt_failed += 1;
        }
        debug!(client_id = %job.client_id, from = %job.from, moved, "session push adopted");
        self.transmits.push_back((
            job.from,
            Message::SessionPushDone(SessionPushDone {
                client_id: job.client_id,
                request: job.request,
                moved,
            }),
        ));
    }

    // ------------------------------------------------------------ membership and time

    /// Pushes to `node` fail (the session stays here if the takeover had
    /// not exported it yet; see ADR 0006 for what a target lost mid-move
    /// means). Adoptions from it go on: their takeover ends them.
    pub fn handle_member_down(&mut self, node: NodeId) {
        let gone: Vec<String> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.to == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let out = self.outgoing.remove(&id).expect("present");
            self.stats.push_failed += 1;
            let _ = out.moved.send(false);
        }
    }

    /// Earliest deadline. `O(pushes in flight)`, at most
    /// `SESSION_PUSHES_MAX`, none in steady state.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outgoing.values().map(|o| o.deadline_ms).min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let late: Vec<String> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.deadline_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            let out = self.outgoing.remove(&id).expect("present");
            self.stats.push_failed += 1;
            let _ = out.moved.send(false);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        self.transmits.pop_front()
    }

    pub fn poll_job(&mut self) -> Option<AdoptJob> {
        self.jobs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: NodeId = NodeId(1);
    const DST: NodeId = NodeId(2);

    fn push_done(m: Message) -> SessionPushDone {
        match m {
            Message::SessionPushDone(d) => d,
            other => panic!("not a push answer: {other:?}"),
        }
    }

    /// Source and target, frames carried by hand: the target adopts on
    /// its shards in turn and the source learns the session moved.
    #[test]
    fn a_push_is_adopted_and_answered() {
        let (mut src, mut dst) = (SessionPushes::new(2), SessionPushes::new(2));
        let mut answers = Vec::new();
        for id in ["a", "b"] {
            let (tx, rx) = oneshot::channel();
            src.handle_request(id.into(), DST, true, tx, 0);
            answers.push(rx);
        }
        while let Some((to, m)) = src.poll_transmit() {
            assert_eq!(to, DST);
            let Message::SessionPush(p) = m else {
                panic!("a push")
            };
            dst.handle_push(SRC, p);
        }
        let jobs: Vec<AdoptJob> = std::iter::from_fn(|| dst.poll_job()).collect();
        assert_eq!(jobs.iter().map(|j| j.shard).collect::<Vec<_>>(), [0, 1]);
        let mut jobs = jobs.into_iter();
        dst.handle_adopted(jobs.next().unwrap(), true);
        dst.handle_adopted(jobs.next().unwrap(), false);
        while let Some((to, m)) = dst.poll_transmit() {
            assert_eq!(to, SRC);
            src.handle_done(DST, push_done(m));
        }
        let got: Vec<bool> = answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect();
        assert_eq!(got, [true, false]);
        assert_eq!(src.stats().pushed, 1);
        assert_eq!(src.stats().push_failed, 1);
        assert_eq!(src.poll_timeout(), None);
    }

    #[test]
    fn a_target_down_or_silent_fails_the_push() {
        let mut src = SessionPushes::new(1);
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let (tx3, mut rx3) = oneshot::channel();
        src.handle_request("a".into(), DST, true, tx1, 0);
        src.handle_request("b".into(), NodeId(3), true, tx2, 10);
        src.handle_request("c".into(), DST, false, tx3, 10);
        assert_eq!(rx3.try_recv(), Ok(false), "not a running node");
        src.handle_member_down(DST);
        assert_eq!(rx1.try_recv(), Ok(false));
        assert_eq!(src.poll_timeout(), Some(10 + SESSION_PUSH_TIMEOUT_MS));
        src.handle_timeout(10 + SESSION_PUSH_TIMEOUT_MS - 1);
        assert!(rx2.try_recv().is_err(), "still waiting");
        src.handle_timeout(10 + SESSION_PUSH_TIMEOUT_MS);
        assert_eq!(rx2.try_recv(), Ok(false));
        // A stale answer (another request's number) changes nothing.
        let (tx4, mut rx4) = oneshot::channel();
        src.handle_request("d".into(), DST, true, tx4, 20);
        src.handle_done(
            DST,
            SessionPushDone {
                client_id: "d".into(),
                request: 1,
                moved: true,
            },
        );
        assert!(rx4.try_recv().is_err());
    }

    #[test]
    fn a_second_push_of_one_id_is_refused_while_the_first_runs() {
        let mut dst = SessionPushes::new(1);
        let push = SessionPush {
            client_id: "a".into(),
            request: 1,
        };
        dst.handle_push(SRC, push.clone());
        dst.handle_push(SRC, SessionPush { request: 2, ..push });
        assert_eq!(std::iter::from_fn(|| dst.poll_job()).count(), 1);
        let (to, m) = dst.poll_transmit().unwrap();
        assert_eq!(to, SRC);
        assert!(!push_done(m).moved);
    }
}
