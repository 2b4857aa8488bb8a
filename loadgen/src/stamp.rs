//! The timestamp every load-generator payload starts with.
//!
//! Layout (little endian, [`STAMP_LEN`] bytes), then zero padding up to the
//! payload size:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2   | magic `0x4C47` ("LG"): tells our payloads from anyone else's |
//! | 2..4   | run id: random per process, so messages left over from an earlier run (queued in a persistent session, retained) are not counted as this run's |
//! | 4..8   | publisher id: index of the publisher in this run, 0-based |
//! | 8..16  | sequence number: 0, 1, 2, ... per publisher |
//! | 16..24 | send time: [`crate::clock::now_ns`] when the PUBLISH was written to the socket |

pub const STAMP_LEN: usize = 24;
pub const MAGIC: u16 = 0x4C47;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub run_id: u16,
    pub publisher_id: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// Write into the first [`STAMP_LEN`] bytes of `out` (a payload at least
    /// that long; the caller checked the payload size once).
    #[inline]
    pub fn write(&self, out: &mut [u8]) {
        let out = &mut out[..STAMP_LEN];
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2..4].copy_from_slice(&self.run_id.to_le_bytes());
        out[4..8].copy_from_slice(&self.publisher_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// `None` when the payload is too short or lacks the magic.
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let p = payload.get(..STAMP_LEN)?;
        if u16::from_le_bytes([p[0], p[1]]) != MAGIC {
            return None;
        }
        Some(Stamp {
            run_id: u16::from_le_bytes([p[2], p[3]]),
            publisher_id: u32::from_le_bytes(p[4..8].try_into().unwrap()),
            seq: u64::from_le_bytes(p[8..16].try_into().unwrap()),
            sent_ns: u64::from_le_bytes(p[16..24].try_into().unwrap()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let s = Stamp {
            run_id: 0xBEEF,
            publisher_id: 123_456,
            seq: u64::MAX - 3,
            sent_ns: 987_654_321_012,
        };
        let mut payload = vec![0u8; 64];
        s.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(s));
        assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0));
        // Exactly STAMP_LEN is enough.
        assert_eq!(Stamp::read(&payload[..STAMP_LEN]), Some(s));
    }

    #[test]
    fn rejects_short_and_foreign_payloads() {
        let mut payload = vec![0u8; STAMP_LEN];
        Stamp {
            run_id: 1,
            publisher_id: 2,
            seq: 3,
            sent_ns: 4,
        }
        .write(&mut payload);
        assert!(Stamp::read(&payload[..STAMP_LEN - 1]).is_none());
        assert!(Stamp::read(b"").is_none());
        payload[0] ^= 0xFF;
        assert!(Stamp::read(&payload).is_none());
        assert!(Stamp::read(b"hello world, this is not a stamp").is_none());
    }

    #[test]
    fn layout_is_little_endian_at_fixed_offsets() {
        let mut p = [0u8; STAMP_LEN];
        Stamp {
            run_id: 0x0102,
            publisher_id: 0x03040506,
            seq: 7,
            sent_ns: 8,
        }
        .write(&mut p);
        assert_eq!(&p[0..2], b"GL");
        assert_eq!(&p[2..4], &[0x02, 0x01]);
        assert_eq!(&p[4..8], &[0x06, 0x05, 0x04, 0x03]);
        assert_eq!(p[8], 7);
        assert_eq!(p[16], 8);
    }
}
