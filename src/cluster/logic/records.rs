//! Forward records: the data frame layout of forwarded messages (kind
//! [`KIND_FORWARD_RECORDS`]), written straight from `Arc<Message>` and read
//! back into `Message`s whose topic and payload are slices of the frame.
//!
//! Why not the rkyv archive the other kinds use: a forwarded message was
//! turned into a `MessageSnapshot` (two `String`s), archived, validated,
//! deserialised into owned values (a copy of the payload) and turned into a
//! `Message` again: about six allocations and frees per message on each
//! side, the largest per-message cost of cross-node forwarding
//! (docs/performance.md). Here the sender appends length-prefixed records
//! to one buffer and the receiver validates the whole frame once (every
//! length within the body, the count, UTF-8 and the topic rules, the
//! limits) before it delivers any message of it; a message then costs one
//! `Arc` allocation on the receiver and none on the sender.
//!
//! The header's version byte (`net::frame`) versions the frame; the body
//! has its own layout byte ([`RECORDS_LAYOUT_VERSION`]) so the layout can
//! change without a new frame version. All integers little-endian:
//!
//! ```text
//! body:   layout u8 | flags u8 (0) | stream u16 | count u32
//!         | window epoch u64 | window opened u32 | first stream_seq u64
//!         | count records
//! record: len u32 (bytes after this field)
//!         | message id: node u32, shard u16, seq u64 | flags u8
//!         | topic len u16 | payload len u32 | [expires_at_unix_ms u64]
//!         | topic | payload | [origin: len u16, bytes]
//!         | [shared: group len u16, group, filter len u16, filter]
//!         | [properties: mask u8, then the present ones in mask order]
//! ```
//!
//! Record flags: bits 0-1 QoS, 2 retain, 3 expiry, 4 origin, 5 shared,
//! 6 properties, 7 zero. Property mask: 0 payload format indicator (u8),
//! 1 message expiry interval (u32), 2 response topic, 3 correlation data,
//! 4 content type (each len u16, bytes), 5 user properties (count u32, then
//! key and value as len u16, bytes each); bits 6-7 zero. The records of a
//! frame are consecutive messages of one data stream: numbers
//! `first..first + count`.
//!
//! Layout 2 carries each message's own cluster-wide id
//! (`session::MessageId`, given by the publisher's shard), so the
//! receiving node builds its `Message` with the id the publisher's node
//! and every other node use for it. Layout 1 carried a number the driver
//! gave, with the frame's node and stream as the rest of the id; it is
//! refused like any unknown layout.

use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::proto::{MessageId, SharedTarget, WindowId};
use crate::codec::{ByteStr, PublishProperties, QoS};
use crate::limits::{CLUSTER_LOGIC_BODY_MAX_BYTES, FORWARD_BATCH_MESSAGES_MAX};
use crate::router::location::ShardId;
use crate::session::{Message, Origin};

/// The frame kind (next to `ForwardBatch` = 33, the rkyv batch it
/// replaces on the sending side; 33 is still read).
pub const KIND_FORWARD_RECORDS: u8 = 35;

/// The body layout this build writes and the only one it reads.
pub const RECORDS_LAYOUT_VERSION: u8 = 2;

const BODY_HEAD_BYTES: usize = 28;
/// len, message id (node, shard, seq), flags, topic len, payload len.
const RECORD_HEAD_BYTES: usize = 4 + 4 + 2 + 8 + 1 + 2 + 4;

const QOS_MASK: u8 = 0b11;
const RETAIN: u8 = 1 << 2;
const EXPIRY: u8 = 1 << 3;
const ORIGIN: u8 = 1 << 4;
const SHARED: u8 = 1 << 5;
const PROPERTIES: u8 = 1 << 6;
const FLAGS_KNOWN: u8 = QOS_MASK | RETAIN | EXPIRY | ORIGIN | SHARED | PROPERTIES;

