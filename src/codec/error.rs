//! Decode and encode errors.
//!
//! A decode error is always the peer's fault and closes that one connection;
//! the helpers below tell the session which reason code (v5) or return code
//! (v3.1.1 CONNACK) to send before closing.

use super::types::{connack_v3, Protocol, ReasonCode};

/// Why bytes from the peer are not an acceptable MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not follow the packet grammar (MQTT 5.0 section 4.13:
    /// "Malformed Packet"); the text names the field or rule.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed, but breaks a protocol rule (a duplicated property, a
    /// zero packet identifier, a packet the sender may not send...).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Fixed header plus remaining length exceeds the configured cap. Raised
    /// from the fixed header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    /// CONNECT with a known protocol name but a level this broker does not
    /// speak (the raw level byte, bridge bit included).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT whose protocol name is neither "MQTT" nor "MQIsdp".
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// A topic name (PUBLISH or will) that is empty or contains a wildcard.
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// An empty topic filter in SUBSCRIBE or UNSUBSCRIBE.
    #[error("invalid topic filter")]
    TopicFilterInvalid,
    /// Payload Format Indicator says UTF-8 but the payload is not.
    #[error("payload is not UTF-8 although its format indicator says so")]
    PayloadFormatInvalid,
    /// v3.1 empty client identifier, or v3.1.1 empty one without Clean
    /// Session (MQTT-3.1.3-8).
    #[error("client identifier not valid")]
    ClientIdNotValid,
    /// An error found inside a CONNECT after its protocol level was read,
    /// so the session knows which CONNACK format the client understands.
    #[error("in {protocol:?} CONNECT: {error}")]
    InConnect {
        protocol: Protocol,
        error: Box<DecodeError>,
    },
}

impl DecodeError {
    /// The error without its CONNECT wrapper.
    pub fn cause(&self) -> &DecodeError {
        match self {
            DecodeError::InConnect { error, .. } => error.cause(),
            other => other,
        }
    }

    /// v5 reason code for the DISCONNECT (or CONNACK, for CONNECT errors)
    /// sent before closing.
    pub fn reason_code(&self) -> ReasonCode {
        match self.cause() {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            // No CONNACK is sent for it (see `protocol_hint`); the code only
            // names the fault in logs.
            DecodeError::InvalidProtocolName => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicFilterInvalid => ReasonCode::TOPIC_FILTER_INVALID,
            DecodeError::PayloadFormatInvalid => ReasonCode::PAYLOAD_FORMAT_INVALID,
            DecodeError::ClientIdNotValid => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            DecodeError::InConnect { .. } => unreachable!("cause() unwraps InConnect"),
        }
    }

    /// For CONNECT errors that v3.1.1 answers with a CONNACK return code
    /// before closing (MQTT-3.1.2-2, MQTT-3.1.3-8); `None`: just close.
    pub fn connack_v3(&self) -> Option<ReasonCode> {
        match self.cause() {
            DecodeError::UnsupportedProtocolVersion(_) => {
                Some(connack_v3::UNACCEPTABLE_PROTOCOL_VERSION)
            }
            DecodeError::ClientIdNotValid => Some(connack_v3::IDENTIFIER_REJECTED),
            _ => None,
        }
    }

    /// Which protocol the client speaks, for errors in a CONNECT whose level
    /// byte was read: the session answers with a CONNACK in that format (v5:
    /// `reason_code()`, v3.x: `connack_v3()` if any) and closes. An
    /// unsupported level gets a v5 CONNACK if the level byte was 5 or more;
    /// a lower level gets the v3.1.1 answer, the one older clients understand.
    /// `None` for every other error: close without CONNACK.
    pub fn protocol_hint(&self) -> Option<Protocol> {
        match self {
            DecodeError::InConnect { protocol, .. } => Some(*protocol),
            // Level 5 (a v5 CONNECT we could not parse) or a level newer than
            // any we know: the client speaks v5 or later, so answer 0x84 in
            // the v5 format.
            DecodeError::UnsupportedProtocolVersion(l) if *l >= 5 => Some(Protocol::V5),
            DecodeError::UnsupportedProtocolVersion(_) => Some(Protocol::V311),
            _ => None,
        }
    }
}

/// Why a packet cannot be encoded. Always a bug in the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Remaining length above 268,435,455, the most the header can express.
    #[error("remaining length {remaining_len} exceeds 268435455 bytes")]
    PacketTooLarge { remaining_len: usize },
    /// A string or binary field longer than its 16-bit length prefix allows.
    #[error("{0} is longer than 65535 bytes")]
    TooLong(&'static str),
    /// PUBLISH with QoS > 0, SUBSCRIBE or UNSUBSCRIBE with packet id 0.
    #[error("{0} needs a non-zero packet identifier")]
    PacketIdZero(&'static str),
    /// A packet kind that the protocol version lacks (AUTH before v5).
    #[error("{0} does not exist before MQTT 5")]
    NotInProtocol(&'static str),
    /// Any other field the peer would reject as malformed.
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
}
