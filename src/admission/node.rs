//! What every shard shares for admission, without a lock: atomics and one
//! `ArcSwap`. The admin thread reads and replaces the same values. These
//! stay atomics because they are the admission mechanism itself (an exact
//! node-wide cap, one round-robin cursor), not a view; the per-shard
//! counters (`ShardCounters`) are shard-local and read by asking the shard.

use super::cluster::{ClusterServers, Effective};
use super::{Decision, Redirection, Refusing, Strategy};
use crate::codec::{ByteStr, ReasonCode};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// A node-wide count of open connections that admits by compare-and-swap:
/// a shard reads the count, decides, and takes a slot only if the count is
/// still what it read. So a cap is exact whichever shard the kernel's
/// SO_REUSEPORT hash chose, and a refused client never raises the count,
/// not even for an instant (no add-then-undo that would make a concurrent
/// client see a full node).
#[derive(Debug, Default)]
pub struct Count {
    open: AtomicUsize,
}

impl Count {
    pub fn load(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes one slot if the count is still `seen`; `false` means another
    /// shard changed it meanwhile and the caller decides again.
    pub fn try_take(&self, seen: usize) -> bool {
        self.open
            .compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Gives back a slot taken with [`Count::try_take`].
    pub fn release(&self) {
        let before = self.open.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "connection count released below zero");
    }
}

/// Admission state of the node, one per process, shared by every shard and
/// the admin thread.
pub struct NodeAdmission {
    /// The live `[server_redirection]` settings. Shards load it once per
    /// CONNECT; the admin API stores a new one (no restart, no lock).
    config: ArcSwap<Redirection>,
    /// `config` with the cluster's view applied: what a CONNECT is decided
    /// with. Recomputed when either changes (under `inputs`).
    effective: ArcSwap<Effective>,
    /// The cluster view (`None`: not clustered, or no view yet) and this
    /// node's own reference; written by the admin and cluster threads,
    /// never by a shard.
    inputs: Mutex<Inputs>,
    /// MQTT connections past CONNECT on every listener of the node: what
    /// `server_redirection.max_connections` caps.
    pub connections: Count,
    /// Round-robin position, node-wide, so `round_robin` follows the
    /// configured order whichever shard redirects.
    cursor: AtomicUsize,
    /// Set while the node refuses new clients (evacuation, rebalance
    /// donor): what they are told. One load per CONNECT.
    refusing: ArcSwapOption<Refusing>,
    /// Cleared while the node reports itself unavailable to load
    /// balancers (`GET /api/v5/load_rebalance/availability_check`: 503).
    available: AtomicBool,
}

#[derive(Default)]
struct Inputs {
    cluster: Option<ClusterServers>,
    /// Set when the node is clustered: the fallback Server Reference.
    local_reference: Option<ByteStr>,
}

impl NodeAdmission {
    pub fn new(config: Redirection) -> NodeAdmission {
        NodeAdmission {
            effective: ArcSwap::from_pointee(Effective::of(&config, None, None)),
            inputs: Mutex::new(Inputs::default()),
            config: ArcSwap::from_pointee(config),
            connections: Count::default(),
            cursor: AtomicUsize::new(0),
            refusing: ArcSwapOption::empty(),
            available: AtomicBool::new(true),
        }
    }

    pub fn config(&self) -> Arc<Redirection> {
        self.config.load_full()
    }

    /// Replaces the live config; every CONNECT after this sees it. A change
    /// of the server list restarts round robin at the first server.
    pub fn set_config(&self, config: Redirection) {
        let inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        self.config.store(Arc::new(config));
        self.recompute(&inputs);
    }

    /// What a CONNECT is decided with: the live config, its redirect
    /// servers filled from the cluster when it has none of its own (or for
    /// `least_connections`), and the CONNACK's Server Reference.
    pub fn effective(&self) -> Arc<Effective> {
        self.effective.load_full()
    }

    /// The node is clustered and reached by clients at `reference`
    /// (`host:port`): listed alone in CONNACKs while no cluster view is
    /// known.
    pub fn set_local_reference(&self, reference: String) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        inputs.local_reference = Some(ByteStr::from(reference));
        self.recompute(&inputs);
    }