const P_FORMAT: u8 = 1;
const P_EXPIRY_INTERVAL: u8 = 1 << 1;
const P_RESPONSE_TOPIC: u8 = 1 << 2;
const P_CORRELATION: u8 = 1 << 3;
const P_CONTENT_TYPE: u8 = 1 << 4;
const P_USER: u8 = 1 << 5;
const P_KNOWN: u8 =
    P_FORMAT | P_EXPIRY_INTERVAL | P_RESPONSE_TOPIC | P_CORRELATION | P_CONTENT_TYPE | P_USER;

/// A message waiting in a forwarding window (the sender's side): the
/// routed message itself, shared with the local subscribers.
#[derive(Debug, Clone)]
pub struct OutForward {
    /// `message.id`, which every forwarded message has.
    pub id: MessageId,
    /// Number in its data stream, set by `ForwardOut::push`.
    pub stream_seq: u64,
    pub message: Arc<Message>,
    /// `message.expires_at` on the wall clock (the peer's `Instant`s are
    /// not ours).
    pub expires_at_unix_ms: Option<u64>,
    /// `Some`: for one member of this group on the receiving node only.
    pub shared: Option<SharedTarget>,
}

/// A forwarded message read from a frame (the receiver's side).
#[derive(Debug)]
pub struct InForward {
    pub id: MessageId,
    pub stream_seq: u64,
    /// Topic and payload are slices of the frame, `id` is `Some(id)`;
    /// `expires_at` is `None`: the driver sets it from
    /// `expires_at_unix_ms` with its clock.
    pub message: Message,
    pub expires_at_unix_ms: Option<u64>,
    pub shared: Option<SharedTarget>,
}

/// A whole frame, validated.
#[derive(Debug)]
pub struct RecordsFrame {
    pub window: WindowId,
    pub shard: ShardId,
    /// Consecutive numbers of stream `shard`, at least one.
    pub forwards: Vec<InForward>,
}

/// Why a frame was refused: the peer's fault, nothing of it is delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error(
        "forward records layout {found} is not supported: this ringmq reads layout \
         {RECORDS_LAYOUT_VERSION}"
    )]
    UnknownLayout { found: u8 },
    #[error(
        "forward records frame of {len} bytes is over the limit of {max} bytes \
         (limits::CLUSTER_LOGIC_BODY_MAX_BYTES)"
    )]
    TooLarge { len: usize, max: usize },
    #[error(
        "forward records frame says {count} records: must be 1 to {max} \
         (limits::FORWARD_BATCH_MESSAGES_MAX)"
    )]
    Count { count: u32, max: usize },
    #[error("forward records frame truncated: {what} needs {need} bytes at offset {at}")]
    Truncated {
        what: &'static str,
        at: usize,
        need: usize,
    },
    #[error("forward records frame has {0} bytes after its last record")]
    Trailing(usize),
    #[error("forward record {index}: {reason}")]
    Invalid { index: u32, reason: String },
}

/// What a message weighs in a batch (`FORWARD_BATCH_BYTES_MAX`): an upper
/// bound of its record's size.
pub fn batch_bytes(f: &OutForward) -> usize {
    let m = &f.message;
    let mut n = 64 + m.topic.len() + m.payload.len();
    n += m.origin.as_deref().map_or(0, str::len);
    if let Some(s) = &f.shared {
        n += s.group.len() + s.filter.len();
    }
    if let Some(p) = m.properties.as_deref() {
        n += p.response_topic.as_deref().map_or(0, str::len)
            + p.correlation_data.as_ref().map_or(0, Bytes::len)
            + p.content_type.as_deref().map_or(0, str::len);
        n += p
            .user_properties
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>();
    }
    n
}

/// Builds one frame body: `new`, `push` consecutive messages, `finish`.
pub struct RecordsEncoder {
    buf: BytesMut,
    count: u32,
    next_seq: u64,
}

impl RecordsEncoder {
    /// A frame of stream `shard` whose first message is `first`;
    /// `capacity_bytes`: the sum of the messages' `batch_bytes`.
    pub fn new(
        window: WindowId,
        shard: ShardId,
        first: &OutForward,
        capacity_bytes: usize,
    ) -> Self {
        let mut buf = BytesMut::with_capacity(BODY_HEAD_BYTES + capacity_bytes);
        buf.put_u8(RECORDS_LAYOUT_VERSION);
        buf.put_u8(0);
        buf.put_u16_le(shard);
        buf.put_u32_le(0); // the count, written by `finish`
        buf.put_u64_le(window.epoch);
        buf.put_u32_le(window.opened);
        buf.put_u64_le(first.stream_seq);
        RecordsEncoder {
            buf,
            count: 0,
            next_seq: first.stream_seq,
        }
    }

