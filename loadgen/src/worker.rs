//! One worker thread: a level-triggered epoll loop that owns a share of the
//! clients outright (no locks; only the closed-loop counters in
//! [`Shared`] are touched by other threads).
//!
//! Each turn of the loop: start due connections, poll the sockets, read every
//! readable socket into one big per-thread buffer and decode all complete
//! packets, then let publishers write a batch each (up to `--batch` PUBLISH
//! packets in one `send`): every unpaced publisher, but only the paced one
//! due earliest ([`PACED_SENDS_PER_TURN`]), so what arrived meanwhile is read
//! before more is sent. A publisher writes only when its previous batch left
//! the socket completely, so kernel buffers never hide a backlog.
//!
//! The loop blocks in `epoll_wait` only when nothing can happen before the
//! next socket event; it busy-polls while a paced send is due within
//! [`pacing::SPIN_BELOW_NS`] or while a publisher waits on counters another
//! thread updates (no wake-up crosses threads).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ahash::AHashMap;
use bytes::{BufMut, BytesMut};
use ringmq::codec::{
    decode_any, encode, ByteStr, Connect, ConnectProperties, Packet, Protocol, PubAck, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions,
};

use crate::clock::{now_ns, NS_PER_MS, NS_PER_S};
use crate::fastpath::{self, Frame};
use crate::pacing::{Pacer, SPIN_BELOW_NS};
use crate::plan::{ClientSpec, Role};
use crate::server_ref;
use crate::shared::Shared;
use crate::stamp::{Stamp, STAMP_LEN};
use crate::stats::ThreadStats;
use crate::sys::{self, Epoll};
use crate::tls::{self, TlsClient};
use crate::track::{Mode, Stream};
use crate::window::Window;

/// Bytes read per `read` call (one buffer per thread).
const READ_CHUNK: usize = 256 * 1024;
/// Most bytes of PUBLISH packets written per batch.
const BATCH_BYTES_MAX: usize = 256 * 1024;
/// Paced publishers that write per loop turn; the others still due wait
/// for the next turn, after the readable sockets have been read. Every
/// `send` and `read` on loopback costs microseconds (the peer's TCP receive
/// runs inside the sender's system call), so letting every due publisher
/// write before reading again makes the messages already delivered wait a
/// whole round of sends: at 1.13-1.45M msg/s over 50 pairs on one core
/// that wait was the load generator's own p50, 230-530 us (now ~20 us;
/// docs/performance.md). Publishers
/// held back are not stamped yet (the stamp is taken when the batch is
/// built, just before its `send`) and catch up with a larger batch.
const PACED_SENDS_PER_TURN: usize = 1;
/// Longest sleep in epoll_wait, so phase changes are seen promptly.
const IDLE_WAIT_MS: i32 = 10;
/// Keep-alive and timeout checks run this often.
const HOUSEKEEPING_NS: u64 = 100 * NS_PER_MS;
/// A refused reconnect (`--reconnect`) is tried again this many times,
/// after 100 ms, 200 ms, ... up to `RECONNECT_BACKOFF_MAX_NS` apart.
const RECONNECT_RETRIES_MAX: u8 = 20;
const RECONNECT_BACKOFF_MAX_NS: u64 = 2_000 * NS_PER_MS;
const EVENTS_PER_WAIT: usize = 1024;

/// Run-wide settings every worker reads.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub protocol: Protocol,
    pub qos: QoS,
    pub payload_size: usize,
    pub keepalive_s: u16,
    pub clean_start: bool,
    pub session_expiry_s: u32,
    /// Closed-loop window per publisher, in messages.
    pub max_outstanding: u64,
    /// Copies expected per message (0: no closed loop on deliveries).
    pub copies: u64,
    pub batch: u32,
    /// --inflight (0 = default, see the option).
    pub inflight: u16,
    pub outstanding_timeout_ns: u64,
    pub rate_per_publisher: Option<f64>,
    pub publishers_total: u32,
    pub connect_rate_per_thread: Option<f64>,
    pub connect_inflight: u32,
    /// `--busy-poll`: never sleep in `epoll_wait`.
    pub busy_poll: bool,
    pub connect_timeout_ns: u64,
    pub target: SocketAddr,
    pub bind_addrs: Vec<IpAddr>,
    pub max_redirects: u8,
    /// `--reconnect`: an evicted client connects again.
    pub reconnect: bool,
    /// `--reconnect-addr`: where, without a Server Reference.
    pub reconnect_addr: Option<SocketAddr>,
    pub mode: Mode,
    pub run_id: u16,
    /// `sub` scenario: count messages of any run (another process publishes).
    pub accept_any_run: bool,
    pub threads: usize,
    pub max_packet_size: u32,
    /// Decode every packet with `ringmq::codec` instead of [`fastpath`].
    pub codec_decode: bool,
    /// `--slowest`: how many of the slowest messages to keep.
    pub slowest: usize,
    /// `--tls`: every connection speaks TLS.
    pub tls: Option<TlsClient>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet.
    Waiting,
    /// TCP connect in progress.
    Connecting,
    AwaitConnAck,
    AwaitSubAck,
    Ready,
    /// Given up, or shut down.
    Closed,
}

impl State {
    fn in_setup(self) -> bool {
        matches!(
            self,
            State::Connecting | State::AwaitConnAck | State::AwaitSubAck
        )
    }
}

struct Publisher {
    id: u32,
    /// One encoded PUBLISH (codec output) with a zero payload; each message
    /// is a copy with the packet id and the stamp patched in.
    template: Vec<u8>,
    /// Offset of the packet identifier in `template` (QoS > 0).
    packet_id_offset: usize,
    payload_offset: usize,
    /// Next sequence number = messages sent.
    seq: u64,
    /// QoS 1/2 messages not yet PUBACKed / PUBCOMPed.
    inflight: u32,
    /// The server's Receive Maximum (65535 when absent).
    receive_max: u32,
    next_packet_id: u16,
    pacer: Option<Pacer>,
    /// Closed loop on deliveries (when subscribers of ours expect it).
    window: Option<Window>,
    /// `--reconnect` with QoS 1/2: the PUBLISHes not yet acknowledged, in
    /// sending order, sent again after a reconnect as a client must
    /// (MQTT-4.4.0-1): a message the broker never acknowledged is the
    /// client's to resend, so "lost" counts only what the broker lost.
    unacked: Option<VecDeque<Unacked>>,
}

/// A QoS 1/2 PUBLISH of ours the server has not acknowledged yet.
#[derive(Clone, Copy)]
struct Unacked {
    packet_id: u16,
    seq: u64,
    sent_ns: u64,
    /// QoS 2: PUBREC received, so PUBREL is what is resent.
    released: bool,
}

