//! The cluster thread's loop: one task owns the peer links, foca and
//! discovery; every other task (handshakes, stream readers, timers, the
//! command queue) reports to it through one bounded inbox, so its state
//! needs no lock. Only the member list and the counters are shared with
//! the handles (`member::Shared`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, Identity, NoCustomBroadcast, PostcardCodec, Timer};
use quinn::{Connection, Endpoint, VarInt};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

mod discover;
mod swim;

use super::discovery;
use super::frame;
use super::hello::Refusal;
use super::link::{self, Failure, HandshakeCtx, Up, CLOSE_DUPLICATE, CLOSE_NORMAL, CLOSE_REFUSED};
use super::member::{Member, PeerCounters, Shared};
use super::settings::{Discovery, NetSettings};
use super::{Command, NetEvent, Outgoing, StreamId};
use crate::limits;
use crate::router::location::NodeId;

/// What the loop is told.
pub enum Inner {
    Command(Command),
    /// Boxed: an `Incoming` is ten times the other variants.
    Incoming(Box<quinn::Incoming>),
    LinkUp(Box<Up>),
    LinkFailed {
        addr: SocketAddr,
        dialed: bool,
        failure: Failure,
    },
    LinkClosed {
        node: NodeId,
        stable_id: usize,
        failure: Failure,
    },
    Datagram {
        from: NodeId,
        data: Bytes,
    },
    Timer(Timer<Member>),
    DiscoveryTick,
    Resolved(Result<Vec<SocketAddr>, String>),
}

/// One authenticated peer link.
struct Link {
    conn: Connection,
    /// The peer as its Hello described it.
    member: Member,
    /// Which node dialed: of two links between the same pair, both sides
    /// keep the one dialed by the smaller `NodeId`.
    dialer: NodeId,
    control: mpsc::Sender<Bytes>,
    /// Data streams by sending shard, opened on first use.
    data: HashMap<u16, mpsc::Sender<Bytes>>,
    counters: Arc<PeerCounters>,
}

type Swim = Foca<Member, PostcardCodec, SmallRng, NoCustomBroadcast>;

pub struct Node {
    settings: NetSettings,
    me: Member,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    ctx: Arc<HandshakeCtx>,
    swim: Swim,
    swim_io: AccumulatingRuntime<Member>,
    links: HashMap<NodeId, Link>,
    /// Addresses a dial is under way to (one at a time each), and the
    /// handle that abandons it.
    dialing: HashMap<SocketAddr, tokio::task::AbortHandle>,
    /// Addresses that turned out to be this node (a seed list usually
    /// holds every node, this one too).
    self_addrs: HashSet<SocketAddr>,
    /// Dialed addresses and the node that answered there.
    known_addrs: HashMap<SocketAddr, NodeId>,
    /// Members this node announced as up to the consumer.
    up: HashMap<NodeId, Member>,
    /// Manual discovery: QUIC addresses to rejoin after a restart.
    remembered: BTreeSet<SocketAddr>,
    /// After `leave`: no dialing, no discovery until the next `join`.
    left: bool,
    /// Incoming handshakes under way (capped: each holds a task).
    accepting: usize,
    /// Addresses that refused this node (or that it refused), not dialed
    /// again before the instant: one log line per pause, not per tick.
    refused_until: HashMap<SocketAddr, Instant>,
    inbox: mpsc::Sender<Inner>,
    events: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
}

