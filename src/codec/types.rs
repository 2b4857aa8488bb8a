//! MQTT 3.1.1 / 5.0 packet types: plain data, no I/O.
//!
//! One struct per packet kind and one property struct per kind of property
//! set, so a property that the spec does not allow on a packet cannot even be
//! represented. v3.1.1 packets use the same structs with empty properties and
//! reason codes mapped as documented on each field.

use bytes::Bytes;
use smallvec::SmallVec;
use std::fmt;

use super::bytestr::ByteStr;

/// Protocol level announced in CONNECT; fixed for the life of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1 ("MQIsdp", level 3): handled with 3.1.1 semantics.
    V31,
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5.0 (level 5).
    V5,
}

impl Protocol {
    pub fn is_v5(self) -> bool {
        matches!(self, Protocol::V5)
    }
    pub fn level(self) -> u8 {
        match self {
            Protocol::V31 => 3,
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A reason code (v5) or, on a v3.1.1 CONNACK, the return code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: ReasonCode = ReasonCode(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// SUBACK failure code shared by v3.1.1 and v5.
    pub const SUBACK_FAILURE: ReasonCode = ReasonCode(0x80);

    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode(0x{:02X})", self.0)
    }
}

/// v3.1.1 CONNACK return codes (carried in `ConnAck::reason_code`).
pub mod connack_v3 {
    use super::ReasonCode;
    pub const ACCEPTED: ReasonCode = ReasonCode(0);
    pub const UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode = ReasonCode(1);
    pub const IDENTIFIER_REJECTED: ReasonCode = ReasonCode(2);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(3);
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(4);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(5);
}

pub type UserProperties = Vec<(ByteStr, ByteStr)>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<u8>,
    pub request_problem_information: Option<u8>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval_s: Option<u32>,
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval_s: Option<u32>,
    pub content_type: Option<ByteStr>,
    pub response_topic: Option<ByteStr>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<ByteStr>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifiers_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
    pub server_keep_alive_s: Option<u16>,
    pub response_information: Option<ByteStr>,
    pub server_reference: Option<ByteStr>,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval_s: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<ByteStr>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// Client to server: must be empty. Server to client: one per matching
    /// subscription that carried an identifier.
    pub subscription_identifiers: SmallVec<[u32; 1]>,
    pub content_type: Option<ByteStr>,
}

/// What a PUBLISH without properties reads as (see [`Publish::properties`]).
pub static PUBLISH_PROPERTIES_EMPTY: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval_s: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: SmallVec::new_const(),
    content_type: None,
};

impl PublishProperties {
    /// The boxed form [`Publish::properties`] holds: `None` when empty.
    pub fn boxed(self) -> Option<Box<PublishProperties>> {
        (!self.is_empty()).then(|| Box::new(self))
    }

    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval_s.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
    pub server_reference: Option<ByteStr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: Protocol,
    /// Clean Start (v5) / Clean Session (v3.1.1).
    pub clean_start: bool,
    pub keep_alive_s: u16,
    /// May be empty: the server assigns one (v5) or applies the v3.1.1 rules.
    pub client_id: ByteStr,
    pub will: Option<Will>,
    pub username: Option<ByteStr>,
    pub password: Option<Bytes>,
    pub properties: ConnectProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    pub session_present: bool,
    /// v5 reason code, or v3.1.1 return code (see [`connack_v3`]).
    pub reason_code: ReasonCode,
    pub properties: ConnAckProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in v5 when a topic alias stands for it.
    pub topic: ByteStr,
    /// 0 for QoS 0; non-zero otherwise (the decoder enforces it).
    pub packet_id: u16,
    pub payload: Bytes,
    /// `None` when the packet has no properties (every v3.1.1 PUBLISH and
    /// most v5 ones; never `Some` of an empty set). Boxed so that a
    /// `Publish`, and every `Packet`, moves as a few words on the hot path.
    pub properties: Option<Box<PublishProperties>>,
}

impl Publish {
    /// The properties, empty ones when there are none.
    pub fn properties(&self) -> &PublishProperties {
        self.properties
            .as_deref()
            .unwrap_or(&PUBLISH_PROPERTIES_EMPTY)
    }

    /// This packet as the borrowed form the encoder works on.
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            payload: &self.payload,
            properties: self.properties.as_deref(),
        }
    }
}

/// A PUBLISH to encode, borrowing its parts from wherever they live: the
/// outbound path encodes a routed message for each subscriber from the
/// shared message and the subscriber's own fields, without building a
/// [`Publish`] (and taking two reference counts) per delivery. Same field
/// meanings as [`Publish`].
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: u16,
    pub payload: &'a [u8],
    pub properties: Option<&'a PublishProperties>,
}

impl PublishRef<'_> {
    /// The properties, empty ones when there are none.
    pub fn properties(&self) -> &PublishProperties {
        self.properties.unwrap_or(&PUBLISH_PROPERTIES_EMPTY)
    }
}

/// Which of the four packets that share [`PubAck`]'s shape.
// Named after the MQTT packets.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubAck {
    pub packet_id: u16,
    /// Always SUCCESS on v3.1.1.
    pub reason_code: ReasonCode,
    pub properties: AckProperties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained at subscribe; 1: only if the subscription is new; 2: never.
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(ByteStr, SubscriptionOptions)>,
    pub properties: SubscribeProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    /// One per filter: granted QoS (0..2) or an error code (>= 0x80).
    pub reason_codes: Vec<ReasonCode>,
    pub properties: AckProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<ByteStr>,
    pub properties: UnsubscribeProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    /// One per filter on v5; not encoded on v3.1.1.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: AckProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: DisconnectProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Rare kinds with large property sets are boxed, so a `Packet` stays
/// small (96 bytes) and cheap to move on the PUBLISH and ack paths.
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Box<Disconnect>),
    Auth(Box<Auth>),
}

impl Packet {
    /// Name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}