impl Publisher {
    /// Forgets the message of `packet_id` (acknowledged; usually the oldest).
    fn acked(&mut self, packet_id: u16) {
        if let Some(u) = self.unacked.as_mut() {
            if let Some(at) = u.iter().position(|m| m.packet_id == packet_id) {
                u.remove(at);
            }
        }
    }

    fn next_packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }
}

struct Subscriber {
    filter: String,
    /// Column in the closed-loop counters (see `plan::Role::Subscriber`).
    slot: u32,
    /// Keyed by run id << 32 | publisher id.
    streams: AHashMap<u64, Stream>,
}

struct Client {
    /// Index in the whole plan (selects the source address).
    global_index: usize,
    client_id: String,
    fd: RawFd,
    /// Bumped when the socket is closed: bytes read from an older socket
    /// (before a redirect) are never taken for the new one's.
    socket_generation: u32,
    state: State,
    addr: SocketAddr,
    redirects: u8,
    /// Times the server ended this client's connection after it was ready.
    evictions: u32,
    /// Refused reconnects tried again since the last eviction.
    retries: u8,
    /// First connect attempt (CONNACK latency and connect timeout).
    started_ns: u64,
    /// Partial packet left over from the last read.
    rbuf: BytesMut,
    /// Bytes to write; `wpos` of them are written.
    wbuf: BytesMut,
    wpos: usize,
    /// EPOLLOUT registered.
    want_write: bool,
    /// The TLS session (`--tls`); `rbuf` and `wbuf` then hold plaintext.
    /// Boxed: a plain TCP client pays one pointer for it.
    tls: Option<Box<rustls::ClientConnection>>,
    last_send_ns: u64,
    publisher: Option<Box<Publisher>>,
    subscriber: Option<Box<Subscriber>>,
}

