//! The cluster thread (see `super`): QUIC links between nodes, their
//! authentication and framing, SWIM membership and discovery.
//!
//! `start` spawns the OS thread `ringmq-cluster` running a current-thread
//! tokio runtime (no shard runs tokio; this layer knows no shard or
//! glommio type). Callers talk to it through a [`ClusterHandle`] (bounded
//! commands; a full queue hands the frame back, so a shard never blocks)
//! and read what happens from [`ClusterEvents`].
//!
//! * `settings`: what the thread is started with (plain data).
//! * `frame`: the 8-byte frame header, checked before a body is read.
//! * `hello`: the handshake and the cookie proof (sans-IO).
//! * `tls`: rustls configurations (cluster CA or self-signed).
//! * `link`: handshake and stream tasks of one peer connection.
//! * `node`: the loop owning links, foca and discovery.
//! * `member`: foca's identity, the member list, per-peer counters.
//! * `discovery`: remembered peers, DNS.

mod discovery;
mod frame;
mod hello;
mod link;
mod member;
mod node;
pub mod settings;
mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dns;
#[cfg(test)]
mod tests_tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use frame::{FRAME_VERSION, LOGIC_KIND_MIN};
pub use hello::HELLO_VERSION;
pub use member::{MemberInfo, MemberState, PeerStats};
pub use settings::{Discovery, DnsRecordType, NetSettings, Role, Timing, TlsMode};

use crate::limits;
use crate::router::location::NodeId;
use member::Shared;

/// Which stream of a peer link a frame travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// The one bidirectional stream per link: handshake, routes, registry,
    /// takeover.
    Control,
    /// One unidirectional stream per sending shard, so one shard's frames
    /// keep their order and shards do not block each other.
    Data { shard: u16 },
}

/// What the cluster thread reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// A node is up (again, with a newer epoch after a restart).
    MemberUp {
        node: NodeId,
        name: String,
        role: Role,
        mqtt_addr: SocketAddr,
        epoch: u64,
    },
    /// A node was declared down (or left).
    MemberDown { node: NodeId },
    /// The link with a running member broke or was replaced: what its
    /// streams carried and was not yet read is lost (frames sent until the
    /// next `LinkUp` are dropped, counted in `drops_no_link`).
    LinkDown { node: NodeId },
    /// A new link with a running member (after `LinkDown`): its streams
    /// start afresh, so the consumer restarts numbering and resynchronises.
    LinkUp { node: NodeId },
    /// A frame of a logic kind (16..=255) from a peer, in the order of its
    /// stream.
    PeerFrame {
        from: NodeId,
        stream: StreamId,
        kind: u8,
        body: Bytes,
    },
    /// A link was refused, by this node or by the peer; says what did not
    /// match.
    Refused { addr: SocketAddr, reason: String },
}

/// A frame to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub node: NodeId,
    pub stream: StreamId,
    /// `LOGIC_KIND_MIN..=255`.
    pub kind: u8,
    pub body: Bytes,
}

pub(crate) enum Command {
    Join(SocketAddr),
    Leave,
    ForceLeave(NodeId),
    Send(Outgoing),
    /// A logic frame from this peer was malformed: close the link (the
    /// reason goes to the log and to the peer).
    CloseLink {
        node: NodeId,
        reason: String,
    },
    /// Runs on the cluster thread, inside its runtime: the consumer (the
    /// cluster driver) spawns its loop there (`ClusterHandle::run_here`).
    Run(Box<dyn FnOnce() + Send>),
    /// Fault injection: the thread stops answering (as a crashed node).
    Freeze,
}

/// Why a command was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the cluster thread's command queue is full")]
    Full,
    #[error("no cluster: singleton discovery, or the cluster thread stopped")]
    NoCluster,
}

/// A way to the cluster thread: cheap to clone, `Send`.
#[derive(Clone)]
pub struct ClusterHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    node: NodeId,
}

