//! What the simulation knows beyond the nodes: every message published,
//! sessions in transit, the fault counter, the trace hash, and the session
//! model each node's shards keep (`SessionModel`).

use std::collections::{BTreeMap, BTreeSet};

use super::super::proto::MessageId;
use crate::router::location::{Location, NodeId};

/// FNV-1a 64 over everything that happens: two runs of one seed must give
/// the same hash.
#[derive(Debug)]
pub struct Trace {
    pub hash: u64,
    /// Kept lines (`--trace`), else only hashed.
    pub lines: Option<Vec<String>>,
}

impl Trace {
    pub fn record(&mut self, line: std::fmt::Arguments<'_>) {
        let s = line.to_string();
        for b in s.bytes().chain([b'\n']) {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        if let Some(lines) = &mut self.lines {
            lines.push(s);
        }
    }
}

#[derive(Debug, Clone)]
pub struct MsgInfo {
    /// The publisher: its session incarnation and where it published
    /// (order holds per connection); with its own number, order is checked
    /// per (publisher, subscriber).
    pub publisher: (u64, u32, u16),
    pub pub_seq: u64,
    pub topic: String,
    pub qos: u8,
    pub published_at_ms: u64,
    pub node: NodeId,
}

/// A subscription's SUBACK: when, under which fault generation, and which
/// peers had not acknowledged its route in time.
#[derive(Debug, Clone)]
pub struct Acked {
    pub at_ms: u64,
    pub fault_gen: u64,
    pub out_of_sync: Vec<NodeId>,
    /// The subscriber's node and the peers it knew running: only they
    /// were waited for (a peer announced later gets the routes in its
    /// join snapshot, before it accepts clients; one healing from a
    /// partition may still publish meanwhile).
    pub view: BTreeSet<NodeId>,
}

#[derive(Debug, Clone)]
pub struct SubRecord {
    pub id: u64,
    pub acked: Option<Acked>,
}

/// A session as the simulated shards keep it.
#[derive(Debug, Clone)]
pub struct SessionModel {
    /// Changes when a session starts fresh; kept across moves.
    pub incarnation: u64,
    pub at: Location,
    pub online: bool,
    /// Exported to a new owner: still matching (held), not an owner.
    pub moving_out: bool,
    /// Imported, its routes or held deliveries not in yet.
    pub importing: bool,
    pub subs: BTreeMap<String, SubRecord>,
    pub received: BTreeSet<MessageId>,
    /// Per publisher: the last number received (order check).
    pub last_from: BTreeMap<(u64, u32, u16), u64>,
    /// Messages this session published.
    pub published: u64,
}

impl SessionModel {
    pub fn fresh(incarnation: u64, at: Location) -> SessionModel {
        SessionModel {
            incarnation,
            at,
            online: true,
            moving_out: false,
            importing: false,
            subs: BTreeMap::new(),
            received: BTreeSet::new(),
            last_from: BTreeMap::new(),
            published: 0,
        }
    }

    /// Queues a message: each once, and in order per publisher.
    pub fn receive(&mut self, id: MessageId, info: &MsgInfo) -> Result<(), String> {
        if !self.received.insert(id) {
            return Ok(()); // a repeat (QoS 1 may repeat; dropped here)
        }
        let last = self.last_from.entry(info.publisher).or_insert(0);
        if info.pub_seq <= *last {
            return Err(format!(
                "order: session {} got message {} of publisher {:?} after message {}",
                self.incarnation, info.pub_seq, info.publisher, last
            ));
        }
        *last = info.pub_seq;
        Ok(())
    }
}

/// A delivery that must happen: a message published after a SUBACK.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub id: MessageId,
    pub incarnation: u64,
    pub filter: String,
    pub sub_id: u64,
    pub due_ms: u64,
    pub fault_gen: u64,
}

#[derive(Debug)]
pub struct World {
    pub now_ms: u64,
    /// Bumped by every crash, restart, partition, heal and link break.
    pub fault_gen: u64,
    pub last_fault_ms: u64,
    pub messages: BTreeMap<MessageId, MsgInfo>,
    /// QoS 0 messages a full window dropped (counted, not a violation).
    pub dropped: BTreeSet<MessageId>,
    /// QoS 1/2 messages whose publisher got its PUBACK, and whether every
    /// receiving node had queued them.
    pub acked: BTreeMap<MessageId, bool>,
    /// Sessions in transit, by the handle their "snapshot" carries.
    pub suitcase: BTreeMap<u64, SessionModel>,
    pub next_handle: u64,
    pub next_incarnation: u64,
    pub next_sub_id: u64,
    pub expectations: Vec<Expectation>,
    pub trace: Trace,
    pub violations: Vec<String>,
    pub deliveries: u64,
    pub expectations_met: u64,
    /// SUBACKs just sent, (filter, node): the simulation publishes on
    /// another node right after some of them (issue 13's "SUBSCRIBE on one
    /// node then an immediate PUBLISH on another arrives").
    pub fresh_subacks: Vec<(String, NodeId)>,
}

impl World {
    pub fn new(keep_trace: bool) -> World {
        World {
            now_ms: 0,
            fault_gen: 0,
            last_fault_ms: 0,
            messages: BTreeMap::new(),
            dropped: BTreeSet::new(),
            acked: BTreeMap::new(),
            suitcase: BTreeMap::new(),
            next_handle: 0,
            next_incarnation: 0,
            next_sub_id: 0,
            expectations: Vec::new(),
            trace: Trace {
                hash: 0xcbf2_9ce4_8422_2325,
                lines: keep_trace.then(Vec::new),
            },
            violations: Vec::new(),
            deliveries: 0,
            expectations_met: 0,
            fresh_subacks: Vec::new(),
        }
    }

    /// A trace line, stamped with the simulated time.
    pub fn log(&mut self, line: std::fmt::Arguments<'_>) {
        let now = self.now_ms;
        self.trace.record(format_args!("{now:>8} {line}"));
    }

    pub fn fault(&mut self) {
        self.fault_gen += 1;
        self.last_fault_ms = self.now_ms;
    }

    pub fn incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }
}
