//! Node evacuation as a sans-IO state machine: fed the node's counts on
//! every tick (`handle_tick`), it says how many connections and sessions
//! to evict now and whether the node still accepts clients. The executor
//! (`run.rs`) counts, evicts, and refuses; this module only decides.
//!
//! States, as EMQX names them:
//! `wait_health_check` (unavailable to load balancers, still accepting) →
//! `evicting_conns` (refusing new clients, disconnecting at
//! `conn_evict_rate`) → `wait_takeover` (no connection left; clients
//! reconnect elsewhere and take their sessions over) → `evicting_sessions`
//! (the sessions still here move to `migrate_to` at `sess_evict_rate`) →
//! `prohibiting` (nothing left; refusing until stopped).

use super::params::EvacuationParams;
use super::rate::Budget;
use crate::router::location::NodeId;
use serde::{Deserialize, Serialize};

/// Where `evicting_sessions` moves sessions: the running nodes named in
/// `migrate_to`, or every other running node when it names none (EMQX's
/// default). `running`: the other nodes running now, by name. Empty: the
/// sessions have nowhere to go (they are counted stranded).
pub fn session_targets(migrate_to: &[String], running: &[String]) -> Vec<NodeId> {
    let chosen: Vec<&String> = if migrate_to.is_empty() {
        running.iter().collect()
    } else {
        // A `migrate_to` node stopped since the start is skipped while it
        // is down; the others take its share.
        migrate_to.iter().filter(|n| running.contains(n)).collect()
    };
    chosen.into_iter().map(|n| NodeId::from_name(n)).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    WaitHealthCheck,
    EvictingConns,
    WaitTakeover,
    EvictingSessions,
    Prohibiting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::WaitHealthCheck => "wait_health_check",
            State::EvictingConns => "evicting_conns",
            State::WaitTakeover => "wait_takeover",
            State::EvictingSessions => "evicting_sessions",
            State::Prohibiting => "prohibiting",
        }
    }
}

/// What the node holds, as the shards count it on a tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// MQTT connections past CONNECT.
    pub connected: u64,
    /// Sessions, online or not.
    pub sessions: u64,
    /// Sessions with no connection (kept for their expiry interval).
    pub disconnected_sessions: u64,
}

/// What to do now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub evict_connections: u64,
    pub evict_sessions: u64,
}

#[derive(Clone, Debug)]
pub struct Evacuation {
    params: EvacuationParams,
    state: State,
    /// The end of `wait_health_check` or `wait_takeover`.
    until_ms: u64,
    initial: Counts,
    current: Counts,
    connections: Budget,
    sessions: Budget,
    /// `evicting_sessions` ended with sessions left that had nowhere to go
    /// (no other running node): they stay until they expire or their
    /// clients take them over from another node.
    sessions_stranded: u64,
}

impl Evacuation {
    /// A new evacuation, started by an operator at `now_ms`.
    pub fn start(params: EvacuationParams, now_ms: u64, counts: Counts) -> Evacuation {
        let mut e = Evacuation::new(params, now_ms, counts);
        if e.params.wait_health_check_s > 0 {
            e.state = State::WaitHealthCheck;
            e.until_ms = now_ms + e.params.wait_health_check_s * 1000;
        }
        e
    }

    /// An evacuation that was running when the node stopped, resumed at
    /// its start: load balancers saw the node unavailable before it
    /// stopped and see it so from the start again, so it refuses at once.
    pub fn resume(params: EvacuationParams, now_ms: u64, counts: Counts) -> Evacuation {
        Evacuation::new(params, now_ms, counts)
    }

    fn new(params: EvacuationParams, now_ms: u64, counts: Counts) -> Evacuation {
        Evacuation {
            connections: Budget::new(params.conn_evict_rate, now_ms),
            sessions: Budget::new(params.sess_evict_rate, now_ms),
            params,
            state: State::EvictingConns,
            until_ms: now_ms,
            initial: counts,
            current: counts,
            sessions_stranded: 0,
        }
    }

