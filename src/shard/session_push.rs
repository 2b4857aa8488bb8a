//! Disconnected sessions pushed to other nodes (node evacuation's
//! `evicting_sessions`, a rebalance's session phase): the shards' part.
//! The protocol is `cluster::driver::session_push`'s: the source asks the
//! target to adopt a session, and the target takes it over with the
//! cluster's session takeover, as a connect there would.
//!
//! Source: [`NodeHandle::push_sessions`] spreads a number of sessions over
//! the node's shards; each shard picks offline sessions of its own
//! (`Shard::push_sessions`), asks the driver to push each to the next
//! target in turn and waits for every answer. The session stays here,
//! offline and matching, until the target's takeover exports it; it is
//! dropped only after the target has it (the takeover's held deliveries).
//!
//! Target: `Shard::adopt_pushed` claims the id (node-local, then at its
//! cluster home), imports the session with its expiry and its delayed
//! will, subscribes (routes acknowledged cluster-wide), merges what the
//! source held, and parks it offline as if its client had just left.

use super::inbox::NodeHandle;
use super::service::ShardContext;
use super::sessions::{Parked, Slot};
use super::state::Shard;
use crate::cluster::driver::takeover::ClaimOutcome;
use crate::cluster::driver::ToDriver;
use crate::codec::ByteStr;
use crate::limits::{SESSION_PUSH_BATCH_MAX, SESSION_PUSH_TIMEOUT_MS};
use crate::router::location::NodeId;
use crate::session::snapshot::SessionSnapshot;
use crate::session::{Session, WallClock};
use bytes::Bytes;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a push of sessions did: `moved` are on another node now; `failed`
/// stayed here (no answer, refused, target down) and may be tried again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    pub moved: u64,
    pub failed: u64,
}

impl PushReport {
    fn add(&mut self, other: PushReport) {
        self.moved += other.moved;
        self.failed += other.failed;
    }
}

impl NodeHandle {
    /// Moves up to `count` disconnected sessions of this node to `targets`
    /// (running peers), round robin over the targets and spread over the
    /// shards (evenly within what each holds offline, at most
    /// `SESSION_PUSH_BATCH_MAX` each, all shards at once). Returns when every
    /// push asked for has ended. Fewer than `count` are tried when the
    /// shards hold fewer offline sessions; nothing on a single node or with
    /// no target.
    pub async fn push_sessions(&self, count: u64, targets: Vec<NodeId>) -> PushReport {
        let mut report = PushReport::default();
        if targets.is_empty() || count == 0 {
            return report;
        }
        let targets: Arc<[NodeId]> = targets.into();
        // Each shard gets a share of `count` within what it holds offline,
        // one at a time in turn, so that a shard holding few does not
        // leave its share undone while another holds more.
        let held = self.call_all(|ctx| ctx.held_counts().disconnected_sessions);
        let Ok(offline) = held.await else {
            return report; // the node is stopping
        };
        let mut shares = vec![0u64; offline.len()];
        let mut left = count;
        while left > 0 {
            let mut given = false;
            for (share, &held) in shares.iter_mut().zip(&offline) {
                if left > 0 && *share < held.min(SESSION_PUSH_BATCH_MAX) {
                    *share += 1;
                    left -= 1;
                    given = true;
                }
            }
            if !given {
                break;
            }
        }
        let mut rotation = 0usize;
        let mut calls = Vec::new();
        for (shard, &share) in shares.iter().enumerate() {
            if share == 0 {
                continue;
            }
            let (t, r) = (targets.clone(), rotation);
            rotation += share as usize;
            calls.push(self.call_async(shard, move |ctx| ctx.push_sessions(share, t, r)));
        }
        // Every push has its own deadline in the driver; this one only
        // covers a shard that never answers (the node is stopping).
        let wait = Duration::from_millis(SESSION_PUSH_TIMEOUT_MS + 5_000);
        for call in calls {
            match tokio::time::timeout(wait, call).await {
                Ok(Ok(r)) => report.add(r),
                Ok(Err(e)) => tracing::debug!("session push: a shard did not run it: {e}"),
                Err(_) => tracing::warn!("session push: a shard did not answer in time"),
            }
        }
        report
    }
}