    /// Appends the next message of the stream (its number follows the
    /// previous one: the window numbers them so).
    pub fn push(&mut self, f: &OutForward) {
        debug_assert_eq!(f.stream_seq, self.next_seq, "records are consecutive");
        self.next_seq += 1;
        self.count += 1;
        let m = &f.message;
        let props = m.properties.as_deref();
        let mut flags = m.qos as u8;
        flags |= if m.retain { RETAIN } else { 0 };
        flags |= if f.expires_at_unix_ms.is_some() {
            EXPIRY
        } else {
            0
        };
        flags |= if m.origin.is_some() { ORIGIN } else { 0 };
        flags |= if f.shared.is_some() { SHARED } else { 0 };
        flags |= if props.is_some() { PROPERTIES } else { 0 };
        let buf = &mut self.buf;
        let at = buf.len();
        buf.put_u32_le(0); // the record's length, written below
        buf.put_u32_le(f.id.node);
        buf.put_u16_le(f.id.shard);
        buf.put_u64_le(f.id.seq);
        buf.put_u8(flags);
        buf.put_u16_le(short_len(m.topic.len()));
        let payload_len =
            u32::try_from(m.payload.len()).expect("payloads are capped far below 4 GiB");
        buf.put_u32_le(payload_len);
        if let Some(ms) = f.expires_at_unix_ms {
            buf.put_u64_le(ms);
        }
        buf.put_slice(m.topic.as_bytes());
        buf.put_slice(&m.payload);
        if let Some(origin) = m.origin.as_deref() {
            put_short(buf, origin.as_bytes());
        }
        if let Some(s) = &f.shared {
            put_short(buf, s.group.as_bytes());
            put_short(buf, s.filter.as_bytes());
        }
        if let Some(p) = props {
            put_properties(buf, p);
        }
        let len = u32::try_from(buf.len() - at - 4).expect("a record is capped far below 4 GiB");
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Messages pushed so far.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    pub fn finish(mut self) -> Bytes {
        self.buf[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.buf.freeze()
    }
}

/// Lengths of MQTT strings and binary data: at most 65,535 by the codec.
fn short_len(len: usize) -> u16 {
    u16::try_from(len).expect("MQTT strings and binary data are at most 65,535 bytes")
}

fn put_short(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u16_le(short_len(bytes.len()));
    buf.put_slice(bytes);
}

fn put_properties(buf: &mut BytesMut, p: &PublishProperties) {
    let mut mask = 0;
    mask |= if p.payload_format_indicator.is_some() {
        P_FORMAT
    } else {
        0
    };
    mask |= if p.message_expiry_interval_s.is_some() {
        P_EXPIRY_INTERVAL
    } else {
        0
    };
    mask |= if p.response_topic.is_some() {
        P_RESPONSE_TOPIC
    } else {
        0
    };
    mask |= if p.correlation_data.is_some() {
        P_CORRELATION
    } else {
        0
    };
    mask |= if p.content_type.is_some() {
        P_CONTENT_TYPE
    } else {
        0
    };
    mask |= if p.user_properties.is_empty() {
        0
    } else {
        P_USER
    };
    buf.put_u8(mask);
    if let Some(v) = p.payload_format_indicator {
        buf.put_u8(v);
    }
    if let Some(v) = p.message_expiry_interval_s {
        buf.put_u32_le(v);
    }
    if let Some(s) = &p.response_topic {
        put_short(buf, s.as_bytes());
    }
    if let Some(b) = &p.correlation_data {
        put_short(buf, b);
    }
    if let Some(s) = &p.content_type {
        put_short(buf, s.as_bytes());
    }
    if !p.user_properties.is_empty() {
        let n = u32::try_from(p.user_properties.len()).expect("bounded by the packet size");
        buf.put_u32_le(n);
        for (k, v) in &p.user_properties {
            put_short(buf, k.as_bytes());
            put_short(buf, v.as_bytes());
        }
    }
}

/// Reads a frame body: everything is checked before anything is returned.
pub fn decode(body: &Bytes) -> Result<RecordsFrame, RecordsError> {
    if body.len() > CLUSTER_LOGIC_BODY_MAX_BYTES {
        return Err(RecordsError::TooLarge {
            len: body.len(),
            max: CLUSTER_LOGIC_BODY_MAX_BYTES,
        });
    }
    let mut c = Cursor {
        body,
        pos: 0,
        end: body.len(),
    };
    let layout = c.u8("the layout byte")?;
    if layout != RECORDS_LAYOUT_VERSION {
        return Err(RecordsError::UnknownLayout { found: layout });
    }
    let flags = c.u8("the frame flags")?;
    let shard = c.u16("the stream")?;
    let count = c.u32("the count")?;
    let window = WindowId {
        epoch: c.u64("the window epoch")?,
        opened: c.u32("the window number")?,
    };
    let first_seq = c.u64("the first number")?;
    if flags != 0 {
        return Err(RecordsError::Invalid {
            index: 0,
            reason: format!("frame flags {flags:#04x}, must be 0"),
        });
    }
    if count == 0 || count as usize > FORWARD_BATCH_MESSAGES_MAX {
        return Err(RecordsError::Count {
            count,
            max: FORWARD_BATCH_MESSAGES_MAX,
        });
    }
    // Each record takes at least its head: a count the body cannot hold
    // is refused before anything is allocated for it.
    if (count as usize).saturating_mul(RECORD_HEAD_BYTES) > c.left() {
        return Err(RecordsError::Truncated {
            what: "the records",
            at: c.pos,
            need: count as usize * RECORD_HEAD_BYTES,
        });
    }
    let mut forwards = Vec::with_capacity(count as usize);
    for index in 0..count {
        let stream_seq = first_seq
            .checked_add(u64::from(index))
            .ok_or_else(|| invalid(index, "stream numbers overflow".into()))?;
        let len = c.u32("a record length")? as usize;
        let mut r = c.sub(len, "a record")?;
        let id = MessageId {
            node: r.u32("a message's node")?,
            shard: r.u16("a message's shard")?,
            seq: r.u64("a message number")?,
        };
        let f = read_record(&mut r, id, stream_seq).map_err(|e| match e {
            RecordsError::Invalid { reason, .. } => invalid(index, reason),
            other => other,
        })?;
        if r.left() != 0 {
            return Err(invalid(
                index,
                format!("{} bytes after its fields, within its length", r.left()),
            ));
        }
        forwards.push(f);
    }
    if c.left() != 0 {
        return Err(RecordsError::Trailing(c.left()));
    }
    Ok(RecordsFrame {
        window,
        shard,
        forwards,
    })
}

fn invalid(index: u32, reason: String) -> RecordsError {
    RecordsError::Invalid { index, reason }
}

fn read_record(
    r: &mut Cursor<'_>,
    id: MessageId,
    stream_seq: u64,
) -> Result<InForward, RecordsError> {
    let flags = r.u8("record flags")?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(invalid(0, format!("unknown record flags {flags:#04x}")));
    }
    let qos = QoS::from_u8(flags & QOS_MASK).ok_or_else(|| invalid(0, "QoS 3".into()))?;
    let topic_len = usize::from(r.u16("the topic length")?);
    let payload_len = r.u32("the payload length")? as usize;
    let expires_at_unix_ms = if flags & EXPIRY != 0 {
        Some(r.u64("the expiry")?)
    } else {
        None
    };
    let topic = r.string(topic_len, "topic")?;
    if !crate::router::topic::is_valid_topic_name(&topic) {
        return Err(invalid(0, "topic is empty or has a wildcard".into()));
    }
    let payload = r.bytes(payload_len, "the payload")?;
    let origin = if flags & ORIGIN != 0 {
        let len = usize::from(r.u16("the origin length")?);
        Some(Origin::new(&r.string(len, "origin")?))
    } else {
        None
    };
    let shared = if flags & SHARED != 0 {
        let len = usize::from(r.u16("the group length")?);
        let group = r.string(len, "shared group")?.to_string();
        let len = usize::from(r.u16("the filter length")?);
        let filter = r.string(len, "shared filter")?.to_string();
        Some(SharedTarget { group, filter })
    } else {
        None
    };
    let properties = if flags & PROPERTIES != 0 {
        Some(read_properties(r)?).and_then(PublishProperties::boxed)
    } else {
        None
    };
    Ok(InForward {
        id,
        stream_seq,
        message: Message {
            topic,
            payload,
            qos,
            retain: flags & RETAIN != 0,
            properties,
            origin,
            expires_at: None,
            id: Some(id),
        },
        expires_at_unix_ms,
        shared,
    })
}

fn read_properties(r: &mut Cursor<'_>) -> Result<PublishProperties, RecordsError> {
    let mask = r.u8("the property mask")?;
    if mask & !P_KNOWN != 0 {
        return Err(invalid(0, format!("unknown property mask {mask:#04x}")));
    }
    let mut p = PublishProperties::default();
    if mask & P_FORMAT != 0 {
        p.payload_format_indicator = Some(r.u8("the payload format")?);
    }
    if mask & P_EXPIRY_INTERVAL != 0 {
        p.message_expiry_interval_s = Some(r.u32("the expiry interval")?);
    }
    if mask & P_RESPONSE_TOPIC != 0 {
        let len = usize::from(r.u16("the response topic length")?);
        p.response_topic = Some(r.string(len, "response topic")?);
    }
    if mask & P_CORRELATION != 0 {
        let len = usize::from(r.u16("the correlation data length")?);
        p.correlation_data = Some(r.bytes(len, "the correlation data")?);
    }
    if mask & P_CONTENT_TYPE != 0 {
        let len = usize::from(r.u16("the content type length")?);
        p.content_type = Some(r.string(len, "content type")?);
    }
    if mask & P_USER != 0 {
        let n = r.u32("the user property count")? as usize;
        // Each pair takes at least its two lengths.
        if n.saturating_mul(4) > r.left() {
            return Err(RecordsError::Truncated {
                what: "the user properties",
                at: r.pos,
                need: n.saturating_mul(4),
            });
        }
        p.user_properties.reserve(n);
        for _ in 0..n {
            let len = usize::from(r.u16("a user property length")?);
            let k = r.string(len, "user property")?;
            let len = usize::from(r.u16("a user property length")?);
            let v = r.string(len, "user property")?;
            p.user_properties.push((k, v));
        }
    }
    Ok(p)
}

/// Reads `body[pos..end]`, every read checked against `end`.
struct Cursor<'a> {
    body: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, need: usize, what: &'static str) -> Result<Range<usize>, RecordsError> {
        if need > self.left() {
            return Err(RecordsError::Truncated {
                what,
                at: self.pos,
                need,
            });
        }
        let range = self.pos..self.pos + need;
        self.pos += need;
        Ok(range)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordsError> {
        let range = self.take(N, what)?;
        Ok(self.body[range].try_into().expect("N bytes taken"))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RecordsError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, RecordsError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RecordsError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, RecordsError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// The next `len` bytes as a cursor of their own (a record).
    fn sub(&mut self, len: usize, what: &'static str) -> Result<Cursor<'_>, RecordsError> {
        let range = self.take(len, what)?;
        Ok(Cursor {
            body: self.body,
            pos: range.start,
            end: range.end,
        })
    }

    /// A slice of the frame: no copy.
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, RecordsError> {
        let range = self.take(len, what)?;
        Ok(self.body.slice(range))
    }

    /// An MQTT string (UTF-8, no NUL), a slice of the frame.
    fn string(&mut self, len: usize, what: &'static str) -> Result<ByteStr, RecordsError> {
        let bytes = self.bytes(len, what)?;
        ByteStr::try_from_bytes(bytes).map_err(|e| invalid(0, format!("{what}: {e}")))
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
