//! The `Timers` part of a shard: delayed wills by due time, and the
//! cadence of the tick's periodic work (drop and admission reports, giving
//! free memory back). `Shard::tick` is the one place that runs them.

use super::state::{Shard, ShardSettings};
use crate::admission::ShardCountersSnapshot;
use crate::codec::ByteStr;
use crate::limits::{
    ADMISSION_REPORT_INTERVAL, DROP_REPORT_INTERVAL, FREE_MEMORY_RELEASE_INTERVAL,
};
use crate::session::{Message, WallClock};
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Delayed wills by due time; the sequence number orders wills due at the
/// same instant, the client id lets a reconnect cancel its will.
#[derive(Default)]
struct Wills {
    by_due: BTreeMap<(Instant, u64), (ByteStr, Arc<Message>)>,
    by_client: AHashMap<ByteStr, (Instant, u64)>,
    next_seq: u64,
}

pub struct Timers {
    wills: RefCell<Wills>,
    /// When the shard next sums its sessions' drop counters for the log.
    next_drop_report: Cell<Instant>,
    /// Drop total at the last report, so only growth is logged.
    reported_drops: Cell<u64>,
    /// When the shard next logs its redirect and refusal counts.
    next_admission_report: Cell<Instant>,
    /// Counts at the last report, so only growth is logged.
    reported_admission: Cell<ShardCountersSnapshot>,
    /// Connections at the last `release_free_memory`, and when it is due
    /// again whatever the connections do.
    released_at_connections: Cell<usize>,
    next_release: Cell<Instant>,
}

impl Timers {
    pub fn new(now: Instant) -> Timers {
        Timers {
            wills: RefCell::default(),
            next_drop_report: Cell::new(now + DROP_REPORT_INTERVAL),
            reported_drops: Cell::new(0),
            next_admission_report: Cell::new(now + ADMISSION_REPORT_INTERVAL),
            reported_admission: Cell::new(ShardCountersSnapshot::default()),
            released_at_connections: Cell::new(0),
            next_release: Cell::new(now + FREE_MEMORY_RELEASE_INTERVAL),
        }
    }

    pub fn schedule_will(&self, client_id: &ByteStr, will: Arc<Message>, due: Instant) {
        let wills = &mut *self.wills.borrow_mut();
        let key = (due, wills.next_seq);
        wills.next_seq += 1;
        wills.by_due.insert(key, (client_id.clone(), will));
        wills.by_client.insert(client_id.clone(), key);
    }

    /// Takes `client_id`'s delayed will out, if it has one.
    pub fn take_will(&self, client_id: &ByteStr) -> Option<Arc<Message>> {
        let wills = &mut *self.wills.borrow_mut();
        let key = wills.by_client.remove(client_id)?;
        wills.by_due.remove(&key).map(|(_, w)| w)
    }

    /// Takes `client_id`'s delayed will out with its due time.
    pub fn take_will_due(&self, client_id: &ByteStr) -> Option<(Arc<Message>, Instant)> {
        let wills = &mut *self.wills.borrow_mut();
        let key = wills.by_client.remove(client_id)?;
        wills.by_due.remove(&key).map(|(_, w)| (w, key.0))
    }

    /// Takes out the wills due at `now`.
    fn take_due(&self, now: Instant) -> Vec<Arc<Message>> {
        let wills = &mut *self.wills.borrow_mut();
        let later = wills.by_due.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut wills.by_due, later);
        due.into_values()
            .map(|(c, w)| {
                wills.by_client.remove(&c);
                w
            })
            .collect()
    }

    /// Takes out every delayed will (the node stops).
    pub fn take_all(&self) -> Vec<Arc<Message>> {
        let wills = &mut *self.wills.borrow_mut();
        wills.by_client.clear();
        std::mem::take(&mut wills.by_due)
            .into_values()
            .map(|(_, w)| w)
            .collect()
    }

    /// Whether the periodic job whose next time is `next` is due at `now`;
    /// if so, it is next due `interval` later.
    fn due(next: &Cell<Instant>, now: Instant, interval: std::time::Duration) -> bool {
        if now < next.get() {
            return false;
        }
        next.set(now + interval);
        true
    }
}

impl Shard {
    pub fn schedule_will(&self, client_id: &ByteStr, will: Arc<Message>, due: Instant) {
        self.timers.schedule_will(client_id, will, due);
    }

    pub fn cancel_will(&self, client_id: &ByteStr) {
        self.timers.take_will(client_id);
    }

