//! ringmq-loadgen: an MQTT 3.1.1 / 5.0 load generator (emqtt-bench style)
//! built to not be the bottleneck. See loadgen/README.md for the options.
//!
//! Crate map:
//! - [`cli`] - options.
//! - [`plan`] - scenario -> clients (role, id, topic, thread); pure.
//! - [`targets`] - `--pub-addrs` / `--sub-addrs`: which server each client connects to; pure.
//! - [`clock`] - the shared monotonic clock.
//! - [`stamp`] - the payload header (publisher id, sequence, send time).
//! - [`track`] - loss / duplicate / reorder accounting per stream; pure.
//! - [`pacing`] - the fixed-rate schedule; pure.
//! - [`server_ref`] - MQTT 5 Server Reference parsing; pure.
//! - [`window`] - the closed-loop window of one publisher; pure.
//! - [`shared`] - atomics the threads share (schedule, closed-loop counters, progress).
//! - [`worker`] - one thread's epoll loop owning its clients.
//! - [`fastpath`] - in-place parsing of PUBLISH and its acks; pure.
//! - [`forwarder`] - the selftest target.
//! - [`slowest`] - the N slowest messages with their send times; pure.
//! - [`stats`] - per-thread statistics, the report, the table.
//! - [`run`] - the main thread (phases, progress, report).
//! - [`sys`] - socket and epoll syscalls.
//! - [`tls`] - `--tls`: a rustls client session per connection, sans-IO.
pub mod cli;
pub mod clock;
pub mod fastpath;
pub mod forwarder;
pub mod pacing;
pub mod plan;
pub mod run;
pub mod server_ref;
pub mod shared;
pub mod slowest;
pub mod stamp;
pub mod stats;
pub mod sys;
pub mod targets;
pub mod tls;
pub mod track;
pub mod window;
pub mod worker;