impl Shard {
    /// Pushes up to `count` of this shard's offline sessions, the `i`th to
    /// `targets[(rotation + i) % len]`; waits for every answer.
    async fn push_sessions(
        self: &Rc<Self>,
        count: u64,
        targets: &[NodeId],
        rotation: usize,
    ) -> PushReport {
        let mut report = PushReport::default();
        let Some(cluster) = &self.cluster else {
            return report;
        };
        if targets.is_empty() {
            return report;
        }
        let want = count.min(SESSION_PUSH_BATCH_MAX) as usize;
        let ids: Vec<String> = {
            let pushing = cluster.pushing.borrow();
            self.sessions.view(|slots| {
                slots
                    .values()
                    .filter_map(|s| match s {
                        Slot::Offline(p) => Some(p.session.client_id().as_str()),
                        _ => None,
                    })
                    .filter(|id| !pushing.contains(*id))
                    .take(want)
                    .map(str::to_owned)
                    .collect()
            })
        };
        cluster.pushing.borrow_mut().extend(ids.iter().cloned());
        let mut waiting = Vec::with_capacity(ids.len());
        for (i, client_id) in ids.into_iter().enumerate() {
            let to = targets[(rotation + i) % targets.len()];
            let (moved, answer) = oneshot::channel();
            let request = ToDriver::PushSession {
                client_id: client_id.clone(),
                to,
                moved,
            };
            // Fails only when the node stops: the answer then says so.
            let _ = cluster.driver().send(request).await;
            waiting.push((client_id, answer));
        }
        for (client_id, answer) in waiting {
            match answer.await {
                Ok(true) => report.moved += 1,
                _ => report.failed += 1,
            }
            cluster.pushing.borrow_mut().remove(&client_id);
        }
        if report != PushReport::default() {
            tracing::debug!(
                shard = self.id,
                moved = report.moved,
                failed = report.failed,
                "sessions pushed"
            );
        }
        report
    }

    /// A peer pushes the session of `client_id` here: take it over as a
    /// connect would, and park it offline. True if it is here now.
    async fn adopt_pushed(self: &Rc<Self>, client_id: ByteStr) -> bool {
        if self.cluster.is_none() {
            return false;
        }
        let prev = self.claim(&client_id).await;
        let adopted = match self.claim_in_cluster(&client_id).await {
            Some(ClaimOutcome::Import { snapshot }) => {
                // A session of the id on this node too (two owners after a
                // partition): the pushed one has the newer claim.
                if let Some(stale) = self.acquire_local(prev, &client_id, true).await {
                    self.unsubscribe_session(&stale).await;
                }
                self.import_pushed(&client_id, snapshot).await
            }
            // No other node had it: whatever this node holds stays (a
            // session on another shard comes here, offline as it was).
            Some(ClaimOutcome::Local) => {
                let here = self.acquire_local(prev, &client_id, false).await;
                let kept = here.is_some();
                if let Some(session) = here {
                    let expires_at = offline_expiry(&session);
                    self.park(&client_id, session, expires_at, None).await;
                }
                self.claim_done(&client_id).await;
                if !kept {
                    self.release(&client_id).await;
                }
                return false;
            }
            Some(ClaimOutcome::Refused) | None => {
                self.claim_done(&client_id).await;
                self.release_local(&client_id).await;
                return false;
            }
        };
        self.claim_done(&client_id).await;
        if !adopted {
            self.release(&client_id).await;
        }
        adopted
    }

    /// The takeover of a pushed session, from the source's snapshot: in
    /// with its expiry and delayed will, subscribed, merged with what the
    /// source held, then parked offline. False if there was no session
    /// (gone from the source meanwhile) or its snapshot was refused.
    async fn import_pushed(self: &Rc<Self>, client_id: &ByteStr, snapshot: Option<Bytes>) -> bool {
        let clock = WallClock::now();
        let decoded = snapshot
            .map(|bytes| SessionSnapshot::decode(&bytes).and_then(|s| s.into_session(&clock)));
        let (session, expires_at, will) = match decoded {
            Some(Ok((session, expires_at, will))) => (Some(session), expires_at, will),
            Some(Err(e)) => {
                tracing::warn!(client_id = %client_id, "pushed session refused: {e}");
                (None, None, None)
            }
            None => (None, None, None),
        };
        let Some(session) = self.bring_in(client_id, session).await else {
            return false;
        };
        self.park(client_id, session, expires_at, will).await;
        tracing::debug!(shard = self.id, client_id = %client_id, "pushed session adopted");
        true
    }

    /// Puts `session` in the slots as offline, with its delayed will.
    async fn park(
        self: &Rc<Self>,
        client_id: &ByteStr,
        session: Session,
        expires_at: Option<Instant>,
        will: Option<(crate::session::Message, Instant)>,
    ) {
        self.sessions.insert(
            client_id.as_str(),
            Slot::Offline(Box::new(Parked {
                session,
                expires_at,
            })),
        );
        if let Some((will, due)) = will {
            let will = Arc::new(will);
            if due <= Instant::now() {
                self.publish(will).await;
            } else {
                self.schedule_will(client_id, will, due);
            }
        }
    }
}

/// When a session brought here without its deadline expires: its whole
/// interval from now (`None`: never).
fn offline_expiry(session: &Session) -> Option<Instant> {
    let interval_s = session.expiry_interval_s();
    (interval_s != u32::MAX).then(|| Instant::now() + Duration::from_secs(u64::from(interval_s)))
}

/// The executor's and the driver's requests (`NodeHandle::call_async`).
impl ShardContext {
    pub fn push_sessions(
        self,
        count: u64,
        targets: Arc<[NodeId]>,
        rotation: usize,
    ) -> impl Future<Output = PushReport> {
        let shard = self.shard().clone();
        async move { shard.push_sessions(count, &targets, rotation).await }
    }

    pub fn adopt_pushed(self, client_id: String) -> impl Future<Output = bool> {
        let shard = self.shard().clone();
        async move { shard.adopt_pushed(ByteStr::from(client_id)).await }
    }
}
