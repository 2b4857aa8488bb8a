//! Cluster rebalance planning, pure: which nodes donate and receive, how
//! many connections and sessions each donor evicts per tick, and when the
//! cluster is balanced. The coordinator's executor feeds it every
//! participant's counts and carries its steps out.
//!
//! Donors are the participants above the average, recipients those below
//! it. Balanced (connections, then disconnected sessions):
//! `avg(donors) < avg(recipients) + abs_threshold` or
//! `avg(donors) < avg(recipients) * rel_threshold`.

use super::params::RebalanceParams;
use super::rate::Budget;
use std::collections::BTreeMap;

/// One participant's counts on a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub node: String,
    pub connections: u64,
    pub disconnected_sessions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    WaitHealthCheck,
    EvictingConns,
    WaitTakeover,
    EvictingSessions,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::WaitHealthCheck => "wait_health_check",
            State::EvictingConns => "evicting_conns",
            State::WaitTakeover => "wait_takeover",
            State::EvictingSessions => "evicting_sessions",
        }
    }
}

/// Why a rebalance cannot start or must end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No donor or no recipient, or already within the thresholds.
    NothingToBalance,
    /// A participant left the cluster (or stopped answering).
    ParticipantLost(String),
}

/// What the coordinator does on a tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Per donor: connections to disconnect now.
    pub evict_connections: Vec<(String, u64)>,
    /// Per donor: disconnected sessions to move to the recipients now.
    pub evict_sessions: Vec<(String, u64)>,
    /// The rebalance is over (balanced, or `Stop`).
    pub finished: Option<Result<(), Stop>>,
}

fn average(values: impl Iterator<Item = u64>) -> f64 {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum as f64 / n as f64
    }
}

/// Donors (above the average of `key`) and recipients (below it), by name.
pub fn split(loads: &[Load], key: fn(&Load) -> u64) -> (Vec<String>, Vec<String>) {
    let avg = average(loads.iter().map(key));
    let donors = loads
        .iter()
        .filter(|l| key(l) as f64 > avg)
        .map(|l| l.node.clone())
        .collect();
    let recipients = loads
        .iter()
        .filter(|l| (key(l) as f64) < avg)
        .map(|l| l.node.clone())
        .collect();
    (donors, recipients)
}

pub fn is_balanced(donor_avg: f64, recipient_avg: f64, abs: u64, rel: f64) -> bool {
    donor_avg < recipient_avg + abs as f64 || donor_avg < recipient_avg * rel
}

fn connections(l: &Load) -> u64 {
    l.connections
}

fn sessions(l: &Load) -> u64 {
    l.disconnected_sessions
}

#[derive(Clone, Debug)]
pub struct Rebalance {
    params: RebalanceParams,
    state: State,
    until_ms: u64,
    donors: Vec<String>,
    recipients: Vec<String>,
    budgets: BTreeMap<String, (Budget, Budget)>,
    /// Averages on the last tick, for the status.
    pub donor_conn_avg: f64,
    pub recipient_conn_avg: f64,
    pub donor_sess_avg: f64,
    pub recipient_sess_avg: f64,
    /// What donors evict down to: the participants' average (ceiling) of
    /// connections and of disconnected sessions, on the last tick.
    pub conn_goal: u64,
    pub sess_goal: u64,
}

