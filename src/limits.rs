//! Every compile-time cap of the broker, in one place.
//!
//! Configuration (`src/config`) may lower a cap at run time but never raise
//! it: config validation uses these constants as the upper bounds of the
//! allowed ranges, so a value the broker accepts is one the code was sized
//! for. Names carry the unit last (`_BYTES`, `_SECS`); a bare `_MAX` is a
//! count.

use std::time::Duration;

// ---------------------------------------------------------------- protocol

/// Largest MQTT packet on the wire: 1 byte fixed header + 4 bytes of
/// Remaining Length + the largest Remaining Length the variable byte integer
/// can encode (268_435_455) [MQTT-2.2.3, MQTT 5 §1.5.5].
pub const PACKET_SIZE_MAX_BYTES: u32 = 268_435_460;

/// Smallest MQTT packet (PINGREQ, PINGRESP, DISCONNECT v3): a fixed header
/// byte and a zero Remaining Length. A packet size cap below this would
/// refuse every packet.
pub const PACKET_SIZE_MIN_BYTES: u32 = 2;

/// Client identifiers are UTF-8 strings with a 16-bit length prefix
/// [MQTT-1.5.3], so nothing longer can be encoded.
pub const CLIENT_ID_LEN_MAX_BYTES: u32 = 65_535;

/// The spec obliges a server to accept client identifiers of 1 to 23 bytes
/// [MQTT-3.1.3-5], so a configured cap may not go below this.
pub const CLIENT_ID_LEN_MIN_BYTES: u32 = 23;

/// Topic Alias is a Two Byte Integer property [MQTT 5 §3.3.2.3.4].
pub const TOPIC_ALIAS_MAX: u16 = 65_535;

/// Receive Maximum is a Two Byte Integer and 0 is a protocol error
/// [MQTT 5 §3.1.2.11.3], so the inflight window is at most 65535.
pub const INFLIGHT_MAX: u16 = 65_535;

/// Subscription Identifier is a Variable Byte Integer from 1 to 268_435_455
/// [MQTT 5 §3.8.2.1.2].
pub const SUBSCRIPTION_IDENTIFIER_MAX: u32 = 268_435_455;

/// Keep Alive is a Two Byte Integer number of seconds [MQTT-3.1.2.10].
pub const KEEPALIVE_MAX_SECS: u16 = 65_535;

/// A client is disconnected after one and a half keep-alive periods of
/// silence [MQTT-3.1.2-24]; kept as a fraction so deadlines stay integer.
pub const KEEPALIVE_GRACE_NUMERATOR: u32 = 3;
/// See [`KEEPALIVE_GRACE_NUMERATOR`].
pub const KEEPALIVE_GRACE_DENOMINATOR: u32 = 2;

/// Session Expiry Interval is a Four Byte Integer number of seconds
/// [MQTT 5 §3.1.2.11.2].
pub const SESSION_EXPIRY_INTERVAL_MAX_SECS: u32 = u32::MAX;

// ---------------------------------------------------------------- per-client state

/// Topic levels the router will walk. Matching recurses per level for `+`
/// and `#`, so this bounds stack depth and per-publish work; EMQX ships 128
/// and no real deployment needs more than a few dozen.
pub const TOPIC_LEVELS_MAX: u32 = 1_024;

/// Subscriptions one client may hold. Each pins a trie node and a session
/// entry (hundreds of bytes), so this bounds the router memory one client
/// can take: 100_000 subscriptions is tens of MiB.
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: u32 = 100_000;

/// Messages queued for one session while its inflight window is full or
/// it is offline. Bounds the memory of one slow or absent subscriber.
pub const MQUEUE_LEN_MAX: u32 = 1 << 20;

/// Messages an online subscriber that keeps reading may hold beyond
/// `mqtt.max_mqueue_len` while its publishers are being paused
/// (`session::pressure`): the publishes already on their way when the
/// pause is decided, one per local publisher and at most a shard channel's
/// worth ([`SHARD_CHANNEL_CAPACITY`]) from another shard. Beyond it the
/// queue policy drops, as for any full queue. 8192 queued deliveries are
/// about 400 KiB (the payloads are shared).
pub const MQUEUE_OVERSHOOT_MAX: usize = 2 * SHARD_CHANNEL_CAPACITY;

/// `mqtt.max_publisher_hold_ms` at most: how long a subscriber that makes
/// no progress may hold its publishers back. Ten minutes is longer than any
/// keep-alive a publisher could still be waiting on.
pub const PUBLISHER_HOLD_MAX_MS: u32 = 600_000;

/// `mqtt.max_publisher_hold_ms` by default: long enough for a subscriber's
/// pause (a garbage collection, a busy disk) without losing messages, short
/// enough that publishers behind a subscriber that stopped do not time out.
pub const PUBLISHER_HOLD_DEFAULT_MS: u32 = 5_000;

// ---------------------------------------------------------------- node

/// Shards (threads) on one node. The shard mesh has shards² channels, each
/// [`SHARD_CHANNEL_CAPACITY`] deep, so the mesh memory grows quadratically.
pub const SHARDS_MAX: usize = 256;

/// `node.idle_poll_us` at most: polling longer than 10 ms before sleeping
/// only burns the CPU (a shard's tick comes every [`SHARD_TICK`] anyway).
pub const IDLE_POLL_MAX_US: u32 = 10_000;

/// `node.idle_poll_us` by default; docs/performance.md ("Idle polling")
/// has the measurements behind it.
pub const IDLE_POLL_DEFAULT_US: u32 = 20;

/// Connections one listener accepts. Each connection costs a file
/// descriptor and about 1.1 KiB of broker memory while idle (no read buffer:
/// see [`READ_CHUNK_BYTES`]); docs/performance.md has the breakdown.
pub const CONNECTIONS_PER_LISTENER_MAX: u32 = 10_000_000;

/// Retained messages on one node; the retained store is scanned on every
/// wildcard subscribe, so it must stay bounded.
pub const RETAINED_MESSAGES_MAX: u32 = 10_000_000;

/// Node names travel in cluster frames and admin output; EMQX-style
/// `name@host` fits easily in a DNS name's 255 bytes.
pub const NODE_NAME_LEN_MAX_BYTES: usize = 255;

