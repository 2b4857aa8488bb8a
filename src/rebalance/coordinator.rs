//! The rebalance coordinator, on the admin thread of the node a
//! `POST {node}/start` names: it asks every participant its counts, plans
//! with `plan.rs` (pure: donors, recipients, per-tick evictions, the
//! balance rule), tells each participant (`Join`, then a `Tick` every
//! `REBALANCE_TICK_MS` carrying the state and what to evict), and ends
//! the rebalance everywhere (`Leave`) when balanced, stopped, or when a
//! participant is lost: not running any more, or silent for
//! `REBALANCE_PARTICIPANT_SILENCE_MS`.
//!
//! A tick's answers are the counts after that tick's evictions, fed to the
//! plan for the next one: the plan never waits for a slow node, and a tick
//! with a missing answer is skipped (the evictions it would have asked
//! wait one tick).

use super::params::RebalanceParams;
use super::peer::{Answer, Failure, Join, PeerCommand, Tick, TickAnswer};
use super::plan::{Load, Rebalance, State, Step, Stop};
use super::run::Rebalancer;
use crate::limits;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rebalance this node coordinates.
pub(super) struct Coordinating {
    pub id: u64,
    pub plan: Rebalance,
    /// Every participant, donors then recipients.
    pub participants: Vec<String>,
}

impl Rebalancer {
    /// `POST {this node}/start` with the API's body.
    pub(super) async fn rebalance_start_body(self: &Arc<Self>, body: &Value) -> Answer {
        let params = RebalanceParams::from_json(body)
            .map_err(|e| Failure::bad_request(Some(&e.field), e.message))?;
        self.start_rebalance(params).await
    }

    fn busy(&self) -> Option<String> {
        if self.is_running() {
            return Some(format!("node {} is being evacuated", self.node_name));
        }
        if self.coordinating.lock().expect("not poisoned").is_some() {
            return Some(format!(
                "a rebalance coordinated by {} is already running",
                self.node_name
            ));
        }
        let p = self.participation.lock().expect("not poisoned");
        p.as_ref().map(|p| {
            format!(
                "node {} already takes part in a rebalance coordinated by {}",
                self.node_name, p.coordinator
            )
        })
    }

    pub async fn start_rebalance(self: &Arc<Self>, mut params: RebalanceParams) -> Answer {
        if let Some(why) = self.busy() {
            return Err(Failure::bad_request(None, why));
        }
        let running = self.running_nodes().await;
        if params.nodes.is_empty() {
            params.nodes = running.clone();
        }
        if let Some(n) = params.nodes.iter().find(|n| !running.contains(n)) {
            return Err(Failure::bad_request(
                Some("nodes"),
                format!("nodes: node {n} is not a running node of the cluster"),
            ));
        }
        params.nodes.sort();
        params.nodes.dedup();
        // Counts of every participant; one that cannot answer stops it.
        let mut loads = Vec::new();
        for (node, answer) in self.tick_all(&params.nodes, |_| None).await {
            match answer {
                Ok(a) => loads.push(load(&node, &a)),
                Err(e) => {
                    return Err(Failure::bad_request(
                        Some("nodes"),
                        format!("nodes: node {node} cannot take part: {}", e.message),
                    ))
                }
            }
        }
        let plan = match Rebalance::start(params.clone(), self.now_ms(), &loads) {
            Ok(p) => p,
            Err(_) => return Err(Failure::bad_request(None, "nothing_to_balance")),
        };
        let id = (crate::session::WallClock::now().unix_ms << 8) | u64::from(fastrand::u8(..));
        {
            let mut c = self.coordinating.lock().expect("not poisoned");
            if c.is_some() {
                return Err(Failure::bad_request(
                    None,
                    format!(
                        "a rebalance coordinated by {} is already running",
                        self.node_name
                    ),
                ));
            }
            *c = Some(Coordinating {
                id,
                participants: plan
                    .donors()
                    .iter()
                    .chain(plan.recipients())
                    .cloned()
                    .collect(),
                plan: plan.clone(),
            });
        }
        // Nodes at the average are neither: they take no part.
        let participants: Vec<String> = plan
            .donors()
            .iter()
            .chain(plan.recipients())
            .cloned()
            .collect();
        for node in &participants {
            let join = Join {
                id,
                coordinator: self.node_name.clone(),
                donor: plan.is_donor(node),
                params: params.clone(),
                donors: plan.donors().to_vec(),
                recipients: plan.recipients().to_vec(),
            };
            if let Err(e) = self.ask(node, PeerCommand::Join(Box::new(join))).await {
                self.end(id, Err(Stop::ParticipantLost(node.clone()))).await;
                return Err(Failure::bad_request(
                    Some("nodes"),
                    format!("nodes: node {node} cannot take part: {}", e.message),
                ));
            }
        }
        tracing::warn!(coordinator = %self.node_name, donors = ?plan.donors(),
            recipients = ?plan.recipients(), "rebalance started");
        tokio::spawn(self.clone().coordinate(id, participants));
        Ok(json!({}))
    }

