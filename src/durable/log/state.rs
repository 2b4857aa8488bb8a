//! A delivery's state record (`Kind::DeliveryState`): what changes when a
//! stored delivery gets its packet id, is sent or is PUBREC'd, written on
//! its own instead of the whole message again (sans-IO). Six bytes:
//! version, tag (0 queued, 1 inflight), packet id (u16 LE), awaiting
//! (0 PUBACK, 1 PUBREC, 2 PUBCOMP), transmitted (0 or 1). The index keeps
//! the bytes of each live one, so compaction and restore never read it
//! back from its segment.

use crate::durable::DeliveryState;
use crate::session::snapshot::AwaitingSnapshot;

pub const STATE_VERSION: u8 = 1;
pub type StateBytes = [u8; 6];

pub fn encode(state: DeliveryState) -> StateBytes {
    match state {
        DeliveryState::Queued => [STATE_VERSION, 0, 0, 0, 0, 0],
        DeliveryState::Inflight {
            packet_id,
            awaiting,
            transmitted,
        } => {
            let [lo, hi] = packet_id.to_le_bytes();
            let awaiting = match awaiting {
                AwaitingSnapshot::PubAck => 0,
                AwaitingSnapshot::PubRec => 1,
                AwaitingSnapshot::PubComp => 2,
            };
            [STATE_VERSION, 1, lo, hi, awaiting, u8::from(transmitted)]
        }
    }
}

/// The state a record holds; `Err` says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<DeliveryState, String> {
    let b: StateBytes = bytes
        .try_into()
        .map_err(|_| format!("a state record of {} bytes, not 6", bytes.len()))?;
    if b[0] != STATE_VERSION {
        return Err(format!(
            "state record version {}, this build reads {STATE_VERSION}",
            b[0]
        ));
    }
    match b[1] {
        0 => Ok(DeliveryState::Queued),
        1 => Ok(DeliveryState::Inflight {
            packet_id: u16::from_le_bytes([b[2], b[3]]),
            awaiting: match b[4] {
                0 => AwaitingSnapshot::PubAck,
                1 => AwaitingSnapshot::PubRec,
                2 => AwaitingSnapshot::PubComp,
                x => return Err(format!("state record awaiting {x}")),
            },
            transmitted: match b[5] {
                0 => false,
                1 => true,
                x => return Err(format!("state record transmitted {x}")),
            },
        }),
        x => Err(format!("state record tag {x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state comes back; a wrong length, version, tag or field is
    /// refused. Fails if a field is dropped or misread.
    #[test]
    fn states_round_trip_and_bad_bytes_are_refused() {
        let states = [
            DeliveryState::Queued,
            DeliveryState::Inflight {
                packet_id: 0xBEEF,
                awaiting: AwaitingSnapshot::PubAck,
                transmitted: false,
            },
            DeliveryState::Inflight {
                packet_id: 1,
                awaiting: AwaitingSnapshot::PubRec,
                transmitted: true,
            },
            DeliveryState::Inflight {
                packet_id: 65535,
                awaiting: AwaitingSnapshot::PubComp,
                transmitted: true,
            },
        ];
        for s in states {
            assert_eq!(decode(&encode(s)), Ok(s));
        }
        assert!(decode(&[1, 0, 0, 0, 0]).is_err());
        assert!(decode(&[2, 0, 0, 0, 0, 0]).is_err());
        assert!(decode(&[1, 2, 0, 0, 0, 0]).is_err());
        assert!(decode(&[1, 1, 0, 0, 3, 0]).is_err());
        assert!(decode(&[1, 1, 0, 0, 0, 2]).is_err());
    }
}
