//! The frames of cross-node evacuation and rebalance (`src/rebalance`):
//! a node's admin thread sends a peer a command ([`RebalanceRequest`]) on
//! the control stream and the peer's admin thread answers
//! ([`RebalanceAnswer`]). Kinds and versioning are `proto`'s.
//!
//! The command and the answer are JSON text (`rebalance::peer`'s
//! `PeerCommand` and `PeerAnswer`): they carry the admin API's own
//! documents (EMQX's parameter bodies, the `status` shape), so one
//! definition serves the API and the wire. Both are bounded by
//! `limits::REBALANCE_PEER_JSON_MAX_BYTES`, checked on decode, and both
//! roots end with [`REBALANCE_MAGIC`] (a truncated body's last bytes could
//! otherwise read as a valid root, as for the clients frames).

use rkyv::bytecheck::Verify;
use rkyv::rancor::{Fallible, Source};

use crate::limits::REBALANCE_PEER_JSON_MAX_BYTES;

/// The last field of every rebalance frame ("RRBL").
pub const REBALANCE_MAGIC: u32 = 0x5252_424c;

/// Asker -> peer.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(bytecheck(verify))]
pub struct RebalanceRequest {
    /// The asker's number for this command (matches the answer).
    pub request: u64,
    /// `rebalance::peer::PeerCommand` as JSON.
    pub command: String,
    /// `REBALANCE_MAGIC`.
    pub magic: u32,
}

impl RebalanceRequest {
    pub fn new(request: u64, command: String) -> RebalanceRequest {
        RebalanceRequest {
            request,
            command,
            magic: REBALANCE_MAGIC,
        }
    }
}

/// Peer -> asker.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(bytecheck(verify))]
pub struct RebalanceAnswer {
    pub request: u64,
    /// `rebalance::peer::PeerAnswer` as JSON.
    pub answer: String,
    /// `REBALANCE_MAGIC`.
    pub magic: u32,
}

impl RebalanceAnswer {
    pub fn new(request: u64, answer: String) -> RebalanceAnswer {
        RebalanceAnswer {
            request,
            answer,
            magic: REBALANCE_MAGIC,
        }
    }
}

/// A rebalance frame whose last field is not `REBALANCE_MAGIC`, or whose
/// JSON is over its limit.
#[derive(Debug)]
enum Refused {
    Magic(u32),
    TooLong(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Magic(m) => write!(
                f,
                "rebalance frame ends with {m:#x}, not {REBALANCE_MAGIC:#x}"
            ),
            Refused::TooLong(n) => write!(
                f,
                "rebalance frame JSON of {n} bytes is over {REBALANCE_PEER_JSON_MAX_BYTES} \
                 (limits::REBALANCE_PEER_JSON_MAX_BYTES)"
            ),
        }
    }
}

impl std::error::Error for Refused {}

fn check<E: Source>(magic: u32, json_len: usize) -> Result<(), E> {
    if magic != REBALANCE_MAGIC {
        return Err(E::new(Refused::Magic(magic)));
    }
    if json_len > REBALANCE_PEER_JSON_MAX_BYTES {
        return Err(E::new(Refused::TooLong(json_len)));
    }
    Ok(())
}

// SAFETY: `verify` only reads fields that bytecheck already checked.
unsafe impl<C> Verify<C> for ArchivedRebalanceRequest
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _: &mut C) -> Result<(), C::Error> {
        check(self.magic.to_native(), self.command.len())
    }
}

// SAFETY: as above.
unsafe impl<C> Verify<C> for ArchivedRebalanceAnswer
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _: &mut C) -> Result<(), C::Error> {
        check(self.magic.to_native(), self.answer.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kind, Message, PROTO_VERSION};
    use super::*;

    #[test]
    fn rebalance_frames_round_trip_and_a_bad_magic_is_refused() {
        let m = Message::RebalanceRequest(RebalanceRequest::new(7, r#"{"op":"status"}"#.into()));
        let body = m.encode().unwrap();
        assert_eq!(
            Message::decode(PROTO_VERSION, kind::RebalanceRequest, &body).unwrap(),
            m
        );
        let a = Message::RebalanceAnswer(RebalanceAnswer::new(7, "{}".into()));
        let body = a.encode().unwrap();
        assert_eq!(
            Message::decode(PROTO_VERSION, kind::RebalanceAnswer, &body).unwrap(),
            a
        );
        let mut bad = RebalanceAnswer::new(1, "{}".into());
        bad.magic = 1;
        let body = Message::RebalanceAnswer(bad).encode().unwrap();
        assert!(Message::decode(PROTO_VERSION, kind::RebalanceAnswer, &body).is_err());
        let long = RebalanceRequest::new(1, "x".repeat(REBALANCE_PEER_JSON_MAX_BYTES + 1));
        let body = Message::RebalanceRequest(long).encode().unwrap();
        assert!(Message::decode(PROTO_VERSION, kind::RebalanceRequest, &body).is_err());
    }
}
