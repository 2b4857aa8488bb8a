//! This node's part in a rebalance (`coordinator.rs` drives it from the
//! coordinator node): a donor reports itself unavailable to load
//! balancers from the start, refuses new clients once the health-check
//! wait is over (MQTT 5: CONNACK 0x9C without a Server Reference, 3.1.1:
//! code 3), and evicts what each tick asks (DISCONNECT 0x9C without a
//! Server Reference: clients come back through the load balancer); a
//! recipient only shows the rebalance in its status. Both return to
//! normal on `Leave`, or by themselves when the coordinator stays silent
//! for `REBALANCE_PARTICIPANT_SILENCE_MS`.

use super::evacuation::Counts;
use super::params::RebalanceParams;
use super::peer::{Answer, Failure, Join, Tick, TickAnswer};
use super::plan::State;
use super::run::Rebalancer;
use crate::admission::Refusing;
use crate::codec::ReasonCode;
use crate::limits;
use crate::router::location::NodeId;
use crate::shard::PushReport;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This node's role in one rebalance.
pub(super) struct Participation {
    pub id: u64,
    pub coordinator: String,
    pub donor: bool,
    pub params: RebalanceParams,
    pub donors: Vec<String>,
    pub recipients: Vec<String>,
    /// The coordinator's last state (`plan::State::as_str`).
    pub state: String,
    pub connection_goal: u64,
    pub disconnected_session_goal: u64,
    pub initial: Counts,
    pub current: Counts,
    /// When the coordinator last spoke: a silent one ends it here.
    pub heard_at: Instant,
}

impl Rebalancer {
    pub(super) fn join(self: &Arc<Self>, join: Join) -> Answer {
        if self.is_running() {
            return Err(Failure::bad_request(
                None,
                format!("node {} is being evacuated", self.node_name),
            ));
        }
        {
            let mut p = self.participation.lock().expect("not poisoned");
            if let Some(other) = p.as_ref().filter(|p| p.id != join.id) {
                return Err(Failure::bad_request(
                    None,
                    format!(
                        "node {} already takes part in a rebalance coordinated by {}",
                        self.node_name, other.coordinator
                    ),
                ));
            }
            *p = Some(Participation {
                id: join.id,
                coordinator: join.coordinator.clone(),
                donor: join.donor,
                params: join.params,
                donors: join.donors,
                recipients: join.recipients,
                state: State::WaitHealthCheck.as_str().into(),
                connection_goal: 0,
                disconnected_session_goal: 0,
                initial: Counts::default(),
                current: Counts::default(),
                heard_at: Instant::now(),
            });
        }
        if join.donor {
            // Unavailable to load balancers at once, still accepting.
            self.admission.set_available(false);
        }
        tracing::warn!(node = %self.node_name, coordinator = %join.coordinator, donor = join.donor,
            "rebalance: taking part");
        tokio::spawn(self.clone().watch_coordinator(join.id));
        Ok(json!({}))
    }

    /// Ends this node's part in a coordinator's silence.
    async fn watch_coordinator(self: Arc<Self>, id: u64) {
        let silence = Duration::from_millis(limits::REBALANCE_PARTICIPANT_SILENCE_MS);
        loop {
            tokio::time::sleep(silence / 5).await;
            let heard_at = match &*self.participation.lock().expect("not poisoned") {
                Some(p) if p.id == id => p.heard_at,
                _ => return,
            };
            if heard_at.elapsed() > silence {
                self.leave(id, "its coordinator stopped answering");
                return;
            }
        }
    }

