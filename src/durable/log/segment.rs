//! The on-disk format of the log engine (sans-IO: bytes in, bytes out).
//!
//! A store is a directory of segment files `{number:020}.seg`, numbered
//! in write order. A segment starts with a 16-byte header (the magic
//! `RMQLOG01` and its number, little-endian) and holds **groups**, each
//! one write of the writer, 8-byte aligned:
//!
//! ```text
//! u32 GROUP_MAGIC | u32 body bytes | u64 xxh3 of the body | body | zero padding to 8
//! ```
//!
//! A body is records back to back: `u8 kind | u32 payload bytes | payload`.
//! A group is applied whole or not at all, so the records of one write
//! (a session replaced: its removal, its meta and its deliveries) never
//! come back half.
//!
//! Reading a segment ([`parse`]) tells a torn tail from damage: a group
//! that is cut short or fails its checksum is a torn tail only if it is in
//! the last segment and no valid group follows it anywhere in the file
//! (a crash mid-write leaves nothing valid after the group it cut); any
//! other bad group is damage, reported with the file offset.

use crate::limits::DURABLE_RECORD_BYTES_MAX;

pub const SEGMENT_MAGIC: [u8; 8] = *b"RMQLOG01";
pub const SEGMENT_HEADER_BYTES: usize = 16;
pub const GROUP_MAGIC: u32 = 0x5247_4d51; // "QMGR" little-endian
pub const GROUP_HEADER_BYTES: usize = 16;
pub const RECORD_HEADER_BYTES: usize = 5;
/// The longest record payload a reader accepts: the name's u16 length, the
/// longest name, the u64 number and the largest record value
/// (`limits::DURABLE_RECORD_BYTES_MAX`). A longer length field is damage,
/// never an allocation.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 2 + u16::MAX as usize + 8 + DURABLE_RECORD_BYTES_MAX;

/// What a record holds. The payloads: `Meta` client, u64 epoch, meta
/// record; `Delivery` client, u64 seq, delivery record; `RemoveDelivery`
/// client, u64 seq; `RemoveSession` client; `Retained` topic, retained
/// record; `RemoveRetained` topic; `DeliveryState` client, u64 seq, the
/// new state of that delivery (`log::state`, six bytes). Names are
/// u16-length-prefixed; the records are `durable::record`'s (versioned,
/// checked on decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Meta = 1,
    Delivery = 2,
    RemoveDelivery = 3,
    RemoveSession = 4,
    Retained = 5,
    RemoveRetained = 6,
    DeliveryState = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Meta,
            2 => Kind::Delivery,
            3 => Kind::RemoveDelivery,
            4 => Kind::RemoveSession,
            5 => Kind::Retained,
            6 => Kind::RemoveRetained,
            7 => Kind::DeliveryState,
            _ => return None,
        })
    }
}

/// One record as read: its kind, its name (client id or topic), the u64
/// after the name (epoch or seq; 0 when the kind has none) and the record
/// bytes that follow. `at`/`len`: where the whole record (header included)
/// sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub number: u64,
    pub value: &'a [u8],
    pub at: u64,
    pub len: u32,
}

fn has_number(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Meta | Kind::Delivery | Kind::RemoveDelivery | Kind::DeliveryState
    )
}

/// The segment header of segment `number`.
pub fn header(number: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&number.to_le_bytes());
    h
}

/// Builds one group: [`Group::push`] records, then [`Group::finish`].
#[derive(Default)]
pub struct Group {
    buf: Vec<u8>,
}

impl Group {
    pub fn new() -> Group {
        Group::in_buffer(Vec::with_capacity(4096))
    }

    /// A group built in `buf` (emptied; its room is kept: the writer hands
    /// back each group's buffer after the write).
    pub fn in_buffer(mut buf: Vec<u8>) -> Group {
        buf.clear();
        buf.extend_from_slice(&[0u8; GROUP_HEADER_BYTES]);
        Group { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == GROUP_HEADER_BYTES
    }

    /// Appends a record; returns its offset within the group and its
    /// length. `number` is ignored for kinds without one.
    pub fn push(&mut self, kind: Kind, name: &str, number: u64, value: &[u8]) -> (usize, u32) {
        let at = self.buf.len();
        let payload = 2 + name.len() + if has_number(kind) { 8 } else { 0 } + value.len();
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&(payload as u32).to_le_bytes());
        // Names are at most 65,535 bytes (MQTT strings).
        self.buf
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        if has_number(kind) {
            self.buf.extend_from_slice(&number.to_le_bytes());
        }
        self.buf.extend_from_slice(value);
        (at, (self.buf.len() - at) as u32)
    }