    /// The cluster's running nodes now (`None`: cluster state unavailable:
    /// CONNACKs list this node alone). Unchanged views change nothing.
    pub fn set_cluster(&self, cluster: Option<ClusterServers>) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        if inputs.cluster == cluster {
            return;
        }
        inputs.cluster = cluster;
        self.recompute(&inputs);
    }

    /// The cluster view last set.
    pub fn cluster(&self) -> Option<ClusterServers> {
        let inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        inputs.cluster.clone()
    }

    fn recompute(&self, inputs: &Inputs) {
        let config = self.config.load();
        let effective = Effective::of(
            &config,
            inputs.cluster.as_ref(),
            inputs.local_reference.as_ref(),
        );
        if self.effective.load().redirection.servers != effective.redirection.servers {
            // A new server list restarts round robin at its first server.
            self.cursor.store(0, Ordering::Relaxed);
        }
        self.effective.store(Arc::new(effective));
    }

    /// What new clients are told while the node refuses them.
    pub fn refusing(&self) -> Option<Arc<Refusing>> {
        self.refusing.load_full()
    }

    pub fn set_refusing(&self, refusing: Option<Refusing>) {
        self.refusing.store(refusing.map(Arc::new));
    }

    /// Whether load balancers should send clients here.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// The index of the server a redirect names, among `n`.
    /// `least_connections` here (no load figures: configured servers) goes
    /// round robin.
    pub fn pick(&self, strategy: Strategy, n: usize) -> usize {
        assert!(n > 0);
        match strategy {
            // fastrand's generator is thread-local: one per shard, no sharing.
            Strategy::Random => fastrand::usize(..n),
            Strategy::RoundRobin | Strategy::LeastConnections => {
                self.cursor.fetch_add(1, Ordering::Relaxed) % n
            }
        }
    }

    /// `pick` with the effective view: `least_connections` names the least
    /// loaded of the cluster's servers when their loads are known.
    pub fn pick_in(&self, effective: &Effective, n: usize) -> usize {
        let strategy = effective.redirection.strategy;
        if strategy == Strategy::LeastConnections {
            if let Some(i) = effective.least_loaded(n) {
                return i;
            }
        }
        self.pick(strategy, n)
    }
}

/// One shard's admission counters. Owned by its shard and written only
/// there (plain cells: no atomic on the connect path); other threads see
/// them by asking the shard (`shard::NodeHandle`, `ShardContext::status`).
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub accepted: Cell<u64>,
    /// Redirected with 0x9C (Use another server).
    pub redirected_use_another_server: Cell<u64>,
    /// Redirected with 0x9D (Server moved).
    pub redirected_server_moved: Cell<u64>,
    /// Refused with 0x97 (quota exceeded: listener full).
    pub refused_quota_exceeded: Cell<u64>,
    /// Refused with 0x88 (v5) or return code 3 (v3.1.1): server unavailable
    /// (v3.1.1 client at the cap, stopping, evacuating).
    pub refused_server_unavailable: Cell<u64>,
}

impl ShardCounters {
    /// Counts the outcome of one CONNECT.
    pub fn record(&self, decision: &Decision) {
        let counter = match decision {
            Decision::Admit => &self.accepted,
            Decision::Redirect { reason, .. } if *reason == ReasonCode::SERVER_MOVED => {
                &self.redirected_server_moved
            }
            Decision::Redirect { .. } => &self.redirected_use_another_server,
            Decision::Refuse { reason, .. } if *reason == ReasonCode::QUOTA_EXCEEDED => {
                &self.refused_quota_exceeded
            }
            Decision::Refuse { .. } => &self.refused_server_unavailable,
        };
        counter.set(counter.get() + 1);
    }

    /// The counts now; `connections` is left 0 for the shard to fill in
    /// (it counts its connections itself).
    pub fn snapshot(&self) -> ShardCountersSnapshot {
        ShardCountersSnapshot {
            connections: 0,
            accepted: self.accepted.get(),
            redirected_use_another_server: self.redirected_use_another_server.get(),
            redirected_server_moved: self.redirected_server_moved.get(),
            refused_quota_exceeded: self.refused_quota_exceeded.get(),
            refused_server_unavailable: self.refused_server_unavailable.get(),
        }
    }
}

/// The counters of one shard at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCountersSnapshot {
    pub connections: usize,
    pub accepted: u64,
    pub redirected_use_another_server: u64,
    pub redirected_server_moved: u64,
    pub refused_quota_exceeded: u64,
    pub refused_server_unavailable: u64,
}

impl ShardCountersSnapshot {
    pub fn redirected(&self) -> u64 {
        self.redirected_use_another_server + self.redirected_server_moved
    }
}