impl Rebalance {
    /// Plans a rebalance of `loads` (the participants), or says there is
    /// nothing to do.
    pub fn start(params: RebalanceParams, now_ms: u64, loads: &[Load]) -> Result<Rebalance, Stop> {
        let (donors, recipients) = split(loads, connections);
        let mut r = Rebalance {
            state: State::WaitHealthCheck,
            until_ms: now_ms + params.wait_health_check_s * 1000,
            budgets: donors
                .iter()
                .map(|d| {
                    let b = (
                        Budget::new(params.conn_evict_rate, now_ms),
                        Budget::new(params.sess_evict_rate, now_ms),
                    );
                    (d.clone(), b)
                })
                .collect(),
            donors,
            recipients,
            params,
            donor_conn_avg: 0.0,
            recipient_conn_avg: 0.0,
            donor_sess_avg: 0.0,
            recipient_sess_avg: 0.0,
            conn_goal: 0,
            sess_goal: 0,
        };
        r.measure(loads);
        if r.donors.is_empty() || r.recipients.is_empty() || r.conns_balanced() {
            return Err(Stop::NothingToBalance);
        }
        Ok(r)
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &RebalanceParams {
        &self.params
    }

    pub fn donors(&self) -> &[String] {
        &self.donors
    }

    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    pub fn is_donor(&self, node: &str) -> bool {
        self.donors.iter().any(|d| d == node)
    }

    /// A donor accepts new clients only while load balancers are given
    /// time to notice it reports itself unavailable.
    pub fn donor_accepts_connections(&self) -> bool {
        self.state == State::WaitHealthCheck
    }

    fn measure(&mut self, loads: &[Load]) {
        let of = |names: &[String], key: fn(&Load) -> u64| {
            average(loads.iter().filter(|l| names.contains(&l.node)).map(key))
        };
        self.donor_conn_avg = of(&self.donors, connections);
        self.recipient_conn_avg = of(&self.recipients, connections);
        self.donor_sess_avg = of(&self.donors, sessions);
        self.recipient_sess_avg = of(&self.recipients, sessions);
        self.conn_goal = average(loads.iter().map(connections)).ceil() as u64;
        self.sess_goal = average(loads.iter().map(sessions)).ceil() as u64;
    }

    fn conns_balanced(&self) -> bool {
        let p = &self.params;
        is_balanced(
            self.donor_conn_avg,
            self.recipient_conn_avg,
            p.abs_conn_threshold,
            p.rel_conn_threshold,
        )
    }

    fn sessions_balanced(&self) -> bool {
        let p = &self.params;
        is_balanced(
            self.donor_sess_avg,
            self.recipient_sess_avg,
            p.abs_sess_threshold,
            p.rel_sess_threshold,
        )
    }

    /// One tick with every participant's counts; a participant missing
    /// from `loads` ends the rebalance.
    pub fn handle_tick(&mut self, now_ms: u64, loads: &[Load]) -> Step {
        let mut step = Step::default();
        if let Some(lost) = self
            .donors
            .iter()
            .chain(&self.recipients)
            .find(|n| !loads.iter().any(|l| &&l.node == n))
        {
            step.finished = Some(Err(Stop::ParticipantLost(lost.clone())));
            return step;
        }
        self.measure(loads);
        for _ in 0..4 {
            let before = self.state;
            match self.state {
                State::WaitHealthCheck => {
                    if now_ms >= self.until_ms {
                        self.state = State::EvictingConns;
                        for (c, _) in self.budgets.values_mut() {
                            c.restart(now_ms);
                        }
                    }
                }
                State::EvictingConns => {
                    if self.conns_balanced() {
                        self.state = State::WaitTakeover;
                        self.until_ms = now_ms + self.params.wait_takeover_s * 1000;
                    } else {
                        step.evict_connections = self.evictions(now_ms, loads, connections, 0);
                    }
                }
                State::WaitTakeover => {
                    if now_ms >= self.until_ms {
                        self.state = State::EvictingSessions;
                        for (_, s) in self.budgets.values_mut() {
                            s.restart(now_ms);
                        }
                    }
                }
                State::EvictingSessions => {
                    if self.sessions_balanced() {
                        step.finished = Some(Ok(()));
                    } else {
                        step.evict_sessions = self.evictions(now_ms, loads, sessions, 1);
                    }
                }
            }
            if self.state == before {
                break;
            }
        }
        step
    }

    /// Per donor: what its budget allows, but not below the participants'
    /// average (evicting further would only make it a recipient).
    fn evictions(
        &mut self,
        now_ms: u64,
        loads: &[Load],
        key: fn(&Load) -> u64,
        budget: usize,
    ) -> Vec<(String, u64)> {
        let target = average(loads.iter().map(key)).ceil() as u64;
        let mut out = Vec::new();
        for load in loads.iter().filter(|l| self.donors.contains(&l.node)) {
            let (c, s) = self
                .budgets
                .get_mut(&load.node)
                .expect("a budget per donor");
            let allowed = if budget == 0 {
                c.take(now_ms)
            } else {
                s.take(now_ms)
            };
            let n = allowed.min(key(load).saturating_sub(target));
            if n > 0 {
                out.push((load.node.clone(), n));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(node: &str, connections: u64, disconnected_sessions: u64) -> Load {
        Load {
            node: node.into(),
            connections,
            disconnected_sessions,
        }
    }

    fn params() -> RebalanceParams {
        RebalanceParams {
            wait_health_check_s: 1,
            wait_takeover_s: 1,
            conn_evict_rate: 100,
            sess_evict_rate: 100,
            abs_conn_threshold: 10,
            abs_sess_threshold: 10,
            rel_conn_threshold: 1.1,
            rel_sess_threshold: 1.1,
            ..RebalanceParams::default()
        }
    }

    #[test]
    fn donors_are_above_the_average_and_recipients_below() {
        let loads = [load("a@h", 900, 0), load("b@h", 100, 0), load("c@h", 0, 0)];
        let (d, r) = split(&loads, connections);
        assert_eq!(d, ["a@h"]);
        assert_eq!(r, ["b@h", "c@h"]);
        assert!(is_balanced(105.0, 100.0, 10, 1.01));
        assert!(is_balanced(108.0, 100.0, 1, 1.1));
        assert!(!is_balanced(120.0, 100.0, 10, 1.1));
    }

    #[test]
    fn nothing_to_balance() {
        let even = [load("a@h", 10, 0), load("b@h", 10, 0)];
        assert_eq!(
            Rebalance::start(params(), 0, &even).unwrap_err(),
            Stop::NothingToBalance
        );
        // Within the default absolute threshold of 1000.
        let near = [load("a@h", 900, 0), load("b@h", 100, 0)];
        let defaults = RebalanceParams::default();
        assert!(Rebalance::start(defaults, 0, &near).is_err());
    }

    #[test]
    fn evicts_at_the_rate_down_to_the_average_then_moves_sessions() {
        let mut loads = vec![
            load("a@h", 900, 300),
            load("b@h", 100, 0),
            load("c@h", 0, 0),
        ];
        let mut r = Rebalance::start(params(), 0, &loads).unwrap();
        assert!(r.is_donor("a@h") && !r.is_donor("b@h"));
        // The goals the participants' status shows: the averages.
        assert_eq!((r.conn_goal, r.sess_goal), (334, 100));
        assert!(r.donor_accepts_connections());
        assert_eq!(r.handle_tick(500, &loads), Step::default());
        r.handle_tick(1000, &loads);
        assert_eq!(r.state(), State::EvictingConns);
        let s = r.handle_tick(1500, &loads);
        assert_eq!(s.evict_connections, [("a@h".to_string(), 50)]);
        // The evicted clients land on the recipients (through the LB).
        let mut now = 1500;
        while r.state() == State::EvictingConns {
            now += 100;
            let s = r.handle_tick(now, &loads);
            for (_, n) in &s.evict_connections {
                loads[0].connections -= n;
                let to = if loads[1].connections <= loads[2].connections {
                    1
                } else {
                    2
                };
                loads[to].connections += n;
            }
            assert!(now < 60_000, "never balanced: {loads:?}");
        }
        // Never below the average (334).
        assert!(loads[0].connections >= 334, "{loads:?}");
        assert!(is_balanced(
            loads[0].connections as f64,
            (loads[1].connections + loads[2].connections) as f64 / 2.0,
            10,
            1.1
        ));
        assert_eq!(r.state(), State::WaitTakeover);
        now += 1000;
        r.handle_tick(now, &loads);
        assert_eq!(r.state(), State::EvictingSessions);
        let s = r.handle_tick(now + 100, &loads);
        assert_eq!(s.evict_sessions, [("a@h".to_string(), 10)]);
        loads[0].disconnected_sessions = 100;
        loads[1].disconnected_sessions = 100;
        loads[2].disconnected_sessions = 100;
        assert_eq!(r.handle_tick(now + 200, &loads).finished, Some(Ok(())));
    }

    #[test]
    fn a_lost_participant_ends_it() {
        let loads = [load("a@h", 900, 0), load("b@h", 0, 0)];
        let mut r = Rebalance::start(params(), 0, &loads).unwrap();
        let s = r.handle_tick(100, &loads[..1]);
        assert_eq!(s.finished, Some(Err(Stop::ParticipantLost("b@h".into()))));
    }
}