impl Client {
    /// Bytes not yet on the socket: plaintext in `wbuf`, or TLS records
    /// rustls still holds.
    fn write_pending(&self) -> bool {
        self.wpos < self.wbuf.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes `wbuf[wpos..]` (through TLS with `--tls`). `WouldBlock`: the
    /// rest waits for EPOLLOUT (or, with TLS, for the handshake to end).
    fn write_out(&mut self) -> io::Result<()> {
        if let Some(session) = self.tls.as_deref_mut() {
            return tls::write(session, self.fd, &self.wbuf, &mut self.wpos);
        }
        while self.wpos < self.wbuf.len() {
            match sys::send(self.fd, &self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub struct Worker {
    thread: usize,
    cfg: Arc<WorkerConfig>,
    shared: Arc<Shared>,
    epoll: Epoll,
    clients: Vec<Client>,
    /// Indexes of publishers in `clients`.
    publishers: Vec<usize>,
    stats: ThreadStats,
    scratch: BytesMut,
    events: Vec<(u32, u64)>,
    /// Deliveries to add to the closed-loop counters: (index, count).
    credits: Vec<(usize, u64)>,
    next_to_connect: usize,
    connects_started: u64,
    connect_pacer: Option<Pacer>,
    in_setup: u32,
    // Schedule, copied from `Shared` once publishing starts.
    publish_start_ns: u64,
    measure_start_ns: u64,
    stop_ns: u64,
    /// Set by a pump pass: busy-poll instead of sleeping.
    spin: bool,
    /// Earliest paced send due (u64::MAX: none).
    next_due_ns: u64,
    /// Paced publishers by when they are due: (time, client index).
    due: BinaryHeap<Reverse<(u64, usize)>>,
    /// Refused reconnects to try again: (when, client index).
    retry_due: BinaryHeap<Reverse<(u64, usize)>>,
    /// Scratch for `pump_publishers`.
    due_again: Vec<(u64, usize)>,
    next_housekeeping_ns: u64,
    /// The thread's run delay when the measured window began (see
    /// [`Worker::track_preemption`]); `None` before, or where unknown.
    run_delay_at_measure_start_ns: Option<u64>,
    /// The measured window's preemption has been taken.
    preemption_taken: bool,
    // Counters mirrored into `Shared::threads[thread]`.
    sent: u64,
    received: u64,
    errors: u64,
    connected: u64,
    ready: u64,
    failed: u64,
}

fn encode_into(packet: &Packet, protocol: Protocol, out: &mut BytesMut) {
    encode(packet, protocol, out).expect("the load generator builds valid packets");
}

/// After a CONNACK: writes again every message `p` sent and the server did
/// not acknowledge (a first connect has none), with DUP set, its packet id
/// and its stamp (so a copy that did arrive counts as a duplicate, not as a
/// second message), or its PUBREL once PUBREC came. Returns how many.
fn resend_unacked(p: &mut Publisher, run_id: u16, protocol: Protocol, wbuf: &mut BytesMut) -> u64 {
    let Some(unacked) = p.unacked.as_ref() else {
        return 0;
    };
    for m in unacked {
        if m.released {
            encode_into(&Packet::PubRel(ack(m.packet_id)), protocol, wbuf);
            continue;
        }
        let start = wbuf.len();
        wbuf.put_slice(&p.template);
        wbuf[start] |= 0x08; // DUP
        let o = start + p.packet_id_offset;
        wbuf[o..o + 2].copy_from_slice(&m.packet_id.to_be_bytes());
        let o = start + p.payload_offset;
        Stamp {
            run_id,
            publisher_id: p.id,
            seq: m.seq,
            sent_ns: m.sent_ns,
        }
        .write(&mut wbuf[o..o + STAMP_LEN]);
    }
    p.inflight = unacked.len() as u32;
    unacked.len() as u64
}

fn ack(packet_id: u16) -> PubAck {
    PubAck {
        packet_id,
        ..PubAck::default()
    }
}

/// Unacknowledged QoS 1/2 PUBLISH packets a publisher may have: the
/// server's Receive Maximum (v5; 65535 when absent), or [`V311_INFLIGHT`]
/// on 3.1.1, lowered to `--inflight` when that is set.
pub fn inflight_window(protocol: Protocol, receive_maximum: Option<u16>, option: u16) -> u32 {
    let server = if protocol.is_v5() {
        receive_maximum.unwrap_or(u16::MAX)
    } else {
        V311_INFLIGHT
    };
    let w = if option > 0 && (option < server || !protocol.is_v5()) {
        option
    } else {
        server
    };
    w as u32
}

/// 3.1.1 has no Receive Maximum; brokers cap unacknowledged QoS 2 near this
/// (ringmq: `mqtt.max_inflight`, 32 by default) and may close the connection.
pub const V311_INFLIGHT: u16 = 32;

/// Encoded PUBLISH with a zeroed payload; returns (bytes, packet id offset,
/// payload offset). Checked against the decoder in the tests.
pub fn publish_template(
    topic: &str,
    qos: QoS,
    payload_size: usize,
    protocol: Protocol,
) -> (Vec<u8>, usize, usize) {
    let p = Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        payload: vec![0u8; payload_size].into(),
        properties: None,
    };
    let mut out = BytesMut::new();
    encode_into(&Packet::Publish(p), protocol, &mut out);
    let payload_offset = out.len() - payload_size;
    // v5: an empty property section (one 0 byte) sits between the packet
    // id and the payload.
    let props_len = usize::from(protocol.is_v5());
    let packet_id_offset = payload_offset - props_len - 2;
    (out.to_vec(), packet_id_offset, payload_offset)
}

impl Worker {
    pub fn new(
        thread: usize,
        specs: Vec<(usize, ClientSpec)>,
        cfg: Arc<WorkerConfig>,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        let mut publishers = Vec::new();
        let clients: Vec<Client> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (global_index, spec))| {
                let (publisher, subscriber) = match spec.role {
                    Role::Idle => (None, None),
                    Role::Publisher { id, topic } => {
                        publishers.push(i);
                        let (template, packet_id_offset, payload_offset) =
                            publish_template(&topic, cfg.qos, cfg.payload_size, cfg.protocol);
                        let p = Publisher {
                            id,
                            template,
                            packet_id_offset,
                            payload_offset,
                            seq: 0,
                            inflight: 0,
                            receive_max: u16::MAX as u32,
                            next_packet_id: 0,
                            pacer: None,
                            window: (cfg.copies > 0).then(|| {
                                Window::new(cfg.max_outstanding, cfg.outstanding_timeout_ns)
                            }),
                            unacked: (cfg.reconnect && cfg.qos != QoS::AtMostOnce)
                                .then(VecDeque::new),
                        };
                        (Some(Box::new(p)), None)
                    }
                    Role::Subscriber { filter, slot } => (
                        None,
                        Some(Box::new(Subscriber {
                            filter,
                            slot,
                            streams: AHashMap::new(),
                        })),
                    ),
                };
                Client {
                    global_index,
                    client_id: spec.client_id,
                    fd: -1,
                    socket_generation: 0,
                    state: State::Waiting,
                    addr: spec.target.unwrap_or(cfg.target),
                    redirects: 0,
                    evictions: 0,
                    retries: 0,
                    started_ns: 0,
                    rbuf: BytesMut::new(),
                    wbuf: BytesMut::new(),
                    wpos: 0,
                    want_write: false,
                    tls: None,
                    last_send_ns: 0,
                    publisher,
                    subscriber,
                }
            })
            .collect();
        let now = now_ns();
        let connect_pacer = cfg
            .connect_rate_per_thread
            .map(|r| Pacer::new(now, r, thread as f64 / cfg.threads as f64));
        Ok(Worker {
            thread,
            epoll: Epoll::new(EVENTS_PER_WAIT)?,
            clients,
            publishers,
            stats: ThreadStats {
                slowest: crate::slowest::Slowest::new(cfg.slowest),
                ..ThreadStats::default()
            },
            scratch: BytesMut::with_capacity(READ_CHUNK * 2),
            events: Vec::with_capacity(EVENTS_PER_WAIT),
            credits: Vec::new(),
            next_to_connect: 0,
            connects_started: 0,
            connect_pacer,
            in_setup: 0,
            publish_start_ns: 0,
            measure_start_ns: u64::MAX,
            stop_ns: u64::MAX,
            spin: false,
            next_due_ns: u64::MAX,
            due: BinaryHeap::new(),
            retry_due: BinaryHeap::new(),
            due_again: Vec::new(),
            next_housekeeping_ns: now + HOUSEKEEPING_NS,
            run_delay_at_measure_start_ns: None,
            preemption_taken: false,
            sent: 0,
            received: 0,
            errors: 0,
            connected: 0,
            ready: 0,
            failed: 0,
            cfg,
            shared,
        })
    }

    /// Runs until `Shared::shutdown`; returns this thread's statistics.
    pub fn run(mut self) -> ThreadStats {
        loop {
            let now = now_ns();
            if self.shared.shutdown.load(Ordering::Relaxed) {
                break;
            }
            self.update_schedule();
            self.start_connects(now);
            let timeout = self.poll_timeout(now);
            let mut events = std::mem::take(&mut self.events);
            events.clear();
            events.extend(self.epoll.wait(timeout).iter().map(|e| (e.events, e.u64)));
            let work_start = now_ns();
            let sent_before = self.sent;
            for &(ev, token) in &events {
                self.on_event(token as usize, ev);
            }
            let had_events = !events.is_empty();
            self.events = events;
            self.pump_publishers();
            let now = now_ns();
            // Busy time: turns that handled a socket or sent, inside the
            // measured window (what is left is headroom).
            if (had_events || self.sent != sent_before)
                && work_start >= self.measure_start_ns
                && now <= self.stop_ns
            {
                self.stats.busy_ns += now - work_start;
            }
            if now >= self.next_housekeeping_ns {
                self.next_housekeeping_ns = now + HOUSEKEEPING_NS;
                self.housekeeping(now);
            }
            self.track_preemption(now);
        }
        if self.run_delay_at_measure_start_ns.is_some() {
            // A window cut short (Ctrl-C) still reports what it had.
            self.track_preemption(u64::MAX);
        }
        self.shutdown();
        self.finish()
    }

    /// Reads the thread's run delay (time runnable but off its CPU) when the
    /// measured window starts and when it ends: two reads of a /proc file
    /// per run. A thread that busy-polls never gives its CPU up, so this is
    /// the time other tasks took from it, during which nothing was sent or
    /// read.
    fn track_preemption(&mut self, now: u64) {
        if self.preemption_taken || now < self.measure_start_ns {
            return;
        }
        match self.run_delay_at_measure_start_ns {
            None => {
                self.run_delay_at_measure_start_ns = sys::thread_run_delay_ns();
                if self.run_delay_at_measure_start_ns.is_none() {
                    self.preemption_taken = true;
                }
            }
            Some(start) if now >= self.stop_ns => {
                self.stats.preempted_ns =
                    sys::thread_run_delay_ns().map(|end| end.saturating_sub(start));
                self.preemption_taken = true;
            }
            Some(_) => {}
        }
    }

    fn update_schedule(&mut self) {
        if self.publish_start_ns == 0 {
            let start = self.shared.publish_start_ns.load(Ordering::Acquire);
            if start == 0 {
                return;
            }
            self.publish_start_ns = start;
            self.measure_start_ns = self.shared.measure_start_ns.load(Ordering::Relaxed);
            if let Some(rate) = self.cfg.rate_per_publisher {
                let n = self.cfg.publishers_total.max(1) as f64;
                for &i in &self.publishers {
                    let p = self.clients[i].publisher.as_mut().unwrap();
                    let pacer = Pacer::new(start, rate, p.id as f64 / n);
                    self.due.push(Reverse((pacer.due_at(0), i)));
                    p.pacer = Some(pacer);
                }
            }
        }
        self.stop_ns = self.shared.stop_ns.load(Ordering::Relaxed);
    }

    fn poll_timeout(&self, now: u64) -> i32 {
        if self.spin || self.cfg.busy_poll {
            return 0;
        }
        let mut wait_ns = IDLE_WAIT_MS as u64 * NS_PER_MS;
        if self.next_due_ns != u64::MAX {
            let until = self.next_due_ns.saturating_sub(now);
            if until < SPIN_BELOW_NS {
                return 0;
            }
            // Wake a millisecond early and spin the rest.
            wait_ns = wait_ns.min(until - NS_PER_MS);
        }
        if self.next_to_connect < self.clients.len() && self.in_setup < self.cfg.connect_inflight {
            match &self.connect_pacer {
                None => return 0,
                Some(p) => {
                    let until = p.due_at(self.connects_started).saturating_sub(now);
                    wait_ns = wait_ns.min(until);
                }
            }
        }
        (wait_ns / NS_PER_MS) as i32
    }

    // ------------------------------------------------------------ connect

    fn start_connects(&mut self, now: u64) {
        while self.next_to_connect < self.clients.len() && self.in_setup < self.cfg.connect_inflight
        {
            if let Some(p) = &self.connect_pacer {
                if p.due_count(now) <= self.connects_started {
                    break;
                }
            }
            let i = self.next_to_connect;
            self.next_to_connect += 1;
            self.connects_started += 1;
            self.clients[i].started_ns = now;
            self.connect(i);
        }
    }

    fn set_state(&mut self, i: usize, state: State) {
        let old = self.clients[i].state;
        if old.in_setup() && !state.in_setup() {
            self.in_setup -= 1;
        } else if !old.in_setup() && state.in_setup() {
            self.in_setup += 1;
        }
        self.clients[i].state = state;
    }

    fn connect(&mut self, i: usize) {
        let c = &self.clients[i];
        let source = if self.cfg.bind_addrs.is_empty() {
            None
        } else {
            Some(self.cfg.bind_addrs[c.global_index % self.cfg.bind_addrs.len()])
        };
        match sys::tcp_connect(c.addr, source) {
            Ok(fd) => {
                self.clients[i].fd = fd;
                self.set_state(i, State::Connecting);
                if let Some(tls) = &self.cfg.tls {
                    // The ClientHello and the CONNECT go out once the TCP
                    // handshake is reported done (`on_tcp_connected`).
                    match tls.connect() {
                        Ok(session) => self.clients[i].tls = Some(session),
                        Err(e) => return self.fail(i, "tls", &e.to_string()),
                    }
                    self.clients[i].want_write = true;
                    if let Err(e) = self.epoll.add(fd, sys::IN | sys::OUT, i as u64) {
                        self.fail(i, "epoll", &e.to_string());
                    }
                    return;
                }
                // On loopback the handshake has usually completed inside
                // connect() (the SYN, SYN-ACK and ACK are processed in its
                // softirq), so write CONNECT now: that saves the EPOLLOUT
                // round trip, an epoll_ctl and a getsockopt per connection.
                let c = &mut self.clients[i];
                encode_connect(&self.cfg, c);
                match sys::send(fd, &c.wbuf) {
                    Ok(n) => {
                        let partial = n < c.wbuf.len();
                        if partial {
                            c.wpos = n;
                        } else {
                            c.wbuf.clear();
                            c.last_send_ns = now_ns();
                        }
                        // A partial write (not expected for a CONNECT) waits
                        // for EPOLLOUT like any other; `flush` sends the rest.
                        c.want_write = partial;
                        let events = if partial { sys::IN | sys::OUT } else { sys::IN };
                        self.set_state(i, State::AwaitConnAck);
                        if let Err(e) = self.epoll.add(fd, events, i as u64) {
                            self.fail(i, "epoll", &e.to_string());
                        }
                    }
                    // Still connecting: EPOLLOUT reports the outcome.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let c = &mut self.clients[i];
                        c.wbuf.clear();
                        c.want_write = true;
                        if let Err(e) = self.epoll.add(fd, sys::IN | sys::OUT, i as u64) {
                            self.fail(i, "epoll", &e.to_string());
                        }
                    }
                    Err(e) => self.fail(i, connect_error_kind(&e), &e.to_string()),
                }
            }
            Err(e) => {
                let kind = match e.raw_os_error() {
                    Some(libc::EADDRNOTAVAIL) => "connect_no_source_port",
                    Some(libc::EMFILE) | Some(libc::ENFILE) => "connect_too_many_files",
                    _ => connect_error_kind(&e),
                };
                self.fail(i, kind, &e.to_string());
            }
        }
    }

    fn on_tcp_connected(&mut self, i: usize) {
        encode_connect(&self.cfg, &mut self.clients[i]);
        self.set_state(i, State::AwaitConnAck);
        self.flush(i);
    }

    /// Close the socket; the client is not used again unless redirected.
    fn close_fd(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.fd >= 0 {
            sys::close(c.fd);
            c.fd = -1;
            c.socket_generation = c.socket_generation.wrapping_add(1);
        }
        c.rbuf = BytesMut::new();
        c.wbuf.clear();
        c.wpos = 0;
        c.want_write = false;
        c.tls = None;
        if c.state == State::Ready {
            self.connected -= 1;
        }
    }

    fn fail(&mut self, i: usize, kind: &str, detail: &str) {
        let state = self.clients[i].state;
        if state == State::Closed {
            return;
        }
        if self.errors < 5 {
            eprintln!(
                "ringmq-loadgen: {} ({}): {kind}: {detail}",
                self.clients[i].client_id, self.clients[i].addr
            );
        }
        self.errors += 1;
        self.stats.error(kind);
        if state != State::Ready {
            self.failed += 1;
        }
        self.close_fd(i);
        self.set_state(i, State::Closed);
    }

    fn redirect(&mut self, i: usize, reference: Option<&ByteStr>, code: ReasonCode) {
        let from = self.clients[i].addr;
        let Some(reference) = reference else {
            self.fail(
                i,
                &format!("refused_0x{:02x}", code.0),
                "redirect without Server Reference",
            );
            return;
        };
        let parsed = server_ref::parse(reference.as_str(), from.port());
        // Where the server sent us (its first reference, as it named it),
        // counted whether or not the redirect is followed.
        if let Ok(refs) = &parsed {
            *self
                .stats
                .redirected_to
                .entry(refs[0].to_string())
                .or_default() += 1;
        }
        if self.clients[i].redirects == 0 {
            self.stats.redirected_connections += 1;
        }
        if self.clients[i].redirects >= self.cfg.max_redirects {
            self.fail(i, "redirect_limit", reference.as_str());
            return;
        }
        let target = parsed.and_then(|refs| {
            let mut last_err = String::new();
            for r in &refs {
                match r.resolve() {
                    Ok(a) => return Ok(a),
                    Err(e) => last_err = e,
                }
            }
            Err(last_err)
        });
        let to = match target {
            Ok(a) => a,
            Err(e) => {
                self.fail(i, "bad_server_reference", &e);
                return;
            }
        };
        *self
            .stats
            .redirects
            .entry(format!("{from} -> {to}"))
            .or_default() += 1;
        self.close_fd(i);
        // Leaves setup for a moment; `connect` enters it again.
        self.set_state(i, State::Waiting);
        let c = &mut self.clients[i];
        c.redirects += 1;
        c.addr = to;
        self.connect(i);
    }

    // ------------------------------------------------------------ events

    fn on_event(&mut self, i: usize, ev: u32) {
        let state = self.clients[i].state;
        match state {
            State::Waiting | State::Closed => {}
            State::Connecting => {
                if ev & (sys::OUT | sys::ERR) != 0 {
                    match sys::take_socket_error(self.clients[i].fd) {
                        Ok(()) => self.on_tcp_connected(i),
                        Err(e) => self.fail(i, connect_error_kind(&e), &e.to_string()),
                    }
                }
            }
            _ => {
                if ev & (sys::IN | sys::ERR) != 0 {
                    self.on_readable(i);
                }
                if ev & sys::OUT != 0 && self.clients[i].fd >= 0 {
                    self.flush(i);
                }
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            scratch.clear();
            let c = &mut self.clients[i];
            if !c.rbuf.is_empty() {
                scratch.extend_from_slice(&c.rbuf);
                c.rbuf.clear();
            }
            scratch.reserve(READ_CHUNK);
            let start = scratch.len();
            let spare = scratch.spare_capacity_mut();
            let want = spare.len().min(READ_CHUNK);
            // SAFETY: reading into spare capacity; only `n` bytes are exposed.
            let spare =
                unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr() as *mut u8, want) };
            let read = match c.tls.as_deref_mut() {
                None => sys::read(c.fd, spare),
                Some(session) => tls::read(session, c.fd, spare),
            };
            let is_tls = c.tls.is_some();
            match read {
                Ok(0) => {
                    self.on_peer_closed(i);
                    break;
                }
                Ok(n) => {
                    // SAFETY: `n` bytes were written by read().
                    unsafe { scratch.set_len(start + n) };
                    let now = now_ns();
                    let ok = if self.cfg.codec_decode {
                        self.decode_with_codec(i, &mut scratch, now)
                    } else {
                        self.decode_in_place(i, &mut scratch, now)
                    };
                    if !ok {
                        break;
                    }
                    if !scratch.is_empty() {
                        self.clients[i].rbuf.extend_from_slice(&scratch);
                    }
                    // A short read drained the socket; with TLS, rustls may
                    // still hold decrypted bytes epoll knows nothing of.
                    if n < want && !is_tls {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !scratch.is_empty() {
                        self.clients[i].rbuf.extend_from_slice(&scratch);
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if !scratch.is_empty() {
                        self.clients[i].rbuf.extend_from_slice(&scratch);
                    }
                }
                Err(e) => {
                    let kind = if is_tls && e.kind() == io::ErrorKind::InvalidData {
                        "tls"
                    } else {
                        "read"
                    };
                    self.fail(i, kind, &e.to_string());
                    break;
                }
            }
        }
        self.scratch = scratch;
        self.flush_credits();
        if self.clients[i].fd >= 0 && self.clients[i].write_pending() {
            self.flush(i);
        }
    }

    /// Every complete packet in `buf`, through `ringmq::codec`. False when
    /// the socket was closed (failed or redirected): the rest is dropped.
    fn decode_with_codec(&mut self, i: usize, buf: &mut BytesMut, now: u64) -> bool {
        let generation = self.clients[i].socket_generation;
        loop {
            match decode_any(buf, self.cfg.protocol, self.cfg.max_packet_size) {
                Ok(Some(p)) => {
                    self.on_packet(i, p, now);
                    if self.clients[i].socket_generation != generation {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    self.fail(i, "decode", &e.to_string());
                    return false;
                }
            }
        }
    }

    /// Every complete packet in `buf`: PUBLISH and its acknowledgements
    /// parsed in place ([`fastpath`]), the rest through the codec. Consumes
    /// what it handled. False when the socket was closed (failed or
    /// redirected): the rest is dropped.
    fn decode_in_place(&mut self, i: usize, buf: &mut BytesMut, now: u64) -> bool {
        let v5 = self.cfg.protocol.is_v5();
        let max = self.cfg.max_packet_size as usize;
        let generation = self.clients[i].socket_generation;
        let mut pos = 0;
        let mut alive = true;
        while alive {
            match fastpath::parse(&buf[pos..], v5, max) {
                Ok(Some((
                    Frame::Publish {
                        qos,
                        packet_id,
                        payload,
                    },
                    n,
                ))) => {
                    self.on_publish(i, qos, packet_id, payload, now);
                    pos += n;
                }
                Ok(Some((
                    Frame::Ack {
                        kind,
                        packet_id,
                        reason,
                    },
                    n,
                ))) => {
                    self.on_ack(i, kind, packet_id, reason);
                    pos += n;
                }
                Ok(Some((Frame::Other, n))) => {
                    let mut frame = BytesMut::from(&buf[pos..pos + n]);
                    pos += n;
                    alive = self.decode_with_codec(i, &mut frame, now);
                    continue;
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(i, "decode", e);
                    alive = false;
                    break;
                }
            }
            alive = self.clients[i].socket_generation == generation;
        }
        let _ = buf.split_to(pos);
        alive
    }

    fn on_ack(&mut self, i: usize, kind: u8, packet_id: u16, reason: u8) {
        let protocol = self.cfg.protocol;
        let c = &mut self.clients[i];
        match kind {
            fastpath::PUBACK | fastpath::PUBCOMP => {
                if let Some(p) = c.publisher.as_mut() {
                    p.inflight = p.inflight.saturating_sub(1);
                    p.acked(packet_id);
                }
            }
            fastpath::PUBREC => {
                if ReasonCode(reason).is_error() {
                    if let Some(p) = c.publisher.as_mut() {
                        p.inflight = p.inflight.saturating_sub(1);
                        p.acked(packet_id);
                    }
                } else {
                    if let Some(u) = c.publisher.as_mut().and_then(|p| p.unacked.as_mut()) {
                        if let Some(m) = u.iter_mut().find(|m| m.packet_id == packet_id) {
                            m.released = true;
                        }
                    }
                    encode_into(&Packet::PubRel(ack(packet_id)), protocol, &mut c.wbuf);
                }
            }
            fastpath::PUBREL => {
                encode_into(&Packet::PubComp(ack(packet_id)), protocol, &mut c.wbuf);
            }
            _ => unreachable!("fastpath yields acknowledgement kinds 4 to 7 only"),
        }
    }

    fn on_peer_closed(&mut self, i: usize) {
        if self.shared.shutdown.load(Ordering::Relaxed) {
            self.close_fd(i);
            self.set_state(i, State::Closed);
        } else if self.cfg.reconnect && self.clients[i].state == State::Ready {
            // A 3.1.1 eviction: the server just closes.
            self.evicted(i);
            self.reconnect(i, None);
        } else {
            self.fail(i, "closed_by_server", "connection closed");
        }
    }

    fn on_packet(&mut self, i: usize, packet: Packet, now: u64) {
        let protocol = self.cfg.protocol;
        match packet {
            Packet::Publish(p) => self.on_publish(i, p.qos as u8, p.packet_id, &p.payload, now),
            Packet::PubAck(a) => self.on_ack(i, fastpath::PUBACK, a.packet_id, a.reason_code.0),
            Packet::PubRec(a) => self.on_ack(i, fastpath::PUBREC, a.packet_id, a.reason_code.0),
            Packet::PubRel(a) => self.on_ack(i, fastpath::PUBREL, a.packet_id, a.reason_code.0),
            Packet::PubComp(a) => self.on_ack(i, fastpath::PUBCOMP, a.packet_id, a.reason_code.0),
            Packet::ConnAck(ca) => {
                if self.clients[i].state != State::AwaitConnAck {
                    self.fail(i, "protocol", "unexpected CONNACK");
                    return;
                }
                let code = ca.reason_code;
                if code == ReasonCode::SUCCESS {
                    self.connected += 1;
                    let c = &mut self.clients[i];
                    let _ = self
                        .stats
                        .connack_ns
                        .record(now.saturating_sub(c.started_ns).max(1));
                    *self
                        .stats
                        .connected_by_server
                        .entry(c.addr.to_string())
                        .or_default() += 1;
                    if let Some(p) = c.publisher.as_mut() {
                        p.receive_max = inflight_window(
                            protocol,
                            ca.properties.receive_maximum,
                            self.cfg.inflight,
                        );
                        let resent = resend_unacked(p, self.cfg.run_id, protocol, &mut c.wbuf);
                        self.stats.resent_after_reconnect += resent;
                    }
                    if let Some(s) = c.subscriber.as_ref() {
                        let sub = Subscribe {
                            packet_id: 1,
                            filters: vec![(
                                ByteStr::from(s.filter.as_str()),
                                SubscriptionOptions {
                                    qos: self.cfg.qos,
                                    ..SubscriptionOptions::default()
                                },
                            )],
                            properties: Default::default(),
                        };
                        encode_into(&Packet::Subscribe(sub), protocol, &mut c.wbuf);
                        self.set_state(i, State::AwaitSubAck);
                    } else {
                        self.mark_ready(i);
                    }
                } else if protocol.is_v5()
                    && (code == ReasonCode::USE_ANOTHER_SERVER || code == ReasonCode::SERVER_MOVED)
                    && ca.properties.server_reference.is_some()
                {
                    self.redirect(i, ca.properties.server_reference.as_ref(), code);
                } else if self.cfg.reconnect
                    && self.clients[i].evictions > 0
                    && self.clients[i].retries < RECONNECT_RETRIES_MAX
                {
                    self.retry_later(i, code);
                } else if protocol.is_v5()
                    && (code == ReasonCode::USE_ANOTHER_SERVER || code == ReasonCode::SERVER_MOVED)
                {
                    self.redirect(i, None, code);
                } else {
                    self.fail(
                        i,
                        &format!("connack_refused_0x{:02x}", code.0),
                        "CONNACK refused",
                    );
                }
            }
            Packet::SubAck(sa) => {
                if self.clients[i].state != State::AwaitSubAck {
                    return;
                }
                if sa.reason_codes.iter().any(|c| c.is_error()) {
                    self.fail(i, "subscribe_refused", &format!("{:?}", sa.reason_codes));
                } else {
                    self.mark_ready(i);
                }
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                let code = d.reason_code;
                let was_ready = self.clients[i].state == State::Ready;
                if self.cfg.reconnect && was_ready {
                    self.evicted(i);
                    self.reconnect(i, d.properties.server_reference.as_ref());
                } else if code == ReasonCode::USE_ANOTHER_SERVER || code == ReasonCode::SERVER_MOVED
                {
                    if was_ready {
                        // Back into setup: it counts as ready again on CONNACK.
                        self.ready -= 1;
                        self.connected -= 1;
                        self.clients[i].state = State::Waiting;
                    }
                    self.redirect(i, d.properties.server_reference.as_ref(), code);
                } else {
                    self.fail(
                        i,
                        &format!("disconnected_0x{:02x}", code.0),
                        "DISCONNECT from server",
                    );
                }
            }
            other => self.fail(i, "protocol", &format!("unexpected {}", other.kind())),
        }
    }

    /// A ready client the server disconnected (`--reconnect`): counted, and
    /// back into setup (ready again at its next CONNACK).
    fn evicted(&mut self, i: usize) {
        self.ready -= 1;
        self.connected -= 1;
        let c = &mut self.clients[i];
        c.state = State::Waiting;
        c.evictions += 1;
        // A new journey: the redirects it may follow start again.
        c.redirects = 0;
        c.retries = 0;
        // Its setup timeout counts from now, not from its first connect.
        c.started_ns = now_ns();
    }

    /// A reconnect the server refused (evacuating, busy, a claim refused
    /// under load): tried again after a backoff, where it was sent (a load
    /// balancer's address picks another node), as a real client does.
    fn retry_later(&mut self, i: usize, code: ReasonCode) {
        *self
            .stats
            .reconnect_retries
            .entry(format!("0x{:02x}", code.0))
            .or_default() += 1;
        self.close_fd(i);
        self.set_state(i, State::Waiting);
        let c = &mut self.clients[i];
        let backoff_ns = ((100 * NS_PER_MS) << c.retries.min(5)).min(RECONNECT_BACKOFF_MAX_NS);
        c.retries += 1;
        self.retry_due.push(Reverse((now_ns() + backoff_ns, i)));
    }

    /// Connects an evicted client again: where its Server Reference says,
    /// else to `--reconnect-addr`, else where it was.
    fn reconnect(&mut self, i: usize, reference: Option<&ByteStr>) {
        if let Some(reference) = reference {
            self.redirect(i, Some(reference), ReasonCode::SERVER_MOVED);
            return;
        }
        self.close_fd(i);
        if let Some(addr) = self.cfg.reconnect_addr {
            self.clients[i].addr = addr;
        }
        self.connect(i);
    }

    fn mark_ready(&mut self, i: usize) {
        self.set_state(i, State::Ready);
        self.ready += 1;
    }

    fn on_publish(&mut self, i: usize, qos: u8, packet_id: u16, payload: &[u8], now: u64) {
        self.received += 1;
        self.stats.received_total += 1;
        if now >= self.measure_start_ns && now < self.stop_ns {
            self.stats.received_measured += 1;
        }
        let c = &mut self.clients[i];
        match qos {
            0 => {}
            1 => encode_into(
                &Packet::PubAck(ack(packet_id)),
                self.cfg.protocol,
                &mut c.wbuf,
            ),
            _ => encode_into(
                &Packet::PubRec(ack(packet_id)),
                self.cfg.protocol,
                &mut c.wbuf,
            ),
        }
        let Some(sub) = c.subscriber.as_mut() else {
            return;
        };
        let Some(stamp) = Stamp::read(payload) else {
            self.stats.unstamped += 1;
            return;
        };
        let ours =
            stamp.run_id == self.cfg.run_id && stamp.publisher_id < self.cfg.publishers_total;
        if !ours && !self.cfg.accept_any_run {
            self.stats.foreign += 1;
            return;
        }
        let key = (stamp.run_id as u64) << 32 | stamp.publisher_id as u64;
        let mode = self.cfg.mode;
        let stream = sub.streams.entry(key).or_insert_with(|| Stream::new(mode));
        let arrival = stream.on_seq(stamp.seq);
        if stamp.sent_ns >= self.measure_start_ns && stamp.sent_ns < self.stop_ns {
            let latency_ns = now.saturating_sub(stamp.sent_ns).max(1);
            let _ = self.stats.latency_ns.record(latency_ns);
            self.stats
                .slowest
                .record(latency_ns, stamp.sent_ns, stamp.publisher_id, stamp.seq);
        }
        if ours && self.cfg.copies > 0 && arrival != crate::track::Arrival::Duplicate {
            let counter =
                stamp.publisher_id as usize * self.cfg.copies as usize + sub.slot as usize;
            match self.credits.last_mut() {
                Some((k, n)) if *k == counter => *n += 1,
                _ => self.credits.push((counter, 1)),
            }
        }
    }

    fn flush_credits(&mut self) {
        for (counter, n) in self.credits.drain(..) {
            self.shared.delivered[counter].fetch_add(n, Ordering::Relaxed);
        }
    }

    // ------------------------------------------------------------ write

    /// Write what is buffered; register for EPOLLOUT if the socket is full.
    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        match c.write_out() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !c.want_write {
                    c.want_write = true;
                    let _ = self.epoll.modify(c.fd, sys::IN | sys::OUT, i as u64);
                }
                return;
            }
            Err(e) => {
                self.fail(i, "write", &e.to_string());
                return;
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        c.last_send_ns = now_ns();
        if c.want_write {
            c.want_write = false;
            let _ = self.epoll.modify(c.fd, sys::IN, i as u64);
        }
    }

    fn pump_publishers(&mut self) {
        self.spin = false;
        self.next_due_ns = u64::MAX;
        if self.publish_start_ns == 0 {
            return;
        }
        if self.cfg.rate_per_publisher.is_none() {
            for k in 0..self.publishers.len() {
                let i = self.publishers[k];
                self.pump(i);
            }
            return;
        }
        // Paced: visit only the publishers that are due (a heap by due
        // time), so thousands of slow publishers cost nothing between sends.
        let now = now_ns();
        let mut again = std::mem::take(&mut self.due_again);
        let mut sends = 0;
        while let Some(&Reverse((due, i))) = self.due.peek() {
            if due > now || sends >= PACED_SENDS_PER_TURN {
                break;
            }
            self.due.pop();
            let sent_before = self.sent;
            let next = self.pump(i);
            if self.sent != sent_before {
                sends += 1;
            }
            if next != u64::MAX {
                again.push((next, i));
            }
        }
        for (t, i) in again.drain(..) {
            self.due.push(Reverse((t, i)));
        }
        self.due_again = again;
        self.next_due_ns = self.due.peek().map_or(u64::MAX, |r| r.0 .0);
    }

    /// Write one batch for publisher `i` if its window, its schedule and its
    /// socket allow. Returns when a paced publisher wants looking at again
    /// (u64::MAX: never; now: next turn, it is blocked or behind).
    fn pump(&mut self, i: usize) -> u64 {
        let cfg = &self.cfg;
        let c = &mut self.clients[i];
        let now = now_ns();
        match c.state {
            State::Ready => {}
            State::Closed => return u64::MAX,
            // Being redirected: it comes back.
            _ => return now + NS_PER_MS,
        }
        if now >= self.stop_ns {
            return u64::MAX;
        }
        if c.write_pending() {
            return now;
        }
        let p = c.publisher.as_mut().unwrap();
        let mut allowed = cfg.batch as u64;
        let template_len = p.template.len();
        allowed = allowed.min((BATCH_BYTES_MAX / template_len).max(1) as u64);
        if let Some(window) = p.window.as_mut() {
            let row = self.shared.delivered_row(p.id);
            let d = window.poll(p.seq, now, || {
                row.iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0)
            });
            if d.timed_out {
                self.stats.window_timeouts += 1;
            }
            if d.allowed == 0 {
                if cfg.threads > 1 {
                    self.spin = true;
                }
                return now;
            }
            allowed = allowed.min(d.allowed);
        }
        if cfg.qos != QoS::AtMostOnce {
            let free = p.receive_max.saturating_sub(p.inflight) as u64;
            if free == 0 {
                return now;
            }
            allowed = allowed.min(free);
        }
        let mut next = now;
        if let Some(pacer) = &p.pacer {
            let due = pacer.due_count(now);
            if due <= p.seq {
                return pacer.due_at(p.seq);
            }
            allowed = allowed.min(due - p.seq);
            if p.seq + allowed >= due {
                next = pacer.due_at(p.seq + allowed);
            }
        }
        let run_id = cfg.run_id;
        let qos = cfg.qos;
        let wbuf = &mut c.wbuf;
        wbuf.reserve(template_len * allowed as usize);
        for _ in 0..allowed {
            let start = wbuf.len();
            wbuf.put_slice(&p.template);
            if qos != QoS::AtMostOnce {
                let id = p.next_packet_id();
                let o = start + p.packet_id_offset;
                wbuf[o..o + 2].copy_from_slice(&id.to_be_bytes());
            }
            let o = start + p.payload_offset;
            Stamp {
                run_id,
                publisher_id: p.id,
                seq: p.seq,
                sent_ns: now,
            }
            .write(&mut wbuf[o..o + STAMP_LEN]);
            if let Some(u) = p.unacked.as_mut() {
                let packet_id = p.next_packet_id;
                u.push_back(Unacked {
                    packet_id,
                    seq: p.seq,
                    sent_ns: now,
                    released: false,
                });
            }
            p.seq += 1;
        }
        if qos != QoS::AtMostOnce {
            p.inflight += allowed as u32;
        }
        self.shared.publishers[p.id as usize]
            .sent
            .store(p.seq, Ordering::Relaxed);
        self.sent += allowed;
        if now >= self.measure_start_ns {
            self.stats.sent_measured += allowed;
        }
        if p.pacer.is_none() {
            // It may send again at once: the next turn must not sleep (a
            // full window, MQTT window or socket wakes it through epoll).
            self.spin = true;
        }
        self.flush(i);
        next
    }

    // ------------------------------------------------------------ housekeeping

    fn housekeeping(&mut self, now: u64) {
        while self
            .retry_due
            .peek()
            .is_some_and(|Reverse((due, _))| *due <= now)
        {
            let Reverse((_, i)) = self.retry_due.pop().expect("peeked");
            if self.clients[i].state == State::Waiting {
                self.clients[i].started_ns = now;
                self.connect(i);
            }
        }
        let keepalive_ns = self.cfg.keepalive_s as u64 * NS_PER_S;
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            match c.state {
                State::Connecting | State::AwaitConnAck | State::AwaitSubAck
                    if now.saturating_sub(c.started_ns) > self.cfg.connect_timeout_ns =>
                {
                    self.fail(i, "setup_timeout", "no CONNACK/SUBACK in time");
                }
                State::Ready
                    if keepalive_ns > 0
                        && now.saturating_sub(c.last_send_ns) > keepalive_ns / 2
                        && !c.write_pending() =>
                {
                    let c = &mut self.clients[i];
                    c.wbuf.put_slice(&[0xC0, 0x00]); // PINGREQ
                    self.flush(i);
                }
                _ => {}
            }
        }
        self.publish_progress();
    }