    /// Appends a record whose value `value` writes at the end of the
    /// buffer it is given (no copy of the value); returns as [`Group::push`].
    pub fn push_with<E>(
        &mut self,
        kind: Kind,
        name: &str,
        number: u64,
        value: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(usize, u32), E> {
        let at = self.buf.len();
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        if has_number(kind) {
            self.buf.extend_from_slice(&number.to_le_bytes());
        }
        if let Err(e) = value(&mut self.buf) {
            self.buf.truncate(at);
            return Err(e);
        }
        let payload = (self.buf.len() - at - RECORD_HEADER_BYTES) as u32;
        self.buf[at + 1..at + 5].copy_from_slice(&payload.to_le_bytes());
        Ok((at, (self.buf.len() - at) as u32))
    }

    /// Appends a record as read from another segment (compaction).
    pub fn push_raw(&mut self, record: &[u8]) -> (usize, u32) {
        let at = self.buf.len();
        self.buf.extend_from_slice(record);
        (at, record.len() as u32)
    }

    /// Fills the header, pads to 8 bytes and returns the group's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let body_len = self.buf.len() - GROUP_HEADER_BYTES;
        let sum = xxhash_rust::xxh3::xxh3_64(&self.buf[GROUP_HEADER_BYTES..]);
        self.buf[..4].copy_from_slice(&GROUP_MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
        self.buf[8..16].copy_from_slice(&sum.to_le_bytes());
        let padded = self.buf.len().next_multiple_of(8);
        self.buf.resize(padded, 0);
        self.buf
    }
}

/// Why a segment cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("its header is not a ringmq log segment header (expected {expected}, segment number {number})")]
    Header { expected: &'static str, number: u64 },
    #[error("the group at byte {at} is damaged ({why}), and valid data follows it")]
    Group { at: u64, why: String },
    #[error("the group at byte {at} holds a bad record at byte {record_at}: {why}")]
    Record {
        at: u64,
        record_at: u64,
        why: String,
    },
}

/// What [`parse`] found: every record of every valid group in order, and
/// where a torn tail begins (the last segment only).
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub records: Vec<Record<'a>>,
    /// Groups read.
    pub groups: usize,
    /// The offset where the torn tail starts; the file should end there.
    pub torn_at: Option<u64>,
}

/// Reads the segment `number` from its bytes. `last`: the newest segment,
/// the only one that may end in a torn tail.
pub fn parse(bytes: &[u8], number: u64, last: bool) -> Result<Parsed<'_>, Damage> {
    if bytes.len() < SEGMENT_HEADER_BYTES || bytes[..SEGMENT_HEADER_BYTES] != header(number) {
        // A new last segment whose header write was cut: nothing in it.
        if last && bytes.len() < SEGMENT_HEADER_BYTES && header(number).starts_with(bytes) {
            return Ok(Parsed {
                torn_at: Some(0),
                ..Parsed::default()
            });
        }
        return Err(Damage::Header {
            expected: "RMQLOG01",
            number,
        });
    }
    let mut out = Parsed::default();
    let mut at = SEGMENT_HEADER_BYTES;
    while at < bytes.len() {
        match group_at(bytes, at) {
            Ok((body, end)) => {
                read_records(bytes, at, body, &mut out.records)?;
                out.groups += 1;
                at = end;
            }
            Err(why) => {
                if last && !any_valid_group_after(bytes, at) {
                    out.torn_at = Some(at as u64);
                    return Ok(out);
                }
                return Err(Damage::Group { at: at as u64, why });
            }
        }
    }
    Ok(out)
}

