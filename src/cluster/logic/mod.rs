//! Sans-IO cluster logic (see `super`): plain state machines fed with
//! frames, membership events and `now_ms`, giving frames to send, events
//! for the shards and their next deadline (`handle_*` in, `poll_*` out,
//! as quinn-proto). Nothing here reads a clock, draws randomness or does
//! I/O; the cluster thread (`net`) drives them, and `sim` drives them in a
//! seeded, deterministic simulation.
//!
//! * [`proto`]: the frames of kinds 16-255 (rkyv archives, validated).
//! * [`records`]: the data frames of forwarded messages (length-prefixed
//!   records straight from `Arc<Message>`, validated once per frame).
//! * [`routes`]: the route relay (node-level refcounts, numbered changes,
//!   acknowledgements before SUBACK, resynchronisation).
//! * [`forward`]: per-peer, per-stream forwarding windows.
//! * [`homes`]: a client id's home node (rendezvous hashing).
//! * [`claims`]: claims of client ids served at their home.
//! * [`takeover`]: moving a session from one node to another.
//! * [`sim`]: the seeded simulation of N nodes running all of the above.
//!
//! How a driver glues them (`sim/node.rs` is the reference, the cluster
//! thread should do the same):
//! * membership up/down: `RouteRelay::handle_member_*`, `Homes`, then
//!   `ClaimTable::handle_homes_changed` and `Takeovers::handle_homes_changed`
//!   (owner reports); down also `ClaimTable`/`Takeovers::handle_member_down`,
//!   `PublishAcks::handle_member_down`, and the peer's `ForwardOut` /
//!   `ForwardIn` link-down;
//! * a new connection to a running peer (link flap): `ForwardOut` /
//!   `ForwardIn` link-down for the old one, then `RouteRelay::
//!   handle_member_up` (snapshot) and `Takeovers::handle_homes_changed`;
//! * every shard interest change *and every SUBSCRIBE*: `RouteRelay::
//!   handle_interest` with the SUBACK's token; `RouteEvent::Released` frees it;
//! * frames by kind to the matching `handle_*`; frames a node sends itself
//!   (the home of an id may be local) are handled locally, not sent;
//! * after each input: drain every `poll_transmit` and `poll_event`, then
//!   arm a timer at the earliest `poll_timeout` and call `handle_timeout`.

pub mod claims;
pub mod forward;
pub mod homes;
pub mod proto;
pub mod records;
pub mod routes;
pub mod sim;
pub mod takeover;