/// `node.cookie`: a shared secret compared at every cluster handshake; long
/// enough for any generated secret, short enough for one frame field.
pub const NODE_COOKIE_LEN_MAX_BYTES: usize = 255;
/// `cluster.name`: sent in every cluster handshake and refused on mismatch.
pub const CLUSTER_NAME_LEN_MAX_BYTES: usize = 64;
/// Addresses one of `cluster.static.seeds` or `cluster.core_nodes` may
/// list: each is dialled at start, so the list bounds the start's work.
pub const CLUSTER_ADDRESSES_MAX: usize = 256;
/// Host names in cluster addresses and `cluster.dns.name`: a DNS name is
/// at most 253 bytes.
pub const CLUSTER_HOST_LEN_MAX_BYTES: usize = 253;

// ---------------------------------------------------------------- I/O and shard mesh

/// Depth of each cross-shard message queue. A full queue makes the sender
/// hand the message back (back-pressure) instead of growing memory.
pub const SHARD_CHANNEL_CAPACITY: usize = 4_096;

/// A large read's worth of back-to-back packets: the decoder benchmark
/// (`benches/codec.rs`) decodes a buffer of this size, as a reader does
/// after one large read.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes asked of the kernel per socket read: the size of each shard's one
/// receive scratch buffer, which every connection of the shard reads into
/// (a connection keeps only the bytes of a partial packet, and nothing while
/// idle). A connection assembling a packet larger than this reads straight
/// into its own buffer once that buffer has this much room left.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Bytes gathered into one socket write before it is flushed; bounds the
/// latency one busy connection adds to the others on its shard.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Capacity the shard's write scratch buffer (which every connection of the
/// shard encodes into, see `shard::conn::transmit`) keeps between batches. A
/// batch ends after the packet that crosses [`WRITE_BATCH_BYTES_MAX`], so one
/// large packet can grow the buffer beyond it; the memory then goes back.
pub const WRITE_SCRATCH_BYTES_KEPT_MAX: usize = 2 * WRITE_BATCH_BYTES_MAX;

/// Entries the shard's delivery scratch list (the online recipients of the
/// message being delivered, see `Shard::deliver_matching`; 48 bytes each)
/// keeps between messages. One message to more subscribers grows it for
/// that message only; the memory then goes back.
pub const DELIVERY_SCRATCH_KEPT_MAX: usize = 4096;

/// glommio `io_memory` per shard. It is locked memory, and RLIMIT_MEMLOCK is
/// 8 MiB on the development and CI machines, so two shards plus the rest of
/// the process must fit in that.
pub const IO_MEMORY_BYTES_PER_SHARD: usize = 1 << 20;

/// Descriptors the start-up reservation of the descriptor table adds to the
/// listeners' `max_connections`, for the broker's own use: listeners,
/// io_uring rings, eventfds, the lock and data files, the admin API
/// (`shard::presize_fd_table`).
pub const FD_TABLE_RESERVE: usize = 1024;

/// The largest descriptor table reserved at start (8 MiB of kernel memory
/// for its pointers); a process allowed more grows past it on demand.
pub const FD_TABLE_PRESIZE_MAX: usize = 1 << 20;

// ---------------------------------------------------------------- sessions

/// QoS 0 messages allowed to wait in one connection's transmit queue; beyond
/// it they go to the bounded session queue (and its drop policy).
pub const TX_QOS0_MAX: usize = 1024;

/// Cap on outbound (server to client) topic aliases per connection, whatever
/// the client allows: bounds the alias table's memory.
pub const OUTBOUND_TOPIC_ALIAS_MAX: u16 = 1024;

/// The largest session snapshot body written or read
/// (`session::SessionSnapshot`, bytes form): a frame claiming more is
/// refused before anything is allocated for it. 256 MiB holds a full
/// default queue of large messages; the frame's length field is 32 bits.
pub const SESSION_SNAPSHOT_BYTES_MAX: usize = 256 << 20;

/// Session lifecycle events waiting to be polled on one shard
/// (`session::Lifecycle`). The shard polls after every transition, so a
/// handful at most wait; past this the oldest is dropped and counted.
pub const SESSION_EVENTS_MAX: usize = 1024;

/// Bytes of durable-store ops one shard has gathered and not yet handed to
/// its store's channel (`shard::durable`, ADR 0007): above it the shard
/// stops reading publishers until the writer catches up, so a slow disk
/// slows publishers down instead of growing memory or dropping writes.
pub const DURABLE_PENDING_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes at which a shard's store task seals the batch it gathers before
/// its `batch_interval` passed (`shard::durable`, `sync = "batch"` /
/// `"none"`): half the pending bound, so a full gathering is handed to the
/// writer well before the shard would stop reading publishers.
pub const DURABLE_GATHER_SEAL_BYTES: usize = DURABLE_PENDING_BYTES_MAX / 2;

// ---------------------------------------------------------------- authorization

/// Most authorization rules one broker takes: every check walks them in order.
pub const AUTHZ_RULES_MAX: usize = 1000;
/// Most topics one authorization rule lists.
pub const AUTHZ_TOPICS_PER_RULE_MAX: usize = 100;

// ---------------------------------------------------------------- transports

/// Bytes a WebSocket client may send before its HTTP upgrade request is
/// complete (request line and headers). Browsers send well under 2 KiB; a
/// longer request closes the connection instead of growing a buffer.
pub const WS_HANDSHAKE_BYTES_MAX: usize = 8 * 1024;
/// Room a WebSocket frame may take beyond the MQTT packet it carries: a
/// frame larger than `mqtt.max_packet_size` plus this is an oversized frame
/// and closes the connection before its payload is buffered (a client may
/// split a packet over frames, never needs a frame larger than a packet).
pub const WS_FRAME_OVERHEAD_BYTES: usize = 16;
/// Initial read buffer of a WebSocket connection's frame codec (tungstenite
/// allocates it eagerly; its default of 128 KiB per connection would dwarf
/// the rest of the connection).
pub const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Transport bytes (TLS records, WebSocket frames) a connection may hold
/// unsent before its writer waits for the socket: the transport encodes
/// what the session transmits at once, so this bounds it like the TCP
/// backlog.
pub const TRANSPORT_WIRE_OUT_BYTES_MAX: usize = 256 * 1024;
/// TLS bytes a connection may hold unprocessed: rustls joins a handshake
/// message of up to 64 KiB (a client's certificate chain) in the buffer it
/// is given, and a record is at most about 16.5 KiB; with one read on top,
/// nothing legitimate needs more.
pub const TLS_INCOMING_BYTES_MAX: usize = 64 * 1024 + 17 * 1024 + READ_CHUNK_BYTES;
/// TLS and WebSocket handshakes one shard runs at once. A handshake holds
/// its transport state (tens of KiB during a TLS handshake) before the
/// connection is admitted, so the admission caps, applied at CONNECT, do not
/// bound it; a socket accepted beyond this is closed at once.
pub const TRANSPORT_HANDSHAKES_PER_SHARD_MAX: usize = 1_024;
/// Certificates one PEM file (`ssl_options.certfile`, `cacertfile`) may hold.
pub const TLS_PEM_CERTS_MAX: usize = 1_000;