/// The body range of the valid group at `at` and the offset after it.
fn group_at(bytes: &[u8], at: usize) -> Result<(std::ops::Range<usize>, usize), String> {
    let head = bytes
        .get(at..at + GROUP_HEADER_BYTES)
        .ok_or_else(|| format!("{} bytes left, a group header needs 16", bytes.len() - at))?;
    let magic = u32::from_le_bytes(head[..4].try_into().expect("4"));
    if magic != GROUP_MAGIC {
        return Err(format!("no group magic (found {magic:#010x})"));
    }
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4")) as usize;
    let sum = u64::from_le_bytes(head[8..16].try_into().expect("8"));
    let start = at + GROUP_HEADER_BYTES;
    let body = bytes.get(start..start + len).ok_or_else(|| {
        format!(
            "cut short: {len} body bytes declared, {} present",
            bytes.len() - start
        )
    })?;
    if xxhash_rust::xxh3::xxh3_64(body) != sum {
        return Err("checksum mismatch".into());
    }
    let end = (start + len).next_multiple_of(8).min(bytes.len());
    Ok((start..start + len, end))
}

/// Whether a valid group starts at any 8-byte boundary after `at`.
fn any_valid_group_after(bytes: &[u8], at: usize) -> bool {
    let mut probe = at + 8;
    let magic = GROUP_MAGIC.to_le_bytes();
    while probe + GROUP_HEADER_BYTES <= bytes.len() {
        if bytes[probe..probe + 4] == magic && group_at(bytes, probe).is_ok() {
            return true;
        }
        probe += 8;
    }
    false
}