    pub fn params(&self) -> &EvacuationParams {
        &self.params
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn initial(&self) -> Counts {
        self.initial
    }

    pub fn current(&self) -> Counts {
        self.current
    }

    pub fn sessions_stranded(&self) -> u64 {
        self.sessions_stranded
    }

    /// New MQTT clients are admitted only while load balancers are given
    /// time to notice the node is unavailable.
    pub fn accepts_connections(&self) -> bool {
        self.state == State::WaitHealthCheck
    }

    /// One tick. `can_migrate`: some node can take sessions now (a
    /// running `migrate_to` node, or any other running node).
    pub fn handle_tick(&mut self, now_ms: u64, counts: Counts, can_migrate: bool) -> Step {
        self.current = counts;
        let mut step = Step::default();
        // Several states may pass in one tick (a wait of 0 s, nothing to
        // evict); each state is visited at most once.
        for _ in 0..5 {
            let before = self.state;
            match self.state {
                State::WaitHealthCheck => {
                    if now_ms >= self.until_ms {
                        self.enter(State::EvictingConns, now_ms);
                    }
                }
                State::EvictingConns => {
                    if counts.connected == 0 {
                        self.until_ms = now_ms + self.params.wait_takeover_s * 1000;
                        self.enter(State::WaitTakeover, now_ms);
                    } else {
                        step.evict_connections =
                            self.connections.take(now_ms).min(counts.connected);
                    }
                }
                State::WaitTakeover => {
                    if now_ms >= self.until_ms {
                        self.enter(State::EvictingSessions, now_ms);
                    }
                }
                State::EvictingSessions => {
                    if counts.disconnected_sessions == 0 {
                        self.enter(State::Prohibiting, now_ms);
                    } else if !can_migrate {
                        self.sessions_stranded = counts.disconnected_sessions;
                        self.enter(State::Prohibiting, now_ms);
                    } else {
                        step.evict_sessions =
                            self.sessions.take(now_ms).min(counts.disconnected_sessions);
                    }
                }
                State::Prohibiting => {}
            }
            if self.state == before {
                break;
            }
        }
        step
    }

    fn enter(&mut self, state: State, now_ms: u64) {
        self.state = state;
        // A rate counts from the moment its state begins.
        match state {
            State::EvictingConns => self.connections.restart(now_ms),
            State::EvictingSessions => self.sessions.restart(now_ms),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rate: u64, wait_takeover_s: u64, wait_health_check_s: u64) -> EvacuationParams {
        EvacuationParams {
            conn_evict_rate: rate,
            sess_evict_rate: rate,
            wait_takeover_s,
            wait_health_check_s,
            ..EvacuationParams::default()
        }
    }

    fn counts(connected: u64, disconnected: u64) -> Counts {
        Counts {
            connected,
            sessions: connected + disconnected,
            disconnected_sessions: disconnected,
        }
    }

    #[test]
    fn goes_through_every_state_at_its_rates() {
        let mut e = Evacuation::start(params(100, 2, 1), 0, counts(250, 10));
        assert_eq!(e.state(), State::WaitHealthCheck);
        assert!(e.accepts_connections());
        assert_eq!(e.handle_tick(500, counts(260, 10), true), Step::default());
        // After the health check: 100 per second, counted from its start.
        assert_eq!(
            e.handle_tick(1000, counts(260, 10), true).evict_connections,
            0
        );
        assert_eq!(e.state(), State::EvictingConns);
        assert!(!e.accepts_connections());
        assert_eq!(
            e.handle_tick(1100, counts(260, 10), true).evict_connections,
            10
        );
        assert_eq!(
            e.handle_tick(2100, counts(250, 10), true).evict_connections,
            100
        );
        // A pause does not make a burst: at most one second's worth.
        assert_eq!(
            e.handle_tick(9100, counts(150, 10), true).evict_connections,
            100
        );
        assert_eq!(
            e.handle_tick(9200, counts(5, 10), true).evict_connections,
            5
        );
        assert_eq!(e.handle_tick(9300, counts(0, 15), true), Step::default());
        assert_eq!(e.state(), State::WaitTakeover);
        e.handle_tick(11_299, counts(0, 15), true);
        assert_eq!(e.state(), State::WaitTakeover);
        assert_eq!(e.handle_tick(11_300, counts(0, 15), true).evict_sessions, 0);
        assert_eq!(e.state(), State::EvictingSessions);
        assert_eq!(
            e.handle_tick(11_400, counts(0, 15), true).evict_sessions,
            10
        );
        assert_eq!(e.handle_tick(11_500, counts(0, 5), true).evict_sessions, 5);
        e.handle_tick(11_600, counts(0, 0), true);
        assert_eq!(e.state(), State::Prohibiting);
        assert!(!e.accepts_connections());
        assert_eq!(e.initial(), counts(250, 10));
        assert_eq!(e.current(), counts(0, 0));
    }

    #[test]
    fn zero_waits_pass_in_one_tick_and_stranded_sessions_are_counted() {
        let mut e = Evacuation::start(params(500, 0, 0), 0, counts(0, 3));
        assert_eq!(e.state(), State::EvictingConns);
        e.handle_tick(100, counts(0, 3), false);
        assert_eq!(e.state(), State::Prohibiting);
        assert_eq!(e.sessions_stranded(), 3);
    }

    #[test]
    fn sessions_move_at_their_rate_until_none_is_left() {
        let mut e = Evacuation::start(params(20, 0, 0), 0, counts(0, 50));
        // Nothing to disconnect, no wait: straight to the sessions.
        assert_eq!(e.handle_tick(0, counts(0, 50), true).evict_sessions, 0);
        assert_eq!(e.state(), State::EvictingSessions);
        assert_eq!(e.handle_tick(500, counts(0, 50), true).evict_sessions, 10);
        assert_eq!(e.handle_tick(1000, counts(0, 40), true).evict_sessions, 10);
        // A push that failed leaves its session counted: asked again.
        assert_eq!(e.handle_tick(2000, counts(0, 35), true).evict_sessions, 20);
        assert_eq!(e.handle_tick(2100, counts(0, 1), true).evict_sessions, 1);
        e.handle_tick(2200, counts(0, 0), true);
        assert_eq!(e.state(), State::Prohibiting);
        assert_eq!(e.sessions_stranded(), 0);
    }

    #[test]
    fn sessions_left_when_the_last_target_stops_are_stranded() {
        let mut e = Evacuation::start(params(100, 0, 0), 0, counts(0, 30));
        assert_eq!(e.handle_tick(1000, counts(0, 30), true).evict_sessions, 0);
        assert_eq!(e.handle_tick(2000, counts(0, 30), true).evict_sessions, 30);
        e.handle_tick(2100, counts(0, 12), false);
        assert_eq!(e.state(), State::Prohibiting);
        assert_eq!(e.sessions_stranded(), 12);
    }

    #[test]
    fn targets_are_the_running_migrate_to_nodes_or_every_running_node() {
        let running = ["b@h".to_string(), "c@h".to_string()];
        let id = |n: &str| NodeId::from_name(n);
        assert_eq!(session_targets(&[], &running), [id("b@h"), id("c@h")]);
        let only_c = ["c@h".to_string()];
        assert_eq!(session_targets(&only_c, &running), [id("c@h")]);
        let stopped = ["d@h".to_string()];
        assert!(session_targets(&stopped, &running).is_empty());
        assert!(session_targets(&[], &[]).is_empty());
    }

    #[test]
    fn a_resumed_evacuation_refuses_at_once() {
        let e = Evacuation::resume(params(500, 60, 60), 0, counts(3, 0));
        assert_eq!(e.state(), State::EvictingConns);
        assert!(!e.accepts_connections());
    }
}
