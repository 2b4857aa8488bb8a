//! Node evacuation and cluster rebalance (EMQX's `load_rebalance`): moving
//! MQTT clients and their sessions off a node, gradually, so that a node
//! can be taken down or a new one filled without dropping everyone at once.
//!
//! - `params.rs`: the parameters as the API and `ringmq ctl` give them,
//!   EMQX's names and defaults, every value checked naming its field.
//! - `rate.rs`: a per-second eviction rate spread over ticks.
//! - `evacuation.rs`: one node's evacuation, a sans-IO state machine.
//! - `plan.rs`: the rebalance coordinator's planning, pure.
//! - `run.rs`: the executor on the admin thread: counts the shards, evicts
//!   through them, sets admission, persists an evacuation across restarts.
//! - `peer.rs`: commands between nodes (evacuate, join a rebalance, tick,
//!   leave, status), served here or sent over the cluster.
//! - `coordinator.rs`: the rebalance coordinator, driving `plan.rs` and
//!   the participants.
//! - `participant.rs`: this node as a rebalance donor or recipient.
//!
//! docs/operations.md describes the behaviour and the state machine.

mod coordinator;
pub mod evacuation;
pub mod params;
mod participant;
pub mod peer;
pub mod plan;
mod rate;
pub mod run;

pub use evacuation::{Counts, Evacuation};
pub use params::{EvacuationParams, ParamError, RebalanceParams};
pub use run::{Rebalancer, StartError};