/// The address peers dial to reach this node: `bind`, or with an
/// unspecified bind address the host of the node name.
pub fn advertised_quic_addr(settings: &NetSettings) -> SocketAddr {
    if !settings.bind.ip().is_unspecified() {
        return settings.bind;
    }
    match settings.host().parse() {
        Ok(ip) => SocketAddr::new(ip, settings.bind.port()),
        Err(_) => settings.bind,
    }
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: NetSettings,
        me: Member,
        endpoint: Endpoint,
        client: quinn::ClientConfig,
        ctx: Arc<HandshakeCtx>,
        inbox: mpsc::Sender<Inner>,
        events: mpsc::Sender<NetEvent>,
        shared: Arc<Shared>,
    ) -> Node {
        let rng = SmallRng::seed_from_u64(fastrand::u64(..));
        let swim = Foca::new(me.clone(), swim::swim_config(&settings), rng, PostcardCodec);
        let remembered = match settings.discovery {
            Discovery::Manual => discovery::load_peers(&discovery::peers_file(&settings.data_dir)),
            _ => BTreeSet::new(),
        };
        let mut self_addrs = HashSet::new();
        self_addrs.insert(settings.bind);
        self_addrs.insert(me.quic_addr);
        Node {
            settings,
            me,
            endpoint,
            client,
            ctx,
            swim,
            swim_io: AccumulatingRuntime::new(),
            links: HashMap::new(),
            dialing: HashMap::new(),
            self_addrs,
            known_addrs: HashMap::new(),
            up: HashMap::new(),
            remembered,
            left: false,
            accepting: 0,
            refused_until: HashMap::new(),
            inbox,
            events,
            shared,
        }
    }

    pub async fn run(mut self, mut inbox: mpsc::Receiver<Inner>) {
        self.publish_members();
        self.on_discovery_tick();
        while let Some(msg) = inbox.recv().await {
            match msg {
                Inner::Command(cmd) => self.on_command(cmd),
                Inner::Incoming(incoming) => {
                    if self.accepting >= limits::CLUSTER_HANDSHAKES_MAX {
                        debug!("cluster: too many handshakes under way; refusing one");
                        incoming.refuse();
                    } else {
                        self.accepting += 1;
                        tokio::spawn(link::accept(
                            *incoming,
                            self.ctx.clone(),
                            self.inbox.clone(),
                        ));
                    }
                }
                Inner::LinkUp(up) => {
                    if !up.dialed {
                        self.accepting = self.accepting.saturating_sub(1);
                    }
                    self.on_link_up(*up);
                }
                Inner::LinkFailed {
                    addr,
                    dialed,
                    failure,
                } => {
                    if !dialed {
                        self.accepting = self.accepting.saturating_sub(1);
                    }
                    self.on_link_failed(addr, dialed, failure);
                }
                Inner::LinkClosed {
                    node,
                    stable_id,
                    failure,
                } => self.on_link_closed(node, stable_id, failure),
                Inner::Datagram { from, data } => {
                    if let Err(e) = self.swim.handle_data(&data, &mut self.swim_io) {
                        debug!("cluster: bad SWIM datagram from {from}: {e}");
                    }
                }
                Inner::Timer(timer) => {
                    if let Err(e) = self.swim.handle_timer(timer, &mut self.swim_io) {
                        debug!("cluster: SWIM timer: {e}");
                    }
                }
                Inner::DiscoveryTick => self.on_discovery_tick(),
                Inner::Resolved(Ok(addrs)) => {
                    for addr in addrs {
                        self.dial_unless_linked(addr);
                    }
                }
                Inner::Resolved(Err(e)) => warn!("cluster: DNS discovery failed: {e}"),
            }
            self.drain_swim();
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send(out) => self.send(out),
            Command::CloseLink { node, reason } => {
                if let Some(link) = self.links.get(&node) {
                    warn!("cluster: closing the link with {node}: bad frame: {reason}");
                    PeerCounters::add(&self.shared.counters(node).malformed_frames, 1);
                    link.conn.close(
                        VarInt::from_u32(link::CLOSE_PROTOCOL),
                        format!("bad frame: {reason}").as_bytes(),
                    );
                }
            }
            Command::Run(f) => f(),
            Command::Join(addr) => {
                if self.left {
                    self.left = false;
                    let renewed = self.me.renew().expect("members always renew");
                    self.me = renewed.clone();
                    if let Err(e) = self.swim.change_identity(renewed, &mut self.swim_io) {
                        warn!("cluster: rejoining after leave: {e}");
                    }
                }
                info!("cluster: joining {addr}");
                // An operator's join is tried now, even after a refusal.
                self.refused_until.remove(&addr);
                self.dial(addr);
            }
            Command::Leave => {
                info!("cluster: leaving the cluster");
                self.left = true;
                if let Err(e) = self.swim.leave_cluster(&mut self.swim_io) {
                    warn!("cluster: leave: {e}");
                }
                self.remembered.clear();
                self.save_remembered();
                self.drain_swim();
                // foca announces nothing more after a leave, so the
                // consumers are told here that every peer is gone: the
                // driver must stop claiming ids at homes on other nodes
                // (a connect would wait for a claim timeout) and forget
                // their routes. The links close after the linger.
                let others: Vec<NodeId> = self.up.drain().map(|(node, _)| node).collect();
                self.publish_members();
                for node in others {
                    self.emit(NetEvent::MemberDown { node });
                }
                // Let the leave datagrams go before the links close.
                let conns: Vec<Connection> = self.links.values().map(|l| l.conn.clone()).collect();
                tokio::spawn(async move {
                    tokio::time::sleep(crate::limits::CLUSTER_LEAVE_LINGER).await;
                    for conn in conns {
                        conn.close(VarInt::from_u32(CLOSE_NORMAL), b"left the cluster");
                    }
                });
            }
            Command::ForceLeave(node) => {
                let target = self
                    .swim
                    .iter_membership_state()
                    .find(|m| m.id().node_id() == node)
                    .map(|m| m.id().clone());
                match target {
                    Some(id) => {
                        info!("cluster: force-leave of {} ({node})", id.name);
                        let down = foca::Member::new(
                            id.clone(),
                            self.swim_incarnation(&id),
                            foca::State::Down,
                        );
                        if let Err(e) =
                            self.swim
                                .apply_many(std::iter::once(down), true, &mut self.swim_io)
                        {
                            warn!("cluster: force-leave: {e}");
                        }
                        self.remembered.remove(&id.quic_addr);
                        self.save_remembered();
                    }
                    None => warn!("cluster: force-leave of {node}: not a member"),
                }
                if let Some(link) = self.links.remove(&node) {
                    link.conn
                        .close(VarInt::from_u32(CLOSE_NORMAL), b"forced to leave");
                }
            }
            Command::Freeze => {
                warn!("cluster: thread frozen (fault injection): no more answers");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
        }
    }

    fn swim_incarnation(&self, id: &Member) -> foca::Incarnation {
        self.swim
            .iter_membership_state()
            .find(|m| m.id() == id)
            .map_or(0, |m| m.incarnation())
    }

    fn send(&mut self, out: Outgoing) {
        let Some(link) = self.links.get_mut(&out.node) else {
            PeerCounters::add(&self.shared.counters(out.node).drops_no_link, 1);
            return;
        };
        if out.body.len() > limits::CLUSTER_FRAME_LEN_MAX_BYTES as usize
            || out.kind < frame::LOGIC_KIND_MIN
        {
            error!(
                "cluster: frame of kind {} and {} bytes cannot be sent (bug)",
                out.kind,
                out.body.len()
            );
            return;
        }
        let bytes = frame::encode(out.kind, &out.body);
        let queue = match out.stream {
            StreamId::Control => &link.control,
            StreamId::Data { shard } => link.data.entry(shard).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(limits::CLUSTER_STREAM_QUEUE_MAX);
                tokio::spawn(link::write_stream(
                    link.conn.clone(),
                    None,
                    shard,
                    rx,
                    link.counters.clone(),
                ));
                tx
            }),
        };
        match queue.try_send(bytes) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                PeerCounters::add(&link.counters.drops_queue_full, 1)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                PeerCounters::add(&link.counters.drops_no_link, 1)
            }
        }
    }

    fn dial(&mut self, addr: SocketAddr) {
        if self.self_addrs.contains(&addr) {
            return;
        }
        if let Some(until) = self.refused_until.get(&addr) {
            if Instant::now() < *until {
                return;
            }
            self.refused_until.remove(&addr);
        }
        if self.dialing.contains_key(&addr) {
            return;
        }
        let task = tokio::spawn(link::dial(
            self.endpoint.clone(),
            self.client.clone(),
            addr,
            self.ctx.clone(),
            self.inbox.clone(),
        ));
        self.dialing.insert(addr, task.abort_handle());
    }

    /// Refreshes the per-link gauges the handle reads.
    fn refresh_link_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for link in self.links.values() {
            let rtt_us = u64::try_from(link.conn.rtt().as_micros()).unwrap_or(u64::MAX);
            link.counters.rtt_us.store(rtt_us, Relaxed);
            let waiting = |q: &mpsc::Sender<Bytes>| q.max_capacity() - q.capacity();
            let depth = waiting(&link.control) + link.data.values().map(waiting).sum::<usize>();
            link.counters.queue_depth.store(depth as u64, Relaxed);
        }
    }

    fn dial_unless_linked(&mut self, addr: SocketAddr) {
        let linked = self
            .known_addrs
            .get(&addr)
            .is_some_and(|n| self.links.contains_key(n))
            || self.links.values().any(|l| l.member.quic_addr == addr);
        if !linked {
            self.dial(addr);
        }
    }

    fn on_link_up(&mut self, up: Up) {
        if up.dialed {
            // Our dial ended. (An inbound link's address is the peer's
            // endpoint, which is also where our own dial to it goes: that
            // dial is dealt with below, once the link is kept.)
            self.dialing.remove(&up.addr);
        }
        let hello = &up.hello;
        let node = NodeId(hello.node_id);
        let member = Member {
            node: hello.node_id,
            name: hello.node_name.clone(),
            role: hello.role,
            quic_addr: hello.quic_addr,
            mqtt_addr: hello.mqtt_addr,
            boot_epoch_ms: hello.boot_epoch_ms,
            renewal: 0,
        };
        // Two names with one id: refuse, naming both.
        let clash = self
            .links
            .get(&node)
            .map(|l| l.member.name.clone())
            .or_else(|| {
                self.swim
                    .iter_membership_state()
                    .find(|m| m.id().node == node.0)
                    .map(|m| m.id().name.clone())
            })
            .filter(|name| *name != member.name);
        if let Some(other) = clash {
            let reason = format!(
                "node id collision: {:?} and {:?} both have id {node}; rename one",
                member.name, other
            );
            warn!(
                "cluster: refused link from {} ({}): {reason}",
                member.name, up.addr
            );
            up.conn
                .close(VarInt::from_u32(CLOSE_REFUSED), reason.as_bytes());
            self.emit(NetEvent::Refused {
                addr: up.addr,
                reason,
            });
            return;
        }
        if up.dialed {
            self.known_addrs.insert(up.addr, node);
            // Manual discovery: a joined address is kept once it answered.
            if matches!(self.settings.discovery, Discovery::Manual) && !self.left {
                self.remember(up.addr);
            }
        }
        let dialer = if up.dialed { self.me.node_id() } else { node };
        if let Some(old) = self.links.get(&node) {
            let pair_min = self.me.node_id().min(node);
            let keep_old = link::keeps_old_link(
                (old.member.boot_epoch_ms, old.dialer),
                (member.boot_epoch_ms, dialer),
                pair_min,
            );
            if keep_old {
                debug!("cluster: second link with {} closed", member.name);
                up.conn
                    .close(VarInt::from_u32(CLOSE_DUPLICATE), b"duplicate link");
                return;
            }
            let old = self.links.remove(&node).expect("checked above");
            old.conn.close(
                VarInt::from_u32(CLOSE_DUPLICATE),
                b"replaced by a newer link",
            );
            if self.up.contains_key(&node) {
                self.emit(NetEvent::LinkDown { node });
            }
        }
        if !up.dialed {
            // The peer reached us first while our own dial to it is still
            // under way (typically: we dialed before it listened, and QUIC
            // resends its first packet about a second later). Left to
            // finish, that dial would replace this link a second from now
            // (`keeps_old_link`) and lose what the driver sent on it
            // meanwhile (claims, takeover steps), just as clients arrive.
            if let Some(dial) = self.dialing.remove(&member.quic_addr) {
                debug!(
                    "cluster: dial to {} abandoned: the peer linked first",
                    member.quic_addr
                );
                dial.abort();
            }
        }
        info!(
            "cluster: linked with {} ({node}) at {}",
            member.name, up.addr
        );
        let counters = self.shared.counters(node);
        let (control_tx, control_rx) = mpsc::channel(limits::CLUSTER_STREAM_QUEUE_MAX);
        let conn = up.conn;
        tokio::spawn(link::write_stream(
            conn.clone(),
            Some(up.control_send),
            0,
            control_rx,
            counters.clone(),
        ));
        tokio::spawn(link::read_stream(
            conn.clone(),
            up.control_recv,
            node,
            Some(StreamId::Control),
            counters.clone(),
            self.events.clone(),
        ));
        tokio::spawn(link::accept_data_streams(
            conn.clone(),
            node,
            counters.clone(),
            self.events.clone(),
        ));
        tokio::spawn(link::read_datagrams(conn.clone(), node, self.inbox.clone()));
        tokio::spawn(link::watch(conn.clone(), node, self.inbox.clone()));
        // Before any frame of the new link can be read (readers were
        // spawned above but have not run: one thread).
        if self.up.contains_key(&node) {
            self.emit(NetEvent::LinkUp { node });
        }
        self.links.insert(
            node,
            Link {
                conn,
                member: member.clone(),
                dialer,
                control: control_tx,
                data: HashMap::new(),
                counters,
            },
        );
        if !self.left {
            if let Err(e) = self.swim.announce(member, &mut self.swim_io) {
                debug!("cluster: announce: {e}");
            }
        }
    }

    fn on_link_failed(&mut self, addr: SocketAddr, dialed: bool, failure: Failure) {
        if dialed {
            self.dialing.remove(&addr);
            if matches!(failure, Failure::TheyRefused(_) | Failure::WeRefused(_)) {
                let until = Instant::now() + limits::CLUSTER_REFUSED_RETRY;
                self.refused_until.insert(addr, until);
            }
        }
        match failure {
            Failure::WeRefused(Refusal::SelfLink) => {
                self.self_addrs.insert(addr);
            }
            Failure::WeRefused(reason) => {
                let reason = reason.to_string();
                warn!("cluster: refused link with {addr}: {reason}");
                self.emit(NetEvent::Refused { addr, reason });
            }
            Failure::TheyRefused(reason) => {
                warn!("cluster: link with {addr} refused by the peer: {reason}");
                self.emit(NetEvent::Refused { addr, reason });
            }
            Failure::Failed(reason) if reason.contains("a link to itself") => {
                self.self_addrs.insert(addr);
            }
            Failure::Failed(reason) => debug!("cluster: no link with {addr}: {reason}"),
        }
    }

    fn on_link_closed(&mut self, node: NodeId, stable_id: usize, failure: Failure) {
        if self
            .links
            .get(&node)
            .is_some_and(|l| l.conn.stable_id() == stable_id)
        {
            let link = self.links.remove(&node).expect("checked above");
            if self.up.contains_key(&node) {
                self.emit(NetEvent::LinkDown { node });
            }
            match failure {
                Failure::TheyRefused(reason) => {
                    warn!(
                        "cluster: link with {} refused by the peer: {reason}",
                        link.member.name
                    );
                    let until = Instant::now() + limits::CLUSTER_REFUSED_RETRY;
                    self.refused_until.insert(link.member.quic_addr, until);
                    self.emit(NetEvent::Refused {
                        addr: link.member.quic_addr,
                        reason,
                    });
                }
                other => info!("cluster: link with {} closed: {other:?}", link.member.name),
            }
        }
    }

    fn emit(&self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            PeerCounters::add(&self.shared.events_dropped, 1);
            error!("cluster: event queue full, a membership event was dropped");
        }
    }
}

/// Forwards incoming QUIC connections to the loop.
pub async fn accept_loop(endpoint: Endpoint, inbox: mpsc::Sender<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        if inbox
            .send(Inner::Incoming(Box::new(incoming)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Forwards the handles' commands to the loop.
pub async fn command_loop(mut commands: mpsc::Receiver<Command>, inbox: mpsc::Sender<Inner>) {
    while let Some(cmd) = commands.recv().await {
        if inbox.send(Inner::Command(cmd)).await.is_err() {
            return;
        }
    }
}