/// The events of the cluster thread; one consumer.
pub struct ClusterEvents {
    events: mpsc::Receiver<NetEvent>,
}

impl ClusterEvents {
    pub async fn recv(&mut self) -> Option<NetEvent> {
        self.events.recv().await
    }

    /// For a consumer that polls several sources in one future.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<NetEvent>> {
        self.events.poll_recv(cx)
    }

    pub fn try_recv(&mut self) -> Option<NetEvent> {
        self.events.try_recv().ok()
    }

    /// For a consumer on a plain thread (not inside a tokio runtime).
    pub fn blocking_recv(&mut self) -> Option<NetEvent> {
        self.events.blocking_recv()
    }
}

impl ClusterHandle {
    fn command(&self, cmd: Command) -> Result<(), CommandError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CommandError::Full,
            mpsc::error::TrySendError::Closed(_) => CommandError::NoCluster,
        })
    }

    /// Links with the node at this QUIC address and joins its cluster.
    pub fn join(&self, addr: SocketAddr) -> Result<(), CommandError> {
        self.command(Command::Join(addr))
    }

    /// Leaves the cluster (the others see this node down at once); the
    /// node keeps running alone until the next `join`.
    pub fn leave(&self) -> Result<(), CommandError> {
        self.command(Command::Leave)
    }

    /// Declares another node down and forgets it (a node that is in fact
    /// running finds itself declared down and rejoins).
    pub fn force_leave(&self, node: NodeId) -> Result<(), CommandError> {
        self.command(Command::ForceLeave(node))
    }

    /// Closes the link with `node` because a frame it sent was malformed
    /// (`reason`, logged here and sent to the peer); counted in
    /// `PeerStats::malformed_frames`. The link is replaced as after any
    /// loss.
    pub fn close_link(&self, node: NodeId, reason: String) -> Result<(), CommandError> {
        self.command(Command::CloseLink { node, reason })
    }

    /// Queues a frame for a peer; never blocks. A full queue (or no
    /// cluster thread: singleton) hands the frame back. A frame for a peer without a link is dropped and
    /// counted (`PeerStats::drops_no_link`).
    pub fn try_send(&self, out: Outgoing) -> Result<(), Outgoing> {
        self.commands
            .try_send(Command::Send(out))
            .map_err(|e| match e.into_inner() {
                Command::Send(out) => out,
                _ => unreachable!("only a Send was queued"),
            })
    }

    /// Runs `f` on the cluster thread inside its tokio runtime (so it may
    /// `tokio::spawn`): the cluster driver's loop runs there, beside the
    /// links it feeds, instead of on a thread of its own; one thread (and
    /// one wake-up and context switch per hand-over) less between the
    /// shards and the QUIC streams (docs/performance.md, "Cross-node
    /// forwarding").
    pub fn run_here(&self, f: Box<dyn FnOnce() + Send>) -> Result<(), CommandError> {
        self.command(Command::Run(f))
    }

    /// This node and every member it knows, by name.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counters of the link with `node` (zero if never linked).
    pub fn peer_stats(&self, node: NodeId) -> PeerStats {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(&node).map(|c| c.snapshot()).unwrap_or_default()
    }

    /// The cluster driver's figures for `node`: forwarded messages dropped
    /// (`[reason][qos]`, totals) and its windows' depth (messages not yet
    /// acknowledged), shown beside the link's counters.
    pub fn record_forwarding(&self, node: NodeId, drops: [[u64; 3]; 2], window_depth: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = self.shared.counters(node);
        for (row, totals) in counters.forward_drops.iter().zip(drops) {
            for (counter, total) in row.iter().zip(totals) {
                counter.store(total, Relaxed);
            }
        }
        counters.forward_window_depth.store(window_depth, Relaxed);
    }

    /// Counters of every peer ever linked.
    pub fn all_peer_stats(&self) -> Vec<(NodeId, PeerStats)> {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = peers.iter().map(|(n, c)| (*n, c.snapshot())).collect();
        all.sort_by_key(|(n, _)| *n);
        all
    }

    /// Events dropped because the consumer did not keep up.
    pub fn events_dropped(&self) -> u64 {
        self.shared
            .events_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Fault injection for tests: the cluster thread stops answering
    /// anything, as a crashed or partitioned node would.
    #[doc(hidden)]
    pub fn freeze(&self) -> Result<(), CommandError> {
        self.command(Command::Freeze)
    }
}