// ---------------------------------------------------------------- connection timing

/// How long a new socket may take to send its CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `handshake_timeout` of TLS and WebSocket listeners: how long a
/// new socket may take to finish its TLS and WebSocket handshakes (EMQX's
/// default). The MQTT CONNECT timeout runs after it.
pub const HANDSHAKE_TIMEOUT_DEFAULT_SECS: u32 = 15;
/// Largest `handshake_timeout` a listener may set.
pub const HANDSHAKE_TIMEOUT_MAX_SECS: u32 = 3_600;
/// How long a closing connection waits for the client to read our last
/// packets (DISCONNECT) and close its side before the socket is shut.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// How often a shard runs its periodic work (due wills, session expiry,
/// keepalive). Keep Alive is enforced at this granularity: a silent client
/// is disconnected at most this long after 1.5 times its Keep Alive
/// [MQTT-3.1.2-24]. (The node's stop does not wait for it: it wakes the
/// shard through its inbox.)
pub const SHARD_TICK: Duration = Duration::from_millis(100);
/// A shard logs a warning when its tick runs this much later than due: its
/// executor ran nothing for that long (a starved CPU, or a wake-up lost).
pub const SHARD_TICK_LATE_WARN: Duration = Duration::from_millis(500);
/// How often the shard watchdog (`shard::watchdog`) reads the shards' tick
/// counts.
pub const SHARD_WATCHDOG_PERIOD: Duration = Duration::from_millis(100);
/// A shard that ran no tick for this long is woken from outside by the
/// watchdog (again after each further stretch this long): a lost wake-up
/// then costs at most this, not minutes. Four ticks, so a shard merely
/// busy for a moment is left alone.
pub const SHARD_WATCHDOG_STALL: Duration = Duration::from_millis(400);
/// How long a start waits for the listening sockets of an earlier ringmq on
/// the same address to close (`shard::lock`): a killed broker's io_uring is
/// torn down after its process is gone, its listeners with it (measured:
/// up to about 10 ms after `kill -9`). Past this it refuses to start.
pub const BIND_STALE_LISTENER_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often that wait looks again.
pub const BIND_STALE_LISTENER_POLL: Duration = Duration::from_millis(5);
/// Longest sleep of a shard whose tasks I/O (a socket, another shard) woke
/// less than [`SHARD_ACTIVE_WINDOW`] ago (vendored glommio, vendor/README.md
/// patch 13). The wake-up interrupt of a halted vCPU is now and then
/// delivered hundreds of microseconds late or not before the vCPU's next
/// timer, which was the tick: a shard that went to sleep with packets about
/// to arrive could sleep up to [`SHARD_TICK`] with them waiting
/// (docs/performance.md, "Low rates, round 3"). This bounds such a wait.
pub const SHARD_ACTIVE_SLEEP_MAX: Duration = Duration::from_micros(500);
/// How long after its last I/O a shard's sleeps stay bounded by
/// [`SHARD_ACTIVE_SLEEP_MAX`]; a shard without traffic then sleeps until
/// its next timer, having paid at most 10 extra wake-ups.
pub const SHARD_ACTIVE_WINDOW: Duration = Duration::from_millis(5);
/// Both, as glommio takes them.
pub const SHARD_ACTIVE_PARK: (Duration, Duration) = (SHARD_ACTIVE_SLEEP_MAX, SHARD_ACTIVE_WINDOW);
/// Longest a shard goes without handing the allocator's free memory back
/// to the system (it also does so on the first tick after its connection
/// count changed): bounds how long memory freed by a burst of work stays
/// in the process's RSS.
pub const FREE_MEMORY_RELEASE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a shard's stop may take in all (`shard/stop.rs`): each step
/// (every shard's wills published, its connections closed after their
/// DISCONNECT, every shard's stop mark) normally ends at its event; this
/// bounds them if a peer or a client is stuck.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often a shard logs messages its sessions dropped: one line per
/// interval at most, so a slow consumer cannot flood the log.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- admission and admin

/// Connections one node admits in all (`server_redirection.max_connections`);
/// the same bound as one listener's, since a node may have one listener.
pub const CONNECTIONS_PER_NODE_MAX: u32 = CONNECTIONS_PER_LISTENER_MAX;

/// Servers `[[server_redirection.redirect_servers]]` may list. Round robin
/// and random picks are O(1) whatever the count; the bound keeps the config
/// (and a GET of it) small.
pub const REDIRECT_SERVERS_MAX: usize = 64;

/// Host names in a Server Reference: a DNS name is at most 253 bytes.
pub const REDIRECT_HOST_LEN_MAX_BYTES: usize = 253;

/// `description` of a redirect server: for operators, kept short.
pub const REDIRECT_DESCRIPTION_LEN_MAX_BYTES: usize = 1024;

/// Largest admin API request body; a redirection config is far smaller.
pub const ADMIN_BODY_MAX_BYTES: usize = 64 * 1024;

/// `limit` of an admin API listing (`/api/v5/clients`) when the request
/// sets none: EMQX's default page size.
pub const ADMIN_PAGE_LIMIT_DEFAULT: usize = 100;

/// `limit` of an admin API listing at most: EMQX's cap (its
/// `max_row_limit`). Bounds the rows a shard builds for one request and the
/// size of one response (a client record is about 500 bytes of JSON).
pub const ADMIN_PAGE_LIMIT_MAX: usize = 10_000;

/// `page` of an admin API listing at most: beyond every session a node can
/// hold at `limit=1`, so it refuses only nonsense; the skip a shard walks
/// is bounded by its session count anyway.
pub const ADMIN_PAGE_MAX: usize = 1_000_000_000;

/// How often a shard logs its redirect and refusal counts (when they grew):
/// one summary line per interval, never one info line per client.
pub const ADMISSION_REPORT_INTERVAL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- shard services

