//! Sans-IO cluster logic (see `super`): plain state machines fed with
//! frames, membership events and `now_ms`, giving frames to send, events
//! for the shards and their next deadline (`handle_*` in, `poll_*` out,
//! as quinn-proto). Nothing here reads a clock, draws randomness or does
//! I/O; the cluster thread (`net`) drives them, and `sim` drives them in a
//! seeded, deterministic simulation.
//!
//! * [`proto`]: the frames of kinds 16-255 (rkyv archives, validated).
//! * [`routes`]: the route relay (node-level refcounts, numbered changes,
//!   acknowledgements before SUBACK, resynchronisation).
//! * [`forward`]: per-peer, per-stream forwarding windows.
//! * [`homes`]: a client id's home node (rendezvous hashing).
//! * [`claims`]: claims of client ids served at their home.
//! * [`takeover`]: moving a session from one node to another.
//! * [`sim`]: the seeded simulation of N nodes running all of the above.

pub mod claims;
pub mod forward;
pub mod homes;
pub mod proto;
pub mod routes;
pub mod sim;
pub mod takeover;
