//! The evacuation executor, on the admin thread's tokio runtime: every
//! `REBALANCE_TICK_MS` it counts what the shards hold, feeds the state
//! machine (`evacuation.rs`), evicts what it says through the shards'
//! inboxes, and sets admission (refusing, available). Shards never wait for
//! it. A running evacuation is persisted in
//! `node.data_dir/rebalance/evacuation.json` and resumed at the next start.

use super::coordinator::Coordinating;
use super::evacuation::{session_targets, Counts, Evacuation, State};
use super::params::EvacuationParams;
use super::participant::Participation;
use super::peer::{Answer, Failure, Peers};
use crate::admission::{NodeAdmission, Refusing};
use crate::codec::ReasonCode;
use crate::limits;
use crate::shard::{HeldCounts, NodeHandle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The file under `node.data_dir`.
const STATE_FILE: &str = "rebalance/evacuation.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Persisted {
    version: u32,
    params: EvacuationParams,
}

/// Why a start or a stop was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// An evacuation already runs (start), or none does (stop).
    AlreadyRunning,
    NotRunning,
    /// The node takes part in a rebalance, or coordinates one.
    InRebalance,
    /// The state file cannot be written: the evacuation would not survive
    /// a restart, so it does not start.
    Storage(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AlreadyRunning => {
                f.write_str("an evacuation is already running on this node")
            }
            StartError::NotRunning => f.write_str("no evacuation is running on this node"),
            StartError::InRebalance => {
                f.write_str("this node takes part in a rebalance: stop it first")
            }
            StartError::Storage(m) => f.write_str(m),
        }
    }
}

struct Running {
    evacuation: Evacuation,
    /// Tells this run's tick loop from a later one's after a stop and a
    /// new start.
    generation: u64,
}

/// One node's evacuation and its part in a rebalance, as the admin API,
/// `ringmq ctl` and the other nodes drive them.
pub struct Rebalancer {
    pub(super) node_name: String,
    state_file: PathBuf,
    pub(super) node: NodeHandle,
    pub(super) admission: Arc<NodeAdmission>,
    /// Only the admin thread locks it, never across an await.
    running: Mutex<Option<Running>>,
    generations: std::sync::atomic::AtomicU64,
    /// Evicted clients so far: where the next one's Server Reference list
    /// starts.
    rotation: std::sync::atomic::AtomicUsize,
    epoch: Instant,
    /// This node's part in a rebalance (`participant.rs`).
    pub(super) participation: Mutex<Option<Participation>>,
    /// The rebalance this node coordinates (`coordinator.rs`).
    pub(super) coordinating: Mutex<Option<Coordinating>>,
    /// The cluster, when the node is clustered (`peer.rs`).
    pub(super) peers: OnceLock<Peers>,
    /// The cluster's membership, where sessions can move (`set_cluster`);
    /// unset on a single node: sessions have nowhere to go.
    cluster: OnceLock<Arc<dyn crate::admin::ClusterControl>>,
    /// Sessions moved to other nodes and pushes that failed, since start.
    sessions_moved: std::sync::atomic::AtomicU64,
    sessions_push_failed: std::sync::atomic::AtomicU64,
}

impl Rebalancer {
    pub fn new(
        node_name: &str,
        data_dir: &Path,
        node: NodeHandle,
        admission: Arc<NodeAdmission>,
    ) -> Arc<Rebalancer> {
        Arc::new(Rebalancer {
            node_name: node_name.to_string(),
            state_file: data_dir.join(STATE_FILE),
            node,
            admission,
            running: Mutex::new(None),
            generations: Default::default(),
            rotation: Default::default(),
            epoch: Instant::now(),
            participation: Mutex::new(None),
            coordinating: Mutex::new(None),
            peers: OnceLock::new(),
            cluster: OnceLock::new(),
            sessions_moved: Default::default(),
            sessions_push_failed: Default::default(),
        })
    }

    /// A clustered node: evacuations and rebalances of other nodes are
    /// commanded through `port`, and theirs of this one come in through
    /// `incoming` (served once `spawn_services` runs).
    pub fn with_cluster(
        &self,
        control: Arc<dyn crate::admin::ClusterControl>,
        port: crate::cluster::driver::rebalance::RebalancePort,
        incoming: tokio::sync::mpsc::Receiver<crate::cluster::driver::rebalance::Incoming>,
    ) {
        let _ = self.peers.set(Peers {
            control,
            port,
            incoming: Mutex::new(Some(incoming)),
        });
    }