/// Requests one shard's inbox holds for threads that are not shards (the
/// admin thread; `shard::NodeHandle`). A full inbox answers at once (the
/// admin API says 503) instead of queueing without bound or blocking.
/// Each waiting request is a boxed closure of a few words.
pub const INBOX_CAPACITY: usize = 256;

/// Inbox requests a shard runs in one go before its other tasks run: bounds
/// what a burst of admin requests adds to its clients' latency.
pub const INBOX_JOBS_PER_TURN: usize = 16;

/// How long the admin API waits for the shards' answers before it says 503.
/// A shard answers within a loop turn unless it is stuck or stopping.
pub const ADMIN_SHARD_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the admin API waits for the cluster thread (a peer list, a
/// join, a leave) before it says 503. A join waits for the QUIC handshake
/// and the first membership exchange with the seed, well within this.
pub const ADMIN_CLUSTER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `ringmq ctl` waits to connect to the admin API, and then for
/// each read and write: longer than the API's own longest wait
/// (`ADMIN_CLUSTER_CALL_TIMEOUT`), so the API's 503 arrives first.
pub const CTL_HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest admin API response `ringmq ctl` reads: a nodes listing of a big
/// cluster is a few hundred bytes per node.
pub const CTL_RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Longest `websocket.mqtt_path` a listener may be configured with: an HTTP
/// request line must fit the WebSocket upgrade request's cap.
pub const WS_MQTT_PATH_LEN_MAX_BYTES: usize = 1024;

// ---------------------------------------------------------------- cluster logic (src/cluster/logic)

/// How long a SUBSCRIBE that changed this node's routes waits for every
/// running peer to acknowledge the change before its SUBACK goes out anyway
/// (availability); a peer still silent is marked out of sync and sent a
/// full route snapshot (docs/adr/0001-cluster.md, "SUBACK").
pub const ROUTE_ACK_TIMEOUT_MS: u64 = 2_000;

/// Largest body of a logic frame (kinds 16-255) this node encodes or
/// accepts: a session snapshot (the largest body) plus room for its
/// envelope. Checked before a body is validated.
pub const CLUSTER_LOGIC_BODY_MAX_BYTES: usize = SESSION_SNAPSHOT_BYTES_MAX + (64 << 10);

/// Route entries in one route snapshot frame: a node with more filters
/// sends its snapshot in several frames, so no frame grows with the table.
pub const ROUTE_SNAPSHOT_CHUNK_ENTRIES_MAX: usize = 1_024;

/// Route entries a peer's snapshot may hold in total while it is being
/// reassembled: bounds the memory a peer can make this node buffer.
pub const ROUTE_SNAPSHOT_ENTRIES_MAX: usize = 4 << 20;

/// SUBSCRIBEs waiting for their route change to be acknowledged by the
/// peers. One more is released at once (as if timed out) and counted.
pub const ROUTE_WAITERS_MAX: usize = 65_536;

/// Messages one (peer, data stream) forwarding window holds until the
/// peer acknowledges them: beyond it QoS 0 is dropped (counted) and QoS 1/2
/// pauses the publisher (ADR 0002's back-pressure).
pub const FORWARD_WINDOW_MESSAGES_MAX: usize = 4_096;

/// Messages (any QoS) a full forwarding window still takes while its
/// publishers are being paused: the forwards already in the shard's
/// channel to the driver when the pause was raised, as
/// `MQUEUE_OVERSHOOT_MAX` for a session; beyond it they are dropped
/// (counted by reason and QoS).
pub const FORWARD_WINDOW_OVERSHOOT_MAX: usize = CLUSTER_SHARD_QUEUE_MAX + SHARD_CHANNEL_CAPACITY;

/// Messages of one data stream packed into one batch frame (forward
/// records, `cluster::logic::records`; also the most a frame may carry).
pub const FORWARD_BATCH_MESSAGES_MAX: usize = 256;

/// Topic and payload bytes packed into one batch frame; a larger
/// message goes alone (bounded by `CLUSTER_LOGIC_BODY_MAX_BYTES`).
pub const FORWARD_BATCH_BYTES_MAX: usize = 256 << 10;

/// Frames of one (peer, data stream) sent and not yet acknowledged: while
/// at it, messages wait in the window and the next frame packs more of
/// them (fewer, fuller frames under load; one message per frame when
/// idle). Below the cluster thread's stream queue, so it never drops one.
pub const FORWARD_FRAMES_IN_FLIGHT_MAX: usize = 16;

const _: () = assert!(FORWARD_FRAMES_IN_FLIGHT_MAX < CLUSTER_STREAM_QUEUE_MAX);

/// A data stream whose first unacknowledged message stays the same over
/// this long (two checks this far apart) sends its frames in flight again:
/// an acknowledgement or the news of a lost link went missing. The
/// receiver drops repeats by number, so it costs bandwidth, never a
/// duplicate. Well above a round trip under load.
pub const FORWARD_RESEND_AFTER_MS: u64 = 2_000;

/// The largest UDP payload QUIC's path MTU discovery tries on a peer link
/// (quinn's default is 1,452): loopback and jumbo-frame networks carry a
/// forward batch in fewer, larger packets; elsewhere discovery stays at
/// what the path takes.
pub const CLUSTER_QUIC_UDP_PAYLOAD_MAX_BYTES: u16 = 16_384;

/// QoS 1/2 PUBLISHes of one connection forwarded to other nodes whose
/// PUBACK/PUBREC is held until the receiving nodes have them queued
/// (`session::connection::held`): the publisher's window across nodes. At
/// it the connection is not read until the oldest is released. 16 bits.
pub const PUBLISH_ACKS_HELD_MAX: usize = 64;

const _: () = assert!(PUBLISH_ACKS_HELD_MAX <= u16::MAX as usize);
const _: () = assert!(FORWARD_BATCH_BYTES_MAX + (64 << 10) <= CLUSTER_LOGIC_BODY_MAX_BYTES);

/// Client ids whose claim is being served (one at a time each) at a home.
pub const CLAIMS_BUSY_MAX: usize = 65_536;

/// Claims of one client id queued behind the one being served: a client
/// id connecting on many nodes at once is refused beyond it.
pub const CLAIMS_WAITING_PER_ID_MAX: usize = 16;

/// A claim whose claimant has not said it is done after this long is
/// released at the home (the claimant is taken as the owner), so one lost
/// frame cannot block an id for ever.
pub const CLAIM_TIMEOUT_MS: u64 = 10_000;

/// Cross-node takeovers in progress on one node, in either role.
pub const TAKEOVERS_MAX: usize = 65_536;

/// How long a new owner waits for the previous owner's session export
/// before it starts a fresh session (the previous owner is partitioned or
/// stuck), and how long a previous owner holds deliveries for a new owner
/// that never asks for them.
pub const TAKEOVER_TIMEOUT_MS: u64 = 5_000;

/// After the new owner asks for the held deliveries, the previous owner
/// keeps matching for this long before it hands them over: a message a peer
/// routed to it before that peer applied the new owner's route may still be
/// on that peer's data stream (docs/clustering.md, takeover).
pub const TAKEOVER_LINGER_MS: u64 = 500;

/// Deliveries one previous owner holds for a moving session; beyond it the
/// oldest QoS 0 ones go first, then any (counted).
pub const TAKEOVER_HELD_MAX: usize = 65_536;

/// Held deliveries per frame when they are handed over.
pub const TAKEOVER_HELD_CHUNK_MAX: usize = 256;

// ---------------------------------------------------------------- cluster links (src/cluster/net)

/// Largest body of one inter-node frame, checked from the 8-byte header
/// before the body is read: a route snapshot or a session snapshot is
/// sent in frames of at most this, so a peer cannot make the cluster
/// thread buffer more.
pub const CLUSTER_FRAME_LEN_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// Largest handshake (kind 0) body: names, addresses and a 32-byte proof
/// fit in far less; a bigger one is refused before it is read.
pub const CLUSTER_HELLO_LEN_MAX_BYTES: u32 = 4096;

/// Longest node or cluster name a handshake may carry: at least
/// `NODE_NAME_LEN_MAX_BYTES` and `CLUSTER_NAME_LEN_MAX_BYTES`, which the
/// configuration enforces (checked below).
pub const CLUSTER_HELLO_NAME_LEN_MAX_BYTES: usize = 255;
const _: () = assert!(
    CLUSTER_HELLO_NAME_LEN_MAX_BYTES >= NODE_NAME_LEN_MAX_BYTES
        && CLUSTER_HELLO_NAME_LEN_MAX_BYTES >= CLUSTER_NAME_LEN_MAX_BYTES
);

/// Commands (join, leave, send...) waiting for the cluster thread. A full
/// queue hands the command back to the caller (a shard never blocks).
pub const CLUSTER_COMMANDS_MAX: usize = 4096;

/// Events (membership, frames from peers) waiting for the consumer. A
/// full queue holds the peers' streams (QUIC flow control pushes back).
pub const CLUSTER_EVENTS_MAX: usize = 4096;

/// Frames waiting to be written on one stream of one peer link; beyond
/// this a frame is dropped and counted (`queue_full`).
pub const CLUSTER_STREAM_QUEUE_MAX: usize = 1024;

/// Data streams (one per sending shard) one peer link may open towards us.
pub const CLUSTER_DATA_STREAMS_MAX: u32 = 1024;

/// Peers one node links with (and remembers in `data_dir/cluster/peers`).
pub const CLUSTER_PEERS_MAX: usize = 1024;

/// Incoming handshakes under way at once; more are refused at the QUIC
/// level (a flood of unauthenticated connections holds no more than this).
pub const CLUSTER_HANDSHAKES_MAX: usize = 256;

/// How long an address that refused a link (or was refused) is not dialed
/// again by discovery: a wrong cookie in a seed list gives one log line on
/// each side per pause, not one per discovery tick. `join` retries at once.
pub const CLUSTER_REFUSED_RETRY: Duration = Duration::from_secs(30);

/// How long a peer has to finish the QUIC and ringmq handshakes.
pub const CLUSTER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// SWIM probe period (foca). With `CLUSTER_PROBE_RTT` and
/// `CLUSTER_SUSPECT_TO_DOWN`, a dead node is declared in at most about
/// 1 s (until someone probes it) + 1 s (the probe round) + 1.5 s
/// (suspicion), within issue 13's 5 s; the cluster thread is not slowed
/// by busy shards. (With 2.5 s of suspicion the test measured 5.4 s.)
pub const CLUSTER_PROBE_PERIOD: Duration = Duration::from_millis(1000);

/// How long a probe waits for its direct answer before asking others
/// (indirect probes). Loopback and LAN answers take well under this even
/// on a loaded machine.
pub const CLUSTER_PROBE_RTT: Duration = Duration::from_millis(300);

/// How long a suspected node has to refute before it is declared down:
/// refuting takes one gossip round trip (milliseconds on a LAN), so this
/// leaves a wide margin against false positives on a loaded machine.
pub const CLUSTER_SUSPECT_TO_DOWN: Duration = Duration::from_millis(1500);

/// How often static seeds and DNS names not yet members are announced to
/// again (and DNS re-resolved).
pub const CLUSTER_DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// QUIC idle timeout of a peer link: well beyond failure detection, so
/// foca, not QUIC, decides that a node is down.
pub const CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest SWIM datagram (foca's `max_packet_size`): below the QUIC
/// datagram room of a 1200-byte initial path MTU.
pub const CLUSTER_SWIM_PACKET_MAX_BYTES: usize = 1100;

/// How long one DNS query of the cluster's discovery waits for its answer
/// (one attempt; discovery asks again at its next round).
pub const CLUSTER_DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a node that leaves keeps its links open after its SWIM leave
/// datagrams, so that they reach the peers before the links close.
pub const CLUSTER_LEAVE_LINGER: Duration = Duration::from_millis(300);

// ---------------------------------------------------------- authentication

/// Threads that check passwords (`authn::worker`): PBKDF2 is slow by
/// design, so no check runs on a shard; a shard hands the CONNECT's
/// credentials over and awaits the answer while its other clients run.
pub const AUTHN_WORKERS: usize = 2;

/// Checks waiting for a worker. A CONNECT that finds the queue full is
/// refused at once with v5 0x89 Server busy / 3.1.1 rc 3 Server unavailable
/// instead of waiting behind a flood.
pub const AUTHN_QUEUE_LEN_MAX: usize = 1024;

/// Most PBKDF2 iterations a `$7$` line may ask for: a file written with a
/// huge count would make every check a denial of service (Mosquitto's own
/// default is 101; 1,000,000 takes about a second on one core).
pub const AUTHN_HASH_ITERATIONS_MAX: u32 = 1_000_000;

/// PBKDF2-HMAC-SHA512 iterations of the passwords the built-in database
/// stores (EMQX's default for pbkdf2 is 4096; Mosquitto's 101 is cheap).
pub const AUTHN_PBKDF2_ITERATIONS: u32 = 4096;

/// Failed authentications from one IP address within
/// [`AUTHN_FAILURE_WINDOW`] after which that address is throttled: each
/// further CONNECT from it carrying a user name waits
/// [`AUTHN_THROTTLE_DELAY`] and is refused with 0x86 / rc 4 without its
/// password being checked, until the window ends (throttled attempts do not
/// extend it): at most this many guesses per window and address. Other
/// addresses are unaffected.
pub const AUTHN_FAILURES_PER_IP_MAX: u32 = 10;

/// The window [`AUTHN_FAILURES_PER_IP_MAX`] counts in; it restarts when it
/// has passed.
pub const AUTHN_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// How long a throttled CONNECT waits (on its own connection task: the
/// shard serves its other clients meanwhile) before its refusal.
pub const AUTHN_THROTTLE_DELAY: Duration = Duration::from_millis(1000);

/// Addresses the failure counter tracks at once; when full, windows that
/// have passed are dropped first, then the oldest.
pub const AUTHN_TRACKED_ADDRS_MAX: usize = 4096;

/// Lines of a password or ACL file (and users of the built-in database):
/// a bigger file is refused at load naming this limit.
pub const AUTHN_FILE_LINES_MAX: usize = 1_000_000;

/// Largest password file, ACL file or built-in user database read.
pub const AUTHN_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest user id and password the built-in database API accepts (MQTT
/// strings are at most 65,535 bytes; no real password is near this).
pub const AUTHN_USER_ID_MAX_BYTES: usize = 256;
pub const AUTHN_PASSWORD_MAX_BYTES: usize = 1024;
/// How often a node sends its load figures (MQTT connections) to each
/// running peer: what `least_connections` and `/api/v5/nodes` read of the
/// peers is at most this old (plus the link's delay).
pub const CLUSTER_LOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How often the node's view of the cluster for admission (the running
/// nodes a CONNACK lists, redirect targets and their loads) is rebuilt from
/// the member list: well under the failure-detection time, so a CONNACK
/// follows membership within it.
pub const CLUSTER_VIEW_REFRESH: Duration = Duration::from_millis(200);

/// Length cap of a version string in a peer's load figures.
pub const CLUSTER_VERSION_LEN_MAX_BYTES: usize = 64;

// ---------------------------------------------------------------- cluster driver (src/cluster/driver)

/// Requests one shard may have queued towards the cluster driver (interest
/// changes, forwards, queued reports). A full channel hands the request
/// back: a QoS 0 forward is dropped and counted, the rest waits its turn.
pub const CLUSTER_SHARD_QUEUE_MAX: usize = 4_096;

/// Interest changes a shard keeps in order behind a full driver channel
/// (they cannot be dropped: the node's routes would be wrong); beyond it a
/// change is dropped, counted and logged, and the peers learn the node's
/// routes again at their next snapshot.
pub const CLUSTER_SHARD_INTEREST_BACKLOG_MAX: usize = 65_536;

/// Frames the driver keeps for the cluster thread while its command queue
/// is full, retried every `CLUSTER_DRIVER_RETRY_MS`; forwards are only
/// taken from their windows while there is room, control frames beyond it
/// are dropped and counted (the route relay resynchronises).
pub const CLUSTER_DRIVER_OUTBOX_MAX: usize = 8_192;

/// How often, at most, the driver logs its counters (forwards, drops,
/// malformed frames) when they changed.
pub const CLUSTER_DRIVER_STATS_LOG_MS: u64 = 10_000;

/// How often, at most, the driver copies its per-peer forwarding figures
/// (drops by reason and QoS, window depth) where Prometheus reads them.
pub const CLUSTER_DRIVER_METRICS_MS: u64 = 500;

/// How soon the driver retries a frame or a shard request that found its
/// queue full.
pub const CLUSTER_DRIVER_RETRY_MS: u64 = 1;

/// Events (net, shards, completions) queued towards the driver's loop.
pub const CLUSTER_DRIVER_INPUTS_MAX: usize = 4_096;

/// Inputs (shard requests, peer frames) the driver takes in one turn
/// before it flushes frames and deliveries: one flush, one frame per
/// stream and one wake-up of the cluster thread for many messages.
pub const CLUSTER_DRIVER_BURST_MAX: usize = 1_024;

/// How long a QoS 1/2 publisher's PUBACK/PUBREC waits for the receiving
/// nodes to acknowledge a forwarded message before it is sent anyway
/// (the message may be lost on a node that did not answer: counted).
pub const FORWARD_ACK_TIMEOUT_MS: u64 = 5_000;

/// A node with no peer yet waits this long for one to appear (static or
/// DNS seeds answering) before it opens its MQTT listeners alone.
pub const CLUSTER_JOIN_WAIT_MS: u64 = 2_000;

/// Membership must have been quiet this long, with every running peer's
/// routes received, before a joining node opens its MQTT listeners: the
/// members a seed knows arrive one by one.
pub const CLUSTER_READY_SETTLE_MS: u64 = 300;

/// The longest a node keeps its MQTT listeners closed waiting for its
/// peers' routes; then it opens them anyway (logged): a peer that never
/// answers must not keep the node down.
pub const CLUSTER_READY_WAIT_MAX_MS: u64 = 10_000;

/// The highest connection or session eviction rate an evacuation or a
/// rebalance accepts (`conn_evict_rate`, `sess_evict_rate`, per second):
/// above it a node would disconnect its clients all at once, which is what
/// these rates exist to avoid.
pub const REBALANCE_EVICT_RATE_MAX: u64 = 100_000;

/// The longest `wait_takeover` or `wait_health_check` accepted, seconds.
pub const REBALANCE_WAIT_MAX_S: u64 = 86_400;

/// Nodes named in one `migrate_to` or `nodes` list, and Server References
/// in one `redirect_to`.
pub const REBALANCE_LIST_MAX: usize = 64;

/// How often the evacuation or rebalance executor counts and evicts. The
/// rates are spread over the ticks of each second.
pub const REBALANCE_TICK_MS: u64 = 100;

/// The longest JSON text of a cross-node evacuation or rebalance command
/// or answer (`cluster/logic/proto_rebalance.rs`): parameters and one
/// node's status are well under it.
pub const REBALANCE_PEER_JSON_MAX_BYTES: usize = 64 << 10;

/// How long a node waits for a peer's answer to an evacuation or
/// rebalance command (`rebalance/peer.rs`). A participant that stays
/// silent longer than `REBALANCE_PARTICIPANT_SILENCE_MS` is lost.
pub const REBALANCE_PEER_TIMEOUT_MS: u64 = 2_000;

/// Commands in flight from this node's admin thread to peers; beyond it a
/// command fails at once (the coordinator sends a few per tick).
pub const REBALANCE_PEER_ASKS_MAX: usize = 256;

/// Peers' commands waiting for this node's admin thread; beyond it a
/// command is answered "busy" by the driver.
pub const REBALANCE_PEER_INCOMING_MAX: usize = 64;

/// A rebalance participant (or its coordinator) not heard from for this
/// long is lost: the coordinator ends the rebalance, a participant whose
/// coordinator went silent returns to normal by itself.
pub const REBALANCE_PARTICIPANT_SILENCE_MS: u64 = 5_000;
// ---------------------------------------------------------------- sessions pushed to other nodes (src/shard/session_push.rs, src/cluster/driver/session_push.rs)

/// Disconnected sessions one shard pushes to other nodes in one call of
/// `push_sessions`, all in flight at once (the call waits for them all):
/// an evacuation's `sess_evict_rate` is spread over the node's shards, so
/// a call asks each shard for its share, at most this.
pub const SESSION_PUSH_BATCH_MAX: u64 = 256;

/// Pushes one node's driver follows at once, in either role (sending or
/// adopting); beyond it a push is answered "not moved" at once (the
/// session stays and is counted `failed`, tried again later).
pub const SESSION_PUSHES_MAX: usize = 4_096;

/// How long the node that pushes a session waits for the target's answer:
/// the target's claim at the home (`CLAIM_TIMEOUT_MS`), the export
/// (`TAKEOVER_TIMEOUT_MS`) and the linger (`TAKEOVER_LINGER_MS`) fit in it.
/// Without an answer the push counts as failed.
pub const SESSION_PUSH_TIMEOUT_MS: u64 = 20_000;

const _: () =
    assert!(CLAIM_TIMEOUT_MS + TAKEOVER_TIMEOUT_MS + TAKEOVER_LINGER_MS < SESSION_PUSH_TIMEOUT_MS);

/// Connects of one client id that may wait behind a push of its session
/// (the push holds the id's claim at its home until the target has it);
/// beyond it a connect is refused (CONNACK Server unavailable). Each waits
/// at most `SESSION_PUSH_CONNECT_WAIT_MS`.
pub const SESSION_PUSH_CONNECTS_WAITING_MAX: usize = CLAIMS_WAITING_PER_ID_MAX;

/// The longest a connect waits behind a push of its session before its
/// claim is served anyway (the home releases a claim not done by then).
pub const SESSION_PUSH_CONNECT_WAIT_MS: u64 = CLAIM_TIMEOUT_MS;

// ---------------------------------------------------------------- cluster-wide clients API (src/cluster/driver/query.rs)

/// Most client records one peer's answer to a listing carries; the asking
/// admin API asks again from where the answer stopped.
pub const CLUSTER_CLIENTS_ANSWER_MAX: usize = 500;

/// Most bytes of client ids and user names one listing answer carries (a
/// client id may be 64 KiB): the answer stops early, within the frame body
/// limit (`CLUSTER_LOGIC_BODY_MAX_BYTES`).
pub const CLUSTER_CLIENTS_ANSWER_MAX_BYTES: usize = 1 << 20;

/// How long the driver waits for a peer's answer to a clients question; a
/// silent peer is left out of the answer, which names it
/// (`meta.unavailable_nodes`). Under `ADMIN_SHARD_CALL_TIMEOUT`, so the
/// API answers with what it has before its own caller gives up.
pub const CLUSTER_CLIENTS_TIMEOUT_MS: u64 = 3_000;

/// Clients questions the admin API may have in flight towards the driver
/// (each to every running peer); beyond it the API answers 503.
pub const CLUSTER_CLIENTS_ASKS_MAX: usize = 64;

/// Peers' clients questions a node answers at once; beyond it a question
/// is answered "unavailable" at once (the asker leaves the node out).
pub const CLUSTER_CLIENTS_SERVING_MAX: usize = 16;

// ---------------------------------------------------------------- durable sessions

/// Longest `durable_sessions.batch_interval`: with `sync = "batch"` a
/// crash loses at most this much acknowledged work.
pub const DURABLE_BATCH_INTERVAL_MAX_MS: u32 = 10_000;

/// Smallest `durable_sessions.max_session_size` and `max_store_size`:
/// below a record's overhead and a small message nothing could be stored.
pub const DURABLE_SIZE_MIN_BYTES: u64 = 1 << 10;

/// Largest `durable_sessions.max_session_size` (one session's queued and
/// inflight QoS 1/2 deliveries in the store).
pub const DURABLE_SESSION_SIZE_MAX_BYTES: u64 = 1 << 40;

/// Largest `durable_sessions.max_store_size` (all durable sessions of a
/// node; each shard enforces its equal share).
pub const DURABLE_STORE_SIZE_MAX_BYTES: u64 = 1 << 46;

/// Batches a shard may have queued to its store's writer before `send`
/// waits (back-pressure to the shard, never a drop). One batch per executor
/// turn, so this is turns of work, not ops.
pub const DURABLE_BATCHES_QUEUED_MAX: usize = 1_024;

/// Largest record body (rkyv archive) a store writes or reads: a delivery
/// holds one message (at most a packet), a meta record the session's
/// subscriptions and will. Above it a record is refused, never truncated.
pub const DURABLE_RECORD_BYTES_MAX: usize = 300 << 20;

/// Background threads (memtable flushes, compactions) of each builtin
/// store: fjall's default is min(cores, 4) per store, and a node has a
/// store per shard.
pub const DURABLE_STORE_WORKER_THREADS: usize = 2;

/// Journal bytes of a builtin store before its memtables are written to
/// tables and the journals dropped (fjall's minimum; its default is 512
/// MiB): bounds the disk a drained queue still holds and the replay at
/// start.
pub const DURABLE_JOURNALS_BYTES_MAX: u64 = 64 << 20;

/// Memtable of each keyspace of a builtin store before it is written to a
/// table (fjall's default is 64 MiB): the store's memory, three keyspaces
/// per shard.
pub const DURABLE_MEMTABLE_BYTES_MAX: u64 = 16 << 20;

/// Removed deliveries before a builtin store compacts its deliveries
/// keyspace to free their space (see `durable::builtin::writer`).
pub const DURABLE_COMPACT_REMOVALS_MIN: u64 = 10_000;

/// A log store's segment file is closed and a new one begun once it holds
/// this many bytes (`durable::log`); compaction rewrites one segment at a
/// time, so this bounds the memory and the writer's pause of one step.
pub const DURABLE_LOG_SEGMENT_BYTES: u64 = 8 << 20;

/// A log store compacts (its oldest segment first) once it holds more than
/// this many bytes and more than twice its live bytes: the disk a drained
/// store keeps, and the bound on rewriting (each live byte is copied about
/// once per doubling of the log).
pub const DURABLE_LOG_COMPACT_MIN_BYTES: u64 = 4 << 20;

/// While a log store's writer is busy (batches waiting, or more than
/// `DURABLE_LOG_QUIET_BYTES` appended lately), it copies live records only
/// once the store holds more than twice its live bytes plus this many:
/// under a moving queue the oldest segment's records die by themselves
/// moments later, and copying them was the writer's largest avoidable
/// cost. A fully dead oldest segment is deleted whenever it is found.
pub const DURABLE_LOG_BUSY_SLACK_BYTES: u64 = 2 * DURABLE_LOG_SEGMENT_BYTES;

/// A log store's writer that appended at most this many bytes in the
/// current and previous `DURABLE_LOG_QUIET_WINDOW` is quiet: it compacts
/// down to `DURABLE_LOG_COMPACT_MIN_BYTES` of slack (the disk a drained
/// store keeps).
pub const DURABLE_LOG_QUIET_BYTES: u64 = 1 << 20;

/// See `DURABLE_LOG_QUIET_BYTES`.
pub const DURABLE_LOG_QUIET_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// A log store's writer that never finds its channel empty (its store is
/// the bottleneck) still takes a compaction step every this many bytes
/// appended, so the disk stays bounded under a sustained load
/// (`durable::log::writer`): half a segment, about what one step frees
/// once the store holds twice its live bytes.
pub const DURABLE_LOG_COMPACT_EVERY_BYTES: u64 = DURABLE_LOG_SEGMENT_BYTES / 2;

/// Client ids and topics longer than this are keyed by their SHA-256
/// (fjall keys are at most 65,535 bytes and a delivery key adds 9 bytes to
/// the client id); shorter ones are the key as they are, so a store stays
/// readable with a plain key dump.
pub const DURABLE_KEY_NAME_BYTES_MAX: usize = 1_024;

/// Redis servers named in `redis.servers` (seeds of a Redis Cluster).
pub const REDIS_SERVERS_MAX: usize = 64;

/// Longest `redis.password`.
pub const REDIS_PASSWORD_LEN_MAX_BYTES: usize = 1_024;

// ---------------------------------------------------------------- durable sessions: Redis backend (src/durable/redis/)

/// Hashes retained messages are spread over (`ringmq:retained:{b<N>}`,
/// N = FNV-1a 64 of the topic % this): enough buckets that every master
/// of a large Redis Cluster holds some and no hash grows past what one
/// HSCAN page loop reads quickly; fixed, because changing it moves every
/// retained message to another key.
pub const RETAINED_BUCKETS: u32 = 256;

/// Batches one shard's channel to the Redis thread holds (the shard awaits
/// a free slot: back-pressure, never a drop).
pub const REDIS_BATCHES_QUEUED_MAX: usize = 64;

/// Most batches of one shard the Redis thread applies as one group (one
/// round of pipelined scripts, one WAIT, one ticket published).
pub const REDIS_GROUP_BATCHES_MAX: usize = 64;

/// Scripts of one group in flight at once on the multiplexed connection
/// (pipelined); a group with more clients sends them in rounds.
pub const REDIS_SCRIPTS_IN_FLIGHT_MAX: usize = 512;

/// First and longest wait between retries of a group Redis did not answer
/// (connection lost, failover, CLUSTERDOWN, TRYAGAIN); doubled each time.
/// Retries never stop: while Redis is unreachable tickets are not
/// published and acknowledgements in `always` wait.
pub const REDIS_RETRY_BACKOFF_MIN_MS: u64 = 20;
pub const REDIS_RETRY_BACKOFF_MAX_MS: u64 = 2_000;

/// How often "Redis unreachable" is logged while it lasts.
pub const REDIS_UNREACHABLE_LOG_INTERVAL_MS: u64 = 5_000;

/// Connecting to the servers at start, and each command's answer, may
/// take this long before it counts as an error (and is retried).
pub const REDIS_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const REDIS_RESPONSE_TIMEOUT_MS: u64 = 5_000;

/// Retries (with MOVED/ASK redirects and slot refreshes) the cluster
/// client makes itself before an error reaches the backend's own retry.
pub const REDIS_CLIENT_RETRIES: u32 = 4;

/// How long `WAIT <replica_acks>` may wait for replicas after a group
/// before the ticket is published anyway (counted, logged): a master
/// whose replica is gone must not stop every write.
pub const REDIS_REPLICA_ACK_TIMEOUT_MS: u64 = 200;

/// The highest owner epoch the Redis backend accepts: epochs travel through
/// its Lua scripts as doubles, exact up to 2^53 (a wall-clock ms epoch
/// reaches it in the year 287,396). A claim above it is refused, not
/// rounded into another owner's epoch.
pub const REDIS_EPOCH_MAX: u64 = 1 << 53;

/// TTL of an owner record that only fences (a `load_session` of a client
/// with no session, or a removed session): long enough to outlive a stale
/// owner's retries, short enough not to pile up.
pub const REDIS_FENCE_TOMBSTONE_TTL_MS: u64 = 600_000;

/// Members one SSCAN / HSCAN page asks for at start (`load_node`).
pub const REDIS_SCAN_COUNT: usize = 500;

/// Sessions `load_node` reads at once at start (each answer is the whole
/// session with its deliveries: many at once made a busy master answer the
/// last past `REDIS_RESPONSE_TIMEOUT_MS`, and the start failed).
pub const REDIS_LOAD_SESSIONS_IN_FLIGHT_MAX: usize = 8;

/// `load_session` / `load_node` requests waiting for the Redis thread.
pub const REDIS_REQUESTS_QUEUED_MAX: usize = 256;

/// Fenced answers kept per shard until the shard takes them; beyond it
/// they are counted (`fenced_dropped`) and dropped.
pub const REDIS_FENCED_QUEUE_MAX: usize = 4_096;