    /// Sum the drop counters of every session held here and log the growth
    /// since the last report. O(sessions), so it runs rarely.
    pub fn report_drops(&self) -> u64 {
        let total = self.sessions.view(|slots| {
            use super::sessions::Slot;
            slots
                .values()
                .map(|s| match s {
                    Slot::Online(h) => h.conn.borrow().drop_counts().total(),
                    Slot::Offline(parked) => parked.session.drop_counts().total(),
                    Slot::Exported(_) | Slot::Importing(_) => 0,
                })
                .sum::<u64>()
        });
        let before = self.timers.reported_drops.replace(total);
        if total > before {
            tracing::info!(
                shard = self.id,
                dropped = total - before,
                "messages dropped since the last report (see docs: queue drop policy)"
            );
        }
        total
    }

    /// Log how many clients were redirected or refused since the last
    /// report: one line per interval at most, however high the rate (each
    /// redirect also has a debug line).
    pub fn report_admission(&self) {
        let mut now = self.counters.snapshot();
        now.connections = self.sessions.connections();
        let before = self.timers.reported_admission.replace(now);
        let redirected = now.redirected() - before.redirected();
        let refused = (now.refused_quota_exceeded + now.refused_server_unavailable)
            - (before.refused_quota_exceeded + before.refused_server_unavailable);
        if redirected + refused > 0 {
            tracing::info!(
                shard = self.id,
                redirected,
                refused,
                connections = now.connections,
                "clients redirected or refused since the last report (see /api/v5/status)"
            );
        }
    }

    /// Hands the allocator's free memory back to the system (see
    /// `ShardSettings::release_free_memory`) on the first tick after the
    /// number of connections changed, and at least every
    /// `FREE_MEMORY_RELEASE_INTERVAL`. Connecting and disconnecting clients
    /// is what frees memory in bulk (a connection's CONNECT phase allocates
    /// several times what it keeps); without this, 10,000 idle clients
    /// left about 550 bytes each of freed memory in the shard's RSS. The
    /// cost is a walk over the allocator's pages, not over connections.
    fn release_free_memory(&self, now: Instant) {
        let ShardSettings {
            release_free_memory: Some(release),
            ..
        } = self.settings
        else {
            return;
        };
        let t = &self.timers;
        let connections = self.sessions.connections();
        if connections != t.released_at_connections.get() || now >= t.next_release.get() {
            release();
            t.released_at_connections.set(connections);
            t.next_release.set(now + FREE_MEMORY_RELEASE_INTERVAL);
        }
    }

    /// Periodic work: reports, due wills, expired offline sessions, silent
    /// clients, expired retained messages.
    pub async fn tick(self: &Rc<Self>, now: Instant) {
        self.routes.set_coarse_now(now);
        self.release_free_memory(now);
        if Timers::due(&self.timers.next_drop_report, now, DROP_REPORT_INTERVAL) {
            self.report_drops();
        }
        self.check_stalls(now);
        if Timers::due(
            &self.timers.next_admission_report,
            now,
            ADMISSION_REPORT_INTERVAL,
        ) {
            self.report_admission();
        }
        for will in self.timers.take_due(now) {
            self.publish(will).await;
        }
        // One pass over the sessions for both deadlines. Checking keepalive
        // here, at most `SHARD_TICK` late, instead of with a reactor timer
        // per connection saves every idle connection the timer's memory
        // (docs/performance.md, idle connections round 3).
        let (expired, silent) = self.sessions.take_expired(now);
        for h in silent {
            // DISCONNECT 0x8D (v5) and a close with the will, as if a timer
            // had fired in the connection's task; that task flushes and
            // closes.
            h.conn.borrow_mut().handle_timeout(now);
            self.drain_sync_actions(&h);
        }
        let clock = WallClock::now();
        for mut session in expired {
            self.with_lifecycle(|l| l.handle_expired(&session, &clock));
            self.durable_forget(&mut session);
            tracing::debug!(shard = self.id, client_id = %session.client_id(), "session expired");
            self.end_session(session).await;
        }
        self.routes.expire_retained(now);
        // Sessions a newer owner took in Redis (`durable_resume`).
        self.end_fenced().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn will(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::new(),
            qos: crate::codec::QoS::AtMostOnce,
            retain: false,
            properties: None,
            origin: None,
            expires_at: None,
            id: None,
        })
    }

    #[test]
    fn wills_come_due_in_order_and_a_reconnect_cancels_one() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        let s = Duration::from_secs(1);
        timers.schedule_will(&"b".into(), will("b"), t0 + 2 * s);
        timers.schedule_will(&"a".into(), will("a"), t0 + s);
        timers.schedule_will(&"c".into(), will("c"), t0 + 3 * s);
        assert!(timers.take_will(&"c".into()).is_some());
        assert!(timers.take_will(&"c".into()).is_none());
        assert!(timers.take_due(t0).is_empty());
        let due: Vec<_> = timers
            .take_due(t0 + 2 * s)
            .iter()
            .map(|w| w.topic.to_string())
            .collect();
        assert_eq!(due, ["a", "b"]);
        assert!(timers.take_will(&"a".into()).is_none());
        assert!(timers.take_all().is_empty());
    }
}