    pub(super) async fn tick(self: &Arc<Self>, tick: Tick) -> Answer {
        let (donor, recipients) = {
            let mut p = self.participation.lock().expect("not poisoned");
            let Some(p) = p.as_mut().filter(|p| p.id == tick.id) else {
                return Err(Failure::bad_request(
                    None,
                    format!("node {} takes no part in this rebalance", self.node_name),
                ));
            };
            p.heard_at = Instant::now();
            p.state.clone_from(&tick.state);
            p.connection_goal = tick.connection_goal;
            p.disconnected_session_goal = tick.disconnected_session_goal;
            (p.donor, p.recipients.clone())
        };
        if donor {
            // Refusing once load balancers had their time to notice.
            let refuse = tick.state != State::WaitHealthCheck.as_str();
            if refuse && self.admission.refusing().is_none() {
                self.admission.set_refusing(Some(Refusing {
                    server_reference: None,
                }));
            }
        }
        let counts = self
            .count()
            .await
            .map_err(|e| Failure::unavailable(format!("shards not counted: {e}")))?;
        let mut evicted = 0;
        let mut report = PushReport::default();
        if donor && tick.evict_connections > 0 {
            evicted = self
                .evict(
                    tick.evict_connections,
                    ReasonCode::USE_ANOTHER_SERVER,
                    Vec::new(),
                )
                .await;
        }
        if donor && tick.evict_sessions > 0 {
            let targets = recipients.iter().map(|n| NodeId::from_name(n)).collect();
            // Moved with their queued messages (`shard/session_push.rs`).
            report = self.node.push_sessions(tick.evict_sessions, targets).await;
        }
        let after = Counts {
            connected: counts.connected.saturating_sub(evicted),
            // An evicted client's session stays until it is taken over.
            sessions: counts.sessions.saturating_sub(report.moved),
            disconnected_sessions: (counts.disconnected_sessions + evicted)
                .saturating_sub(report.moved),
        };
        if let Some(p) = self
            .participation
            .lock()
            .expect("not poisoned")
            .as_mut()
            .filter(|p| p.id == tick.id)
        {
            if p.initial == Counts::default() {
                p.initial = counts;
            }
            p.current = after;
        }
        let answer = TickAnswer {
            connected: after.connected,
            sessions: after.sessions,
            disconnected_sessions: after.disconnected_sessions,
            sessions_moved: report.moved,
            sessions_failed: report.failed,
        };
        Ok(serde_json::to_value(answer).expect("serializes"))
    }

    /// Back to normal (rebalance `id` only: a later one is left alone).
    pub(super) fn leave(&self, id: u64, why: &str) {
        let left = {
            let mut p = self.participation.lock().expect("not poisoned");
            match p.as_ref() {
                Some(x) if x.id == id => p.take(),
                _ => None,
            }
        };
        let Some(left) = left else {
            return;
        };
        if left.donor && !self.is_running() {
            self.admission.set_refusing(None);
            self.admission.set_available(true);
        }
        tracing::warn!(node = %self.node_name, coordinator = %left.coordinator, why,
            "rebalance: back to normal");
    }

    pub(super) fn is_participating(&self) -> bool {
        self.participation.lock().expect("not poisoned").is_some()
    }

    /// This node's rebalance, EMQX's shape: as a participant, or as a
    /// coordinator taking no part itself.
    pub fn rebalance_json(&self) -> Option<Value> {
        if let Some(p) = &*self.participation.lock().expect("not poisoned") {
            return Some(json!({
                "process": "rebalance",
                "rebalance_id": p.id.to_string(),
                "state": p.state,
                "coordinator_node": p.coordinator,
                "role": if p.donor { "donor" } else { "recipient" },
                "connection_eviction_rate": p.params.conn_evict_rate,
                "session_eviction_rate": p.params.sess_evict_rate,
                "connection_goal": p.connection_goal,
                "disconnected_session_goal": p.disconnected_session_goal,
                "donors": p.donors,
                "recipients": p.recipients,
                "stats": {
                    "initial_connected": p.initial.connected,
                    "current_connected": p.current.connected,
                    "initial_sessions": p.initial.sessions,
                    "current_sessions": p.current.sessions,
                    "current_disconnected_sessions": p.current.disconnected_sessions,
                },
            }));
        }
        self.coordinator_json()
    }

    /// This node's entry of `global_status`'s `rebalances`, if any.
    pub fn rebalance_entry(&self) -> Option<Value> {
        self.rebalance_json().map(|mut v| {
            v["node"] = json!(self.node_name);
            v
        })
    }
}
