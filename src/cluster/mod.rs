//! The cluster (issue 13, docs/adr/0001-cluster.md): nodes linked over QUIC.
//!
//! * [`net`]: the cluster thread. It owns the QUIC endpoint, the peer
//!   links (handshake, authentication, framing), SWIM membership (foca)
//!   and discovery. Shards never touch the network for the cluster; they
//!   reach this thread through bounded queues.
//! * [`logic`]: the sans-IO cluster logic the thread drives: route relay
//!   with acknowledgements before SUBACK, client-id homes and claims,
//!   cross-node takeover, forwarding windows; and its seeded simulation.
//! * [`driver`]: the loop that runs the logic for a running node, between
//!   the cluster thread and the shards (routes, forwarding).
//! * [`certs`]: a CA and node certificates for a first cluster
//!   (`ringmq gen-certs`).

//! * `setup`, `run`, `control`: the node's start of the cluster thread,
//!   its event consumer and the admin API's hold on it; `clients`: the
//!   clients API's questions and answers between admin and wire types.
//! * `load`, `view`: load figures exchanged between nodes, and the running
//!   nodes as admission lists them (Server Reference, `least_connections`).

pub mod certs;
mod clients;
pub mod control;
pub mod driver;
pub mod load;
pub mod logic;
pub mod net;
mod run;
pub mod setup;
pub mod view;

pub use run::run_node;
pub use setup::Cluster;

/// The protocol versions a link speaks, as this build has them: the
/// handshake's (which names them all), the frames' and the logic bodies'.
/// Changing the frame or body version without a new handshake version would
/// let two builds link and then fail on every frame: this stops the build
/// instead (bump `net::hello::HELLO_VERSION` and update the tuple).
pub const PROTOCOL_VERSIONS: (u16, u8, u8) = (2, 1, 2);
const _: () = assert!(
    net::HELLO_VERSION == PROTOCOL_VERSIONS.0
        && net::FRAME_VERSION == PROTOCOL_VERSIONS.1
        && logic::proto::PROTO_VERSION == PROTOCOL_VERSIONS.2,
    "a cluster protocol version changed: bump net::hello::HELLO_VERSION and PROTOCOL_VERSIONS"
);