fn read_records<'a>(
    bytes: &'a [u8],
    group_at: usize,
    body: std::ops::Range<usize>,
    out: &mut Vec<Record<'a>>,
) -> Result<(), Damage> {
    let mut at = body.start;
    while at < body.end {
        let bad = |why: String| Damage::Record {
            at: group_at as u64,
            record_at: at as u64,
            why,
        };
        let rest = &bytes[at..body.end];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err(bad("cut short".into()));
        }
        let kind =
            Kind::from_u8(rest[0]).ok_or_else(|| bad(format!("unknown kind {}", rest[0])))?;
        let payload_len = u32::from_le_bytes(rest[1..5].try_into().expect("4")) as usize;
        if payload_len > RECORD_PAYLOAD_BYTES_MAX {
            return Err(bad(format!("{payload_len} payload bytes, over the limit")));
        }
        let payload = rest
            .get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len)
            .ok_or_else(|| bad("its payload runs past the group".into()))?;
        if payload.len() < 2 {
            return Err(bad("no name".into()));
        }
        let name_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
        let numbered = if has_number(kind) { 8 } else { 0 };
        if payload.len() < 2 + name_len + numbered {
            return Err(bad("its name runs past the record".into()));
        }
        let name = std::str::from_utf8(&payload[2..2 + name_len])
            .map_err(|_| bad("its name is not UTF-8".into()))?;
        let number = if numbered > 0 {
            let n = &payload[2 + name_len..2 + name_len + 8];
            u64::from_le_bytes(n.try_into().expect("8"))
        } else {
            0
        };
        let value = &payload[2 + name_len + numbered..];
        let len = RECORD_HEADER_BYTES + payload_len;
        out.push(Record {
            kind,
            name,
            number,
            value,
            at: at as u64,
            len: len as u32,
        });
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(groups: &[Vec<u8>]) -> Vec<u8> {
        let mut s = header(7).to_vec();
        for g in groups {
            s.extend_from_slice(g);
        }
        s
    }

    fn group(records: &[(Kind, &str, u64, &[u8])]) -> Vec<u8> {
        let mut g = Group::new();
        for &(k, n, num, v) in records {
            g.push(k, n, num, v);
        }
        g.finish()
    }

    #[test]
    fn records_come_back_in_order_with_their_places() {
        let g1 = group(&[
            (Kind::Meta, "a", 3, b"meta"),
            (Kind::Delivery, "a", 9, b"d"),
        ]);
        let g2 = group(&[
            (Kind::RemoveSession, "a", 0, b""),
            (Kind::Retained, "t/1", 0, b"r"),
        ]);
        let bytes = segment(&[g1.clone(), g2]);
        let p = parse(&bytes, 7, false).unwrap();
        let got: Vec<_> = p
            .records
            .iter()
            .map(|r| (r.kind, r.name, r.number, r.value))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Meta, "a", 3, &b"meta"[..]),
                (Kind::Delivery, "a", 9, &b"d"[..]),
                (Kind::RemoveSession, "a", 0, &b""[..]),
                (Kind::Retained, "t/1", 0, &b"r"[..]),
            ]
        );
        assert_eq!(p.groups, 2);
        assert_eq!(p.torn_at, None);
        // A record's place: its bytes are the record, header included.
        let r = p.records[1];
        assert_eq!(bytes[r.at as usize], Kind::Delivery as u8);
        assert_eq!(r.at as usize + r.len as usize, {
            let m = p.records[0];
            (m.at + m.len as u64 + r.len as u64) as usize
        });
        assert_eq!(
            p.records[2].at as usize,
            SEGMENT_HEADER_BYTES + g1.len() + GROUP_HEADER_BYTES
        );
    }

    /// A cut in the last group of the last segment is a torn tail, at
    /// every length; the same bytes in an older segment are damage.
    #[test]
    fn a_cut_last_group_is_a_torn_tail_only_in_the_last_segment() {
        let g1 = group(&[(Kind::Meta, "a", 1, b"m")]);
        let g2 = group(&[(Kind::Delivery, "a", 1, &[7u8; 100])]);
        let full = segment(&[g1.clone(), g2.clone()]);
        let cut_from = SEGMENT_HEADER_BYTES + g1.len();
        // Up to the end of g2's body (a cut in its padding loses nothing).
        let body = u32::from_le_bytes(g2[4..8].try_into().unwrap()) as usize;
        for end in cut_from + 1..cut_from + GROUP_HEADER_BYTES + body {
            let p = parse(&full[..end], 7, true).unwrap();
            assert_eq!(p.torn_at, Some(cut_from as u64), "cut at {end}");
            assert_eq!(p.records.len(), 1);
            assert!(parse(&full[..end], 7, false).is_err(), "cut at {end}");
        }
        // Zeros where the group should be (a file extended, its data lost).
        let mut zeroed = full.clone();
        zeroed[cut_from..].fill(0);
        assert_eq!(
            parse(&zeroed, 7, true).unwrap().torn_at,
            Some(cut_from as u64)
        );
    }

    /// A damaged group with a valid one after it is damage even in the last
    /// segment: nothing is silently dropped. Fails if the reader took every
    /// bad group of the last segment for a torn tail.
    #[test]
    fn damage_before_valid_data_is_refused_with_its_offset() {
        let g1 = group(&[(Kind::Meta, "a", 1, b"m")]);
        let g2 = group(&[(Kind::Delivery, "a", 1, &[7u8; 100])]);
        let g3 = group(&[(Kind::Delivery, "a", 2, &[8u8; 10])]);
        let mut bytes = segment(&[g1.clone(), g2, g3]);
        let at = SEGMENT_HEADER_BYTES + g1.len();
        bytes[at + GROUP_HEADER_BYTES + 40] ^= 0x10;
        match parse(&bytes, 7, true) {
            Err(Damage::Group { at: a, .. }) => assert_eq!(a, at as u64),
            other => panic!("{other:?}"),
        }
        // A damaged length field too.
        let mut bytes2 = segment(&[
            g1.clone(),
            group(&[(Kind::Meta, "b", 1, b"x")]),
            group(&[(Kind::Meta, "c", 1, b"y")]),
        ]);
        bytes2[at + 5] ^= 0x40;
        assert!(matches!(parse(&bytes2, 7, true), Err(Damage::Group { .. })));
        // A wrong header, or another segment's.
        assert!(matches!(
            parse(&bytes, 8, false),
            Err(Damage::Header { .. })
        ));
    }

    #[test]
    fn a_value_written_in_place_reads_as_one_pushed() {
        let mut a = Group::new();
        a.push(Kind::Delivery, "c", 5, b"value");
        let mut b = Group::new();
        b.push_with::<()>(Kind::Delivery, "c", 5, |buf| {
            buf.extend_from_slice(b"value");
            Ok(())
        })
        .unwrap();
        // A failed value leaves nothing behind.
        assert!(b
            .push_with(Kind::Meta, "x", 1, |buf| {
                buf.push(1);
                Err(())
            })
            .is_err());
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn a_new_segment_cut_in_its_header_is_empty() {
        let h = header(3);
        for end in 0..SEGMENT_HEADER_BYTES {
            let p = parse(&h[..end], 3, true).unwrap();
            assert!(p.records.is_empty());
        }
        assert!(parse(&h[..5], 3, false).is_err());
    }
}