    fn publish_progress(&self) {
        let t = &self.shared.threads[self.thread];
        t.connected.store(self.connected, Ordering::Relaxed);
        t.ready.store(self.ready, Ordering::Relaxed);
        t.failed.store(self.failed, Ordering::Relaxed);
        t.sent.store(self.sent, Ordering::Relaxed);
        t.received.store(self.received, Ordering::Relaxed);
        t.errors.store(self.errors, Ordering::Relaxed);
    }

    fn shutdown(&mut self) {
        let protocol = self.cfg.protocol;
        for i in 0..self.clients.len() {
            if self.clients[i].fd < 0 {
                continue;
            }
            if self.clients[i].state == State::Ready {
                let c = &mut self.clients[i];
                encode_into(&Packet::Disconnect(Box::default()), protocol, &mut c.wbuf);
                if let Some(session) = c.tls.as_deref_mut() {
                    session.send_close_notify();
                }
                self.flush(i);
            }
            self.close_fd(i);
            self.set_state(i, State::Closed);
        }
        self.publish_progress();
    }

    fn finish(mut self) -> ThreadStats {
        for c in &mut self.clients {
            if c.evictions > 0 {
                *self
                    .stats
                    .evictions_per_client
                    .entry(c.evictions)
                    .or_default() += 1;
            }
            if let Some(p) = &c.publisher {
                self.stats.sent_by_publisher.push((p.id, p.seq));
            }
            if let Some(s) = &c.subscriber {
                for (key, stream) in &s.streams {
                    let id = (*key & 0xFFFF_FFFF) as u32;
                    self.stats
                        .received_by_publisher
                        .entry(id)
                        .or_default()
                        .add_stream(stream);
                }
            }
        }
        self.stats
    }
}

