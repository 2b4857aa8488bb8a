//! ringmq: a thread-per-core MQTT 3.1.1 / 5.0 broker.
//!
//! Crate map (see docs/ARCHITECTURE.md for the path of a packet):
//! - [`config`]: TOML + environment configuration, validated with key-naming errors.
//! - [`limits`]: every compile-time cap, named with its unit.
//! - [`codec`]: MQTT packet types, decode and encode; sans-IO.
//! - [`session`]: the per-client protocol state machine; sans-IO.
//! - [`router`]: topic matching, subscription tables, retained store, shared picks.
//! - [`authn`]: authentication (password file, built-in users, the
//!   Mosquitto ACL file); the password checks run on worker threads.
//! - [`authz`]: topic authorization rules (ACL), EMQX-style; pure.
//! - [`admission`]: accept / redirect / refuse a CONNECT, and the lock-free
//!   node-wide state it reads (live redirection config, connection count); pure.
//! - [`admin`]: the admin HTTP API on its own control-plane thread (tokio + axum).
//! - [`ctl`]: `ringmq ctl`, the command line that drives a node through its admin API.
//! - [`metrics`]: per-shard counters (plain `Cell`s), the statistics and client
//!   records shards answer the admin API with, Prometheus rendering; pure.
//! - [`durable`]: durable sessions: the ops a shard writes, their records, the
//!   store backends (ADR 0007).
//! - [`shard`]: the only module that touches glommio: executors, sockets, the shard mesh.
//! - [`transport`]: TLS (rustls) and WebSocket (RFC 6455) under MQTT; sans-IO.
pub mod admin;
pub mod admission;
pub mod atomic_file;
pub mod authn;
pub mod authz;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod ctl;
pub mod durable;
pub mod limits;
pub mod metrics;
pub mod rebalance;
pub mod router;
pub mod session;
pub mod shard;
pub mod systemd;
pub mod transport;

/// What unit tests of different modules share.
#[cfg(test)]
pub(crate) mod test_support {
    /// Held by the tests that load every core on purpose (the cluster's
    /// failure detector under busy cores) and by those that count an
    /// executor's loop turns in a stretch of time: run together, the
    /// first starve the second of the CPU they count on.
    pub(crate) static CPU_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// `CPU_HEAVY`, whether or not a test that held it failed.
    pub(crate) fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
        CPU_HEAVY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