    /// The cluster this node is in: `evicting_sessions` moves the sessions
    /// left to its other running nodes (`migrate_to`).
    pub fn set_cluster(&self, control: Arc<dyn crate::admin::ClusterControl>) {
        let _ = self.cluster.set(control);
    }

    /// Where sessions go now (`session_targets`).
    async fn session_targets(&self, migrate_to: &[String]) -> Vec<crate::router::NodeId> {
        let Some(control) = self.cluster.get() else {
            return Vec::new();
        };
        let running: Vec<String> = control
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.node_status == crate::admin::NodeStatus::Running)
            .map(|p| p.node)
            .collect();
        session_targets(migrate_to, &running)
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// At start, before the listeners open: an evacuation persisted by an
    /// earlier run is resumed, refusing clients from the first CONNECT.
    /// Returns whether one was. Its tick loop starts with `spawn_services`.
    pub fn load_persisted(&self) -> bool {
        let text = match std::fs::read(&self.state_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                tracing::error!(file = %self.state_file.display(), error = %e,
                    "cannot read the persisted evacuation; not resuming it");
                return false;
            }
        };
        let persisted: Persisted = match serde_json::from_slice(&text) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(file = %self.state_file.display(), error = %e,
                    "the persisted evacuation is malformed; not resuming it (delete the file)");
                return false;
            }
        };
        if persisted.version != FORMAT_VERSION {
            tracing::error!(file = %self.state_file.display(), version = persisted.version,
                "the persisted evacuation has an unknown format version; not resuming it");
            return false;
        }
        let evacuation = Evacuation::resume(persisted.params, self.now_ms(), Counts::default());
        self.apply_admission(&evacuation);
        let generation = self.next_generation();
        *self.running.lock().expect("not poisoned") = Some(Running {
            evacuation,
            generation,
        });
        tracing::warn!(node = %self.node_name, "resuming the evacuation that ran when the node stopped");
        true
    }

    /// On the admin thread's runtime: the tick loop of an evacuation
    /// `load_persisted` resumed, and the service of the peers' commands.
    pub fn spawn_services(self: &Arc<Self>) {
        self.spawn_peer_service();
        let generation = match &*self.running.lock().expect("not poisoned") {
            Some(r) => r.generation,
            None => return,
        };
        tokio::spawn(self.clone().tick_loop(generation));
    }

    fn next_generation(&self) -> u64 {
        self.generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().expect("not poisoned").is_some()
    }

    /// Starts evacuating this node (on the admin thread's runtime).
    pub async fn start_evacuation(
        self: &Arc<Self>,
        params: EvacuationParams,
    ) -> Result<(), StartError> {
        if self.is_running() {
            return Err(StartError::AlreadyRunning);
        }
        if self.is_participating() || self.is_coordinating() {
            return Err(StartError::InRebalance);
        }
        let counts = self.count().await.unwrap_or_default();
        let persisted = Persisted {
            version: FORMAT_VERSION,
            params: params.clone(),
        };
        let text = serde_json::to_vec_pretty(&persisted).expect("serializes");
        crate::atomic_file::write(&self.state_file, &text).map_err(|e| {
            StartError::Storage(format!("cannot write {}: {e}", self.state_file.display()))
        })?;
        let generation = {
            let mut running = self.running.lock().expect("not poisoned");
            if running.is_some() {
                return Err(StartError::AlreadyRunning);
            }
            let evacuation = Evacuation::start(params, self.now_ms(), counts);
            self.apply_admission(&evacuation);
            let generation = self.next_generation();
            *running = Some(Running {
                evacuation,
                generation,
            });
            generation
        };
        self.sessions_moved
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.sessions_push_failed
            .store(0, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(node = %self.node_name, connections = counts.connected,
            sessions = counts.sessions, "evacuation started");
        tokio::spawn(self.clone().tick_loop(generation));
        Ok(())
    }

    /// Ends the evacuation: the node accepts clients again.
    pub fn stop_evacuation(&self) -> Result<(), StartError> {
        let stopped = self.running.lock().expect("not poisoned").take();
        if stopped.is_none() {
            return Err(StartError::NotRunning);
        }
        self.admission.set_refusing(None);
        self.admission.set_available(true);
        if let Err(e) = crate::atomic_file::remove(&self.state_file) {
            tracing::error!(file = %self.state_file.display(), error = %e,
                "cannot remove the persisted evacuation: it would resume at the next start");
        }
        tracing::warn!(node = %self.node_name, "evacuation stopped");
        Ok(())
    }

    fn apply_admission(&self, evacuation: &Evacuation) {
        // Unavailable to load balancers from the start; refusing once the
        // health-check wait is over.
        self.admission.set_available(false);
        let refusing = (!evacuation.accepts_connections()).then(|| Refusing {
            server_reference: evacuation.params().server_reference(),
        });
        if refusing.is_some() != self.admission.refusing().is_some() {
            self.admission.set_refusing(refusing);
        }
    }

    pub(super) async fn count(&self) -> Result<Counts, crate::shard::CallError> {
        let held: Vec<HeldCounts> = tokio::time::timeout(
            limits::ADMIN_SHARD_CALL_TIMEOUT,
            self.node.call_all(|ctx| ctx.held_counts()),
        )
        .await
        .map_err(|_| crate::shard::CallError::Stopped)??;
        Ok(held.iter().fold(Counts::default(), |c, h| Counts {
            connected: c.connected + h.connected,
            sessions: c.sessions + h.sessions,
            disconnected_sessions: c.disconnected_sessions + h.disconnected_sessions,
        }))
    }

    async fn tick_loop(self: Arc<Self>, generation: u64) {
        let mut interval = tokio::time::interval(Duration::from_millis(limits::REBALANCE_TICK_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let counts = match self.count().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "evacuation: shards not counted this tick");
                    continue;
                }
            };
            let migrate_to = self
                .running
                .lock()
                .expect("not poisoned")
                .as_ref()
                .filter(|r| r.generation == generation)
                .map(|r| r.evacuation.params().migrate_to.clone())
                .unwrap_or_default();
            let targets = self.session_targets(&migrate_to).await;
            let now_ms = self.now_ms();
            let (step, references) = {
                let mut running = self.running.lock().expect("not poisoned");
                let Some(r) = running.as_mut().filter(|r| r.generation == generation) else {
                    return;
                };
                let before = r.evacuation.state();
                let step = r
                    .evacuation
                    .handle_tick(now_ms, counts, !targets.is_empty());
                let after = r.evacuation.state();
                if before != after {
                    tracing::warn!(node = %self.node_name, from = before.as_str(), to = after.as_str(),
                        connections = counts.connected, sessions = counts.sessions,
                        "evacuation state");
                    if after == State::Prohibiting && r.evacuation.sessions_stranded() > 0 {
                        tracing::warn!(sessions = r.evacuation.sessions_stranded(),
                            "evacuation: no node to move the remaining sessions to; they stay until they expire or their clients reconnect elsewhere");
                    }
                }
                self.apply_admission(&r.evacuation);
                (step, r.evacuation.params().redirect_to.clone())
            };
            if step.evict_connections > 0 {
                let reason = if references.is_empty() {
                    ReasonCode::USE_ANOTHER_SERVER
                } else {
                    ReasonCode::SERVER_MOVED
                };
                self.evict(step.evict_connections, reason, references).await;
            }
            if step.evict_sessions > 0 {
                self.push_sessions(step.evict_sessions, targets).await;
            }
        }
    }

    /// Moves `count` disconnected sessions to `targets`
    /// (`NodeHandle::push_sessions`): spread over the shards, round robin
    /// over the targets. One that failed stays here and is counted again
    /// at the next tick.
    async fn push_sessions(&self, count: u64, targets: Vec<crate::router::NodeId>) {
        use std::sync::atomic::Ordering::Relaxed;
        let report = self.node.push_sessions(count, targets).await;
        self.sessions_moved.fetch_add(report.moved, Relaxed);
        self.sessions_push_failed.fetch_add(report.failed, Relaxed);
        if report.failed > 0 {
            tracing::warn!(node = %self.node_name, moved = report.moved, failed = report.failed,
                "evacuation: sessions not moved this time; tried again");
        } else if report.moved > 0 {
            tracing::info!(node = %self.node_name, moved = report.moved, "evacuation: sessions moved");
        }
    }

    /// Spreads `count` evictions over the shards, each asked for its share
    /// of what is left. The Server References rotate from one evicted
    /// client to the next, node-wide (`rotation`): clients usually follow
    /// the first one, so the evicted clients spread over the servers.
    pub(super) async fn evict(
        &self,
        count: u64,
        reason: ReasonCode,
        references: Vec<String>,
    ) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let shards = self.node.shards() as u64;
        let references: Arc<[String]> = references.into();
        let mut left = count;
        for (i, shard) in (0..shards).enumerate() {
            if left == 0 {
                break;
            }
            let share = left.div_ceil(shards - i as u64);
            let refs = references.clone();
            let rotation = self.rotation.load(Relaxed);
            let call = self.node.call(shard as usize, move |ctx| {
                ctx.evict_connections(share, reason, &refs, rotation)
            });
            match tokio::time::timeout(limits::ADMIN_SHARD_CALL_TIMEOUT, call).await {
                Ok(Ok(n)) => {
                    left -= n.min(left);
                    self.rotation.fetch_add(n as usize, Relaxed);
                }
                _ => tracing::debug!(shard, "evacuation: a shard did not answer an eviction"),
            }
        }
        count - left
    }

    /// `GET /api/v5/load_rebalance/status`: EMQX's shape.
    pub fn status(&self) -> Value {
        if let Some(r) = &*self.running.lock().expect("not poisoned") {
            let mut v = self.evacuation_json(&r.evacuation);
            v["status"] = json!("enabled");
            v["process"] = json!("evacuation");
            return v;
        }
        match self.rebalance_json() {
            Some(mut v) => {
                v["status"] = json!("enabled");
                v
            }
            None => json!({ "status": "disabled" }),
        }
    }

    /// `POST {this node}/evacuation/start` with the API's body.
    pub(super) async fn evacuation_start_body(self: &Arc<Self>, body: &Value) -> Answer {
        let params = EvacuationParams::from_json(body)
            .map_err(|e| Failure::bad_request(Some(&e.field), e.message))?;
        if !params.migrate_to.is_empty() {
            let running = self.running_nodes().await;
            for name in &params.migrate_to {
                if name == &self.node_name || !running.contains(name) {
                    return Err(Failure::bad_request(
                        Some("migrate_to"),
                        format!(
                            "migrate_to: node {name} is not a running node of the cluster other \
                             than this one"
                        ),
                    ));
                }
            }
        }
        match self.start_evacuation(params).await {
            Ok(()) => Ok(json!({})),
            Err(StartError::Storage(m)) => Err(Failure::internal(m)),
            Err(e) => Err(Failure::bad_request(None, e.to_string())),
        }
    }

    /// This node's entry of `global_status`'s `evacuations`, if any.
    pub fn evacuation_entry(&self) -> Option<Value> {
        let running = self.running.lock().expect("not poisoned");
        running.as_ref().map(|r| {
            let mut v = self.evacuation_json(&r.evacuation);
            v["node"] = json!(self.node_name);
            v
        })
    }

    fn evacuation_json(&self, e: &Evacuation) -> Value {
        let p = e.params();
        let (initial, current) = (e.initial(), e.current());
        json!({
            "state": e.state().as_str(),
            "connection_eviction_rate": p.conn_evict_rate,
            "session_eviction_rate": p.sess_evict_rate,
            "connection_goal": 0,
            "session_goal": 0,
            "session_recipients": p.migrate_to,
            "redirect_to": p.server_reference(),
            "wait_takeover": p.wait_takeover_s,
            "wait_health_check": p.wait_health_check_s,
            // ringmq's own: sessions moved to other nodes so far, pushes
            // that failed (tried again), sessions left with nowhere to go.
            "sessions_moved": self.sessions_moved.load(std::sync::atomic::Ordering::Relaxed),
            "sessions_push_failed": self.sessions_push_failed.load(std::sync::atomic::Ordering::Relaxed),
            "sessions_stranded": e.sessions_stranded(),
            "stats": {
                "initial_connected": initial.connected,
                "current_connected": current.connected,
                "initial_sessions": initial.sessions,
                "current_sessions": current.sessions,
                "current_disconnected_sessions": current.disconnected_sessions,
            },
        })
    }
}