/// The stats key of a failed TCP connect.
fn connect_error_kind(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::ECONNREFUSED) {
        "connect_refused"
    } else {
        "connect"
    }
}

/// Encodes the client's CONNECT into its write buffer.
fn encode_connect(cfg: &WorkerConfig, c: &mut Client) {
    let connect = Connect {
        protocol: cfg.protocol,
        clean_start: cfg.clean_start,
        keep_alive_s: cfg.keepalive_s,
        client_id: ByteStr::from(c.client_id.as_str()),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval_s: (cfg.protocol.is_v5() && cfg.session_expiry_s > 0)
                .then_some(cfg.session_expiry_s),
            maximum_packet_size: cfg.protocol.is_v5().then_some(cfg.max_packet_size),
            ..ConnectProperties::default()
        },
    };
    encode_into(
        &Packet::Connect(Box::new(connect)),
        cfg.protocol,
        &mut c.wbuf,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_windows() {
        assert_eq!(inflight_window(Protocol::V5, Some(32), 0), 32);
        assert_eq!(inflight_window(Protocol::V5, None, 0), 65535);
        assert_eq!(inflight_window(Protocol::V5, Some(32), 10), 10);
        // Never above what the server announced.
        assert_eq!(inflight_window(Protocol::V5, Some(32), 100), 32);
        assert_eq!(inflight_window(Protocol::V311, None, 0), 32);
        // 3.1.1: the option is the only information there is.
        assert_eq!(inflight_window(Protocol::V311, None, 100), 100);
    }

    #[test]
    fn template_offsets_match_the_decoder() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let (mut t, pid, pay) = publish_template("bench/p2p/17", qos, 64, protocol);
                if qos != QoS::AtMostOnce {
                    t[pid..pid + 2].copy_from_slice(&0x1234u16.to_be_bytes());
                }
                let s = Stamp {
                    run_id: 9,
                    publisher_id: 17,
                    seq: 42,
                    sent_ns: 123,
                };
                s.write(&mut t[pay..]);
                let mut buf = BytesMut::from(&t[..]);
                let Some(Packet::Publish(p)) = decode_any(&mut buf, protocol, 1 << 20).unwrap()
                else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(&*p.topic, "bench/p2p/17");
                assert_eq!(p.qos, qos);
                if qos != QoS::AtMostOnce {
                    assert_eq!(p.packet_id, 0x1234);
                }
                assert_eq!(p.payload.len(), 64);
                assert_eq!(Stamp::read(&p.payload), Some(s));
            }
        }
    }
}