/// Starts the cluster thread. With `Discovery::Singleton` there is no
/// thread and no endpoint: the handle answers `NoCluster` and lists this
/// node alone. Errors (bind, certificate files) name what failed.
pub fn start(settings: NetSettings) -> io::Result<(ClusterHandle, ClusterEvents)> {
    let shared = Arc::new(Shared::default());
    let quic_addr = node::advertised_quic_addr(&settings);
    let me = member::Member {
        node: settings.node_id.0,
        name: settings.node_name.clone(),
        role: settings.role,
        quic_addr,
        mqtt_addr: settings.mqtt_addr,
        boot_epoch_ms: settings.boot_epoch_ms,
        renewal: 0,
    };
    *shared.members.lock().unwrap_or_else(|e| e.into_inner()) = vec![MemberInfo {
        node: settings.node_id,
        name: settings.node_name.clone(),
        role: settings.role,
        state: MemberState::Running,
        mqtt_addr: settings.mqtt_addr,
        boot_epoch_ms: settings.boot_epoch_ms,
    }];
    let (commands_tx, commands_rx) = mpsc::channel(limits::CLUSTER_COMMANDS_MAX);
    let (events_tx, events_rx) = mpsc::channel(limits::CLUSTER_EVENTS_MAX);
    let handle = ClusterHandle {
        commands: commands_tx,
        shared: shared.clone(),
        node: settings.node_id,
    };
    let events = ClusterEvents { events: events_rx };
    if matches!(settings.discovery, Discovery::Singleton) {
        return Ok((handle, events));
    }
    assert_eq!(
        settings.node_id,
        NodeId::from_name(&settings.node_name),
        "the node id is derived from the node name"
    );
    let link_tls = tls::build(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = {
        let _entered = runtime.enter();
        quinn::Endpoint::server(link_tls.server, settings.bind)
            .map_err(|e| io::Error::new(e.kind(), format!("cluster.bind {}: {e}", settings.bind)))?
    };
    let ctx = Arc::new(link::HandshakeCtx {
        hello: hello::Hello {
            version: hello::HELLO_VERSION,
            cluster_name: settings.cluster_name.clone(),
            node_name: settings.node_name.clone(),
            node_id: settings.node_id.0,
            role: settings.role,
            boot_epoch_ms: settings.boot_epoch_ms,
            quic_addr,
            mqtt_addr: settings.mqtt_addr,
            proof: Vec::new(),
        },
        cookie: settings.cookie.clone(),
        check_cert_name: matches!(settings.tls, TlsMode::Ca { .. }),
        require_cert: matches!(
            settings.tls,
            TlsMode::Ca {
                fail_if_no_peer_cert: true,
                ..
            }
        ),
        timeout: settings.timing.handshake_timeout,
    });
    let (inbox_tx, inbox_rx) = mpsc::channel(limits::CLUSTER_COMMANDS_MAX);
    let node = node::Node::new(
        settings,
        me,
        endpoint.clone(),
        link_tls.client,
        ctx,
        inbox_tx.clone(),
        events_tx,
        shared,
    );
    std::thread::Builder::new()
        .name("ringmq-cluster".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(node::accept_loop(endpoint, inbox_tx.clone()));
                tokio::spawn(node::command_loop(commands_rx, inbox_tx));
                node.run(inbox_rx).await;
            });
        })?;
    Ok((handle, events))
}