    /// Asks every node in `nodes` at once its tick (`None`: only its
    /// counts, from its status); answers in `nodes`' order.
    async fn tick_all(
        self: &Arc<Self>,
        nodes: &[String],
        tick: impl Fn(&str) -> Option<Tick>,
    ) -> Vec<(String, Result<TickAnswer, Failure>)> {
        let mut set = tokio::task::JoinSet::new();
        for (i, node) in nodes.iter().enumerate() {
            let (me, node, t) = (self.clone(), node.clone(), tick(node));
            set.spawn(async move {
                let answer = match t {
                    None => me.ask(&node, PeerCommand::Status).await.and_then(|v| {
                        me_counts(&v).ok_or_else(|| Failure::internal("no counts in the status"))
                    }),
                    Some(t) => me.ask(&node, PeerCommand::Tick(t)).await.and_then(|v| {
                        serde_json::from_value(v)
                            .map_err(|e| Failure::internal(format!("malformed tick answer: {e}")))
                    }),
                };
                (i, node, answer)
            });
        }
        let mut out: Vec<Option<(String, Result<TickAnswer, Failure>)>> =
            (0..nodes.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, node, answer)) = joined {
                out[i] = Some((node, answer));
            }
        }
        out.into_iter()
            .zip(nodes)
            .map(|(o, n)| o.unwrap_or_else(|| (n.clone(), Err(Failure::internal("task failed")))))
            .collect()
    }

    async fn coordinate(self: Arc<Self>, id: u64, participants: Vec<String>) {
        let silence = Duration::from_millis(limits::REBALANCE_PARTICIPANT_SILENCE_MS);
        let mut interval = tokio::time::interval(Duration::from_millis(limits::REBALANCE_TICK_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard: BTreeMap<String, Instant> = participants
            .iter()
            .map(|n| (n.clone(), Instant::now()))
            .collect();
        let mut step = Step::default();
        loop {
            interval.tick().await;
            let (state, conn_goal, sess_goal) =
                match &*self.coordinating.lock().expect("not poisoned") {
                    Some(c) if c.id == id => (c.plan.state(), c.plan.conn_goal, c.plan.sess_goal),
                    _ => return,
                };
            let of = |list: &[(String, u64)], node: &str| {
                list.iter().find(|(n, _)| n == node).map_or(0, |(_, k)| *k)
            };
            let answers = self
                .tick_all(&participants, |node| {
                    Some(Tick {
                        id,
                        state: state.as_str().into(),
                        evict_connections: of(&step.evict_connections, node),
                        evict_sessions: of(&step.evict_sessions, node),
                        connection_goal: conn_goal,
                        disconnected_session_goal: sess_goal,
                    })
                })
                .await;
            let running = self.running_nodes().await;
            let mut loads = Vec::new();
            let mut missing = false;
            let (mut asked_sessions, mut moved_sessions) = (0, 0);
            for (node, answer) in &answers {
                match answer {
                    Ok(a) => {
                        heard.insert(node.clone(), Instant::now());
                        loads.push(load(node, a));
                        moved_sessions += a.sessions_moved;
                        asked_sessions += a.sessions_moved + a.sessions_failed;
                    }
                    Err(e) => {
                        let silent = heard.get(node).is_some_and(|t| t.elapsed() > silence);
                        if !running.contains(node) || silent {
                            tracing::warn!(%node, error = %e.message, "rebalance: a participant is lost");
                            self.end(id, Err(Stop::ParticipantLost(node.clone()))).await;
                            return;
                        }
                        tracing::debug!(%node, error = %e.message, "rebalance: no tick answer");
                        missing = true;
                    }
                }
            }
            if missing {
                step = Step::default();
                continue;
            }
            if state == State::EvictingSessions && asked_sessions > 0 && moved_sessions == 0 {
                tracing::warn!(sessions = asked_sessions,
                    "rebalance: the donors' disconnected sessions cannot be moved; they stay until \
                     they expire or their clients reconnect elsewhere");
                self.end(id, Ok(())).await;
                return;
            }
            let now_ms = self.now_ms();
            let finished = {
                let mut c = self.coordinating.lock().expect("not poisoned");
                let Some(c) = c.as_mut().filter(|c| c.id == id) else {
                    return;
                };
                let before = c.plan.state();
                step = c.plan.handle_tick(now_ms, &loads);
                if c.plan.state() != before {
                    tracing::warn!(
                        from = before.as_str(),
                        to = c.plan.state().as_str(),
                        donor_avg = c.plan.donor_conn_avg,
                        recipient_avg = c.plan.recipient_conn_avg,
                        "rebalance state"
                    );
                }
                step.finished.take()
            };
            if let Some(outcome) = finished {
                self.end(id, outcome).await;
                return;
            }
        }
    }

    /// Ends rebalance `id` on every participant.
    async fn end(self: &Arc<Self>, id: u64, outcome: Result<(), Stop>) {
        let ended = {
            let mut c = self.coordinating.lock().expect("not poisoned");
            match c.as_ref() {
                Some(x) if x.id == id => c.take(),
                _ => None,
            }
        };
        let Some(ended) = ended else {
            return;
        };
        match &outcome {
            Ok(()) => tracing::warn!(coordinator = %self.node_name, "rebalance done: balanced"),
            Err(Stop::ParticipantLost(n)) => {
                tracing::warn!(coordinator = %self.node_name, lost = %n, "rebalance ended: a participant is lost")
            }
            Err(Stop::NothingToBalance) => {
                tracing::warn!(coordinator = %self.node_name, "rebalance ended: nothing to balance")
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for node in ended.participants {
            let me = self.clone();
            set.spawn(async move {
                if let Err(e) = me.ask(&node, PeerCommand::Leave { id }).await {
                    // It returns to normal by itself after its silence.
                    tracing::warn!(%node, error = %e.message, "rebalance: a participant was not told the end");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// `POST {this node}/stop`: the rebalance this node coordinates, or
    /// (asked here) the one it takes part in, through its coordinator.
    pub(super) async fn stop_rebalance(self: &Arc<Self>) -> Answer {
        let id = self
            .coordinating
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|c| c.id);
        if let Some(id) = id {
            tracing::warn!(coordinator = %self.node_name, "rebalance stopped");
            self.end(id, Ok(())).await;
            return Ok(json!({}));
        }
        let coordinator = self
            .participation
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|p| p.coordinator.clone());
        match coordinator {
            Some(c) if c != self.node_name => self.ask(&c, PeerCommand::RebalanceStop).await,
            _ => Err(Failure::bad_request(
                None,
                format!("no rebalance is running on node {}", self.node_name),
            )),
        }
    }

    pub(super) fn is_coordinating(&self) -> bool {
        self.coordinating.lock().expect("not poisoned").is_some()
    }

    /// The status of a coordinator that takes no part itself.
    pub(super) fn coordinator_json(&self) -> Option<Value> {
        let c = self.coordinating.lock().expect("not poisoned");
        let c = c.as_ref()?;
        let p = c.plan.params();
        Some(json!({
            "process": "rebalance",
            "rebalance_id": c.id.to_string(),
            "state": c.plan.state().as_str(),
            "coordinator_node": self.node_name,
            "role": "coordinator",
            "connection_eviction_rate": p.conn_evict_rate,
            "session_eviction_rate": p.sess_evict_rate,
            "connection_goal": c.plan.conn_goal,
            "disconnected_session_goal": c.plan.sess_goal,
            "donors": c.plan.donors(),
            "recipients": c.plan.recipients(),
            // EMQX's global status names the donors' averages (integers).
            "donor_conn_avg": c.plan.donor_conn_avg.round() as u64,
            "donor_sess_avg": c.plan.donor_sess_avg.round() as u64,
        }))
    }
}

fn load(node: &str, a: &TickAnswer) -> Load {
    Load {
        node: node.to_string(),
        connections: a.connected,
        disconnected_sessions: a.disconnected_sessions,
    }
}

/// A node's counts from its `Status` answer.
fn me_counts(v: &Value) -> Option<TickAnswer> {
    serde_json::from_value(v.get("counts")?.clone()).ok()
}
