//! v5 properties (MQTT 5.0 section 2.2.2): one decoder, sizer, checker and
//! writer per property set. Writers emit properties in struct field order,
//! which is also the order the common JS encoder uses, so byte-level test
//! vectors match.
//!
//! Decoding rules applied to every set: an identifier not allowed on the
//! packet is malformed (2.2.2.2), a repeated property other than User
//! Property (and Subscription Identifier on server-to-client PUBLISH) is a
//! protocol error, and the property section must fit inside the packet.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::bytestr::ByteStr;
use super::error::{DecodeError, EncodeError};
use super::types::*;
use super::wire::{
    check_field_len, field_len, put_binary, put_vbi, vbi_len, Reader, VARIABLE_BYTE_INTEGER_MAX,
};

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// A single-valued property's value: how it is sized, written, read and
/// checked before encoding.
trait Value: Sized {
    fn wire_len(&self) -> usize;
    fn put(&self, out: &mut BytesMut);
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    fn check(&self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl Value for u8 {
    fn wire_len(&self) -> usize {
        1
    }
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(*self)
    }
    fn read(r: &mut Reader) -> Result<u8, DecodeError> {
        r.u8("property value")
    }
}

impl Value for u16 {
    fn wire_len(&self) -> usize {
        2
    }
    fn put(&self, out: &mut BytesMut) {
        out.put_u16(*self)
    }
    fn read(r: &mut Reader) -> Result<u16, DecodeError> {
        r.u16("property value")
    }
}

impl Value for u32 {
    fn wire_len(&self) -> usize {
        4
    }
    fn put(&self, out: &mut BytesMut) {
        out.put_u32(*self)
    }
    fn read(r: &mut Reader) -> Result<u32, DecodeError> {
        r.u32("property value")
    }
}

impl Value for ByteStr {
    fn wire_len(&self) -> usize {
        field_len(self.as_bytes())
    }
    fn put(&self, out: &mut BytesMut) {
        put_binary(out, self.as_bytes())
    }
    fn read(r: &mut Reader) -> Result<ByteStr, DecodeError> {
        r.string("property string")
    }
    fn check(&self) -> Result<(), EncodeError> {
        check_field_len(self.as_bytes(), "property string")
    }
}

impl Value for Bytes {
    fn wire_len(&self) -> usize {
        field_len(self)
    }
    fn put(&self, out: &mut BytesMut) {
        put_binary(out, self)
    }
    fn read(r: &mut Reader) -> Result<Bytes, DecodeError> {
        r.binary("property binary data")
    }
    fn check(&self) -> Result<(), EncodeError> {
        check_field_len(self, "property binary data")
    }
}

// ---- sizing and writing helpers -------------------------------------------

fn opt_len<T: Value>(value: &Option<T>) -> usize {
    value.as_ref().map_or(0, |v| 1 + v.wire_len())
}

fn put_opt<T: Value>(out: &mut BytesMut, id: u8, value: &Option<T>) {
    if let Some(v) = value {
        out.put_u8(id);
        v.put(out);
    }
}

fn check_opt<T: Value>(value: &Option<T>) -> Result<(), EncodeError> {
    value.as_ref().map_or(Ok(()), Value::check)
}

fn user_len(pairs: &UserProperties) -> usize {
    pairs
        .iter()
        .map(|(k, v)| 1 + field_len(k.as_bytes()) + field_len(v.as_bytes()))
        .sum()
}

fn put_user(out: &mut BytesMut, pairs: &UserProperties) {
    for (k, v) in pairs {
        out.put_u8(USER_PROPERTY);
        put_binary(out, k.as_bytes());
        put_binary(out, v.as_bytes());
    }
}

fn check_user(pairs: &UserProperties) -> Result<(), EncodeError> {
    for (k, v) in pairs {
        check_field_len(k.as_bytes(), "user property")?;
        check_field_len(v.as_bytes(), "user property")?;
    }
    Ok(())
}

fn check_subscription_identifier(id: u32) -> Result<(), EncodeError> {
    if id == 0 || id as usize > VARIABLE_BYTE_INTEGER_MAX {
        return Err(EncodeError::Invalid(
            "subscription identifier outside 1..=268435455",
        ));
    }
    Ok(())
}

/// Property length prefix plus the properties.
pub(crate) fn section_len(props_len: usize) -> usize {
    vbi_len(props_len) + props_len
}

// ---- decoding helpers ---------------------------------------------------

/// Reads the property length and hands each property identifier, with a
/// reader positioned at its value, to `on_property`.
fn read_section(
    r: &mut Reader,
    mut on_property: impl FnMut(u8, &mut Reader) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.vbi("property length")? as usize;
    let mut section = Reader::new(r.take(len, "property length exceeds packet")?);
    while !section.is_empty() {
        let id = section.vbi("property identifier")?;
        // Every identifier defined so far is below 0x80; a longer one is
        // unknown, which 2.2.2.2 calls malformed.
        let id = u8::try_from(id).map_err(|_| not_allowed())?;
        on_property(id, &mut section)?;
    }
    Ok(())
}

fn not_allowed() -> DecodeError {
    DecodeError::Malformed("property not allowed on this packet")
}

fn set_once<T: Value>(slot: &mut Option<T>, r: &mut Reader) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears twice"));
    }
    *slot = Some(T::read(r)?);
    Ok(())
}

/// A byte property whose only values are 0 and 1.
fn set_flag(slot: &mut Option<u8>, r: &mut Reader) -> Result<(), DecodeError> {
    set_once(slot, r)?;
    if *slot > Some(1) {
        return Err(DecodeError::Protocol("property value must be 0 or 1"));
    }
    Ok(())
}

/// A two- or four-byte property for which 0 is a protocol error.
fn set_nonzero<T: Value + Default + PartialEq>(
    slot: &mut Option<T>,
    r: &mut Reader,
    what: &'static str,
) -> Result<(), DecodeError> {
    set_once(slot, r)?;
    if *slot == Some(T::default()) {
        return Err(DecodeError::Protocol(what));
    }
    Ok(())
}

fn push_user(pairs: &mut UserProperties, r: &mut Reader) -> Result<(), DecodeError> {
    let key = r.string("user property name")?;
    let value = r.string("user property value")?;
    pairs.push((key, value));
    Ok(())
}

fn read_subscription_identifier(r: &mut Reader) -> Result<u32, DecodeError> {
    let id = r.vbi("subscription identifier")?;
    if id == 0 {
        return Err(DecodeError::Protocol("subscription identifier 0"));
    }
    Ok(id)
}

/// A Response Topic is a topic name: no wildcards (MQTT-3.3.2-14).
fn set_response_topic(slot: &mut Option<ByteStr>, r: &mut Reader) -> Result<(), DecodeError> {
    set_once(slot, r)?;
    if slot.as_deref().is_some_and(has_wildcard) {
        return Err(DecodeError::Protocol("response topic contains a wildcard"));
    }
    Ok(())
}

pub(crate) fn has_wildcard(topic: &str) -> bool {
    topic.bytes().any(|b| b == b'+' || b == b'#')
}

// ---- CONNECT ------------------------------------------------------------

pub(crate) fn decode_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    read_section(r, |id, r| match id {
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval_s, r),
        RECEIVE_MAXIMUM => set_nonzero(&mut p.receive_maximum, r, "receive maximum 0"),
        MAXIMUM_PACKET_SIZE => set_nonzero(&mut p.maximum_packet_size, r, "maximum packet size 0"),
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r),
        REQUEST_RESPONSE_INFORMATION => set_flag(&mut p.request_response_information, r),
        REQUEST_PROBLEM_INFORMATION => set_flag(&mut p.request_problem_information, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r),
        _ => Err(not_allowed()),
    })?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::Protocol(
            "authentication data without authentication method",
        ));
    }
    Ok(p)
}

pub(crate) fn connect_len(p: &ConnectProperties) -> usize {
    opt_len(&p.session_expiry_interval_s)
        + opt_len(&p.receive_maximum)
        + opt_len(&p.maximum_packet_size)
        + opt_len(&p.topic_alias_maximum)
        + opt_len(&p.request_response_information)
        + opt_len(&p.request_problem_information)
        + user_len(&p.user_properties)
        + opt_len(&p.authentication_method)
        + opt_len(&p.authentication_data)
}

pub(crate) fn check_connect(p: &ConnectProperties) -> Result<(), EncodeError> {
    check_user(&p.user_properties)?;
    check_opt(&p.authentication_method)?;
    check_opt(&p.authentication_data)
}

pub(crate) fn put_connect(out: &mut BytesMut, p: &ConnectProperties) {
    put_vbi(out, connect_len(p));
    put_opt(out, SESSION_EXPIRY_INTERVAL, &p.session_expiry_interval_s);
    put_opt(out, RECEIVE_MAXIMUM, &p.receive_maximum);
    put_opt(out, MAXIMUM_PACKET_SIZE, &p.maximum_packet_size);
    put_opt(out, TOPIC_ALIAS_MAXIMUM, &p.topic_alias_maximum);
    put_opt(
        out,
        REQUEST_RESPONSE_INFORMATION,
        &p.request_response_information,
    );
    put_opt(
        out,
        REQUEST_PROBLEM_INFORMATION,
        &p.request_problem_information,
    );
    put_user(out, &p.user_properties);
    put_opt(out, AUTHENTICATION_METHOD, &p.authentication_method);
    put_opt(out, AUTHENTICATION_DATA, &p.authentication_data);
}

// ---- Will ---------------------------------------------------------------

pub(crate) fn decode_will(r: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    read_section(r, |id, r| match id {
        WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval_s, r),
        PAYLOAD_FORMAT_INDICATOR => set_flag(&mut p.payload_format_indicator, r),
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval_s, r),
        CONTENT_TYPE => set_once(&mut p.content_type, r),
        RESPONSE_TOPIC => set_response_topic(&mut p.response_topic, r),
        CORRELATION_DATA => set_once(&mut p.correlation_data, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn will_len(p: &WillProperties) -> usize {
    opt_len(&p.will_delay_interval_s)
        + opt_len(&p.payload_format_indicator)
        + opt_len(&p.message_expiry_interval_s)
        + opt_len(&p.content_type)
        + opt_len(&p.response_topic)
        + opt_len(&p.correlation_data)
        + user_len(&p.user_properties)
}

pub(crate) fn check_will(p: &WillProperties) -> Result<(), EncodeError> {
    check_opt(&p.content_type)?;
    check_opt(&p.response_topic)?;
    check_opt(&p.correlation_data)?;
    check_user(&p.user_properties)
}

pub(crate) fn put_will(out: &mut BytesMut, p: &WillProperties) {
    put_vbi(out, will_len(p));
    put_opt(out, WILL_DELAY_INTERVAL, &p.will_delay_interval_s);
    put_opt(out, PAYLOAD_FORMAT_INDICATOR, &p.payload_format_indicator);
    put_opt(out, MESSAGE_EXPIRY_INTERVAL, &p.message_expiry_interval_s);
    put_opt(out, CONTENT_TYPE, &p.content_type);
    put_opt(out, RESPONSE_TOPIC, &p.response_topic);
    put_opt(out, CORRELATION_DATA, &p.correlation_data);
    put_user(out, &p.user_properties);
}

// ---- CONNACK ------------------------------------------------------------

pub(crate) fn decode_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    read_section(r, |id, r| match id {
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval_s, r),
        RECEIVE_MAXIMUM => set_nonzero(&mut p.receive_maximum, r, "receive maximum 0"),
        MAXIMUM_QOS => set_flag(&mut p.maximum_qos, r),
        RETAIN_AVAILABLE => set_flag(&mut p.retain_available, r),
        MAXIMUM_PACKET_SIZE => set_nonzero(&mut p.maximum_packet_size, r, "maximum packet size 0"),
        ASSIGNED_CLIENT_IDENTIFIER => set_once(&mut p.assigned_client_identifier, r),
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r),
        REASON_STRING => set_once(&mut p.reason_string, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        WILDCARD_SUBSCRIPTION_AVAILABLE => set_flag(&mut p.wildcard_subscription_available, r),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_flag(&mut p.subscription_identifiers_available, r),
        SHARED_SUBSCRIPTION_AVAILABLE => set_flag(&mut p.shared_subscription_available, r),
        SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive_s, r),
        RESPONSE_INFORMATION => set_once(&mut p.response_information, r),
        SERVER_REFERENCE => set_once(&mut p.server_reference, r),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn connack_len(p: &ConnAckProperties) -> usize {
    opt_len(&p.session_expiry_interval_s)
        + opt_len(&p.receive_maximum)
        + opt_len(&p.maximum_qos)
        + opt_len(&p.retain_available)
        + opt_len(&p.maximum_packet_size)
        + opt_len(&p.assigned_client_identifier)
        + opt_len(&p.topic_alias_maximum)
        + opt_len(&p.reason_string)
        + user_len(&p.user_properties)
        + opt_len(&p.wildcard_subscription_available)
        + opt_len(&p.subscription_identifiers_available)
        + opt_len(&p.shared_subscription_available)
        + opt_len(&p.server_keep_alive_s)
        + opt_len(&p.response_information)
        + opt_len(&p.server_reference)
        + opt_len(&p.authentication_method)
        + opt_len(&p.authentication_data)
}

pub(crate) fn check_connack(p: &ConnAckProperties) -> Result<(), EncodeError> {
    check_opt(&p.assigned_client_identifier)?;
    check_opt(&p.reason_string)?;
    check_user(&p.user_properties)?;
    check_opt(&p.response_information)?;
    check_opt(&p.server_reference)?;
    check_opt(&p.authentication_method)?;
    check_opt(&p.authentication_data)
}

pub(crate) fn put_connack(out: &mut BytesMut, p: &ConnAckProperties) {
    put_vbi(out, connack_len(p));
    put_opt(out, SESSION_EXPIRY_INTERVAL, &p.session_expiry_interval_s);
    put_opt(out, RECEIVE_MAXIMUM, &p.receive_maximum);
    put_opt(out, MAXIMUM_QOS, &p.maximum_qos);
    put_opt(out, RETAIN_AVAILABLE, &p.retain_available);
    put_opt(out, MAXIMUM_PACKET_SIZE, &p.maximum_packet_size);
    put_opt(
        out,
        ASSIGNED_CLIENT_IDENTIFIER,
        &p.assigned_client_identifier,
    );
    put_opt(out, TOPIC_ALIAS_MAXIMUM, &p.topic_alias_maximum);
    put_opt(out, REASON_STRING, &p.reason_string);
    put_user(out, &p.user_properties);
    put_opt(
        out,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        &p.wildcard_subscription_available,
    );
    put_opt(
        out,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        &p.subscription_identifiers_available,
    );
    put_opt(
        out,
        SHARED_SUBSCRIPTION_AVAILABLE,
        &p.shared_subscription_available,
    );
    put_opt(out, SERVER_KEEP_ALIVE, &p.server_keep_alive_s);
    put_opt(out, RESPONSE_INFORMATION, &p.response_information);
    put_opt(out, SERVER_REFERENCE, &p.server_reference);
    put_opt(out, AUTHENTICATION_METHOD, &p.authentication_method);
    put_opt(out, AUTHENTICATION_DATA, &p.authentication_data);
}

// ---- PUBLISH ------------------------------------------------------------

/// `from_client`: a client must not send Subscription Identifiers
/// (MQTT-3.3.4-6); a server sends one per matching subscription. `None`
/// for an empty section, the common case, which allocates nothing.
pub(crate) fn decode_publish(
    r: &mut Reader,
    from_client: bool,
) -> Result<Option<Box<PublishProperties>>, DecodeError> {
    if r.first() == Some(0) {
        r.u8("property length")?;
        return Ok(None);
    }
    let mut p = PublishProperties::default();
    read_section(r, |id, r| match id {
        PAYLOAD_FORMAT_INDICATOR => set_flag(&mut p.payload_format_indicator, r),
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval_s, r),
        // 0 is refused by the session with 0x94 (Topic Alias invalid), not here.
        TOPIC_ALIAS => set_once(&mut p.topic_alias, r),
        RESPONSE_TOPIC => set_response_topic(&mut p.response_topic, r),
        CORRELATION_DATA => set_once(&mut p.correlation_data, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        SUBSCRIPTION_IDENTIFIER if from_client => Err(DecodeError::Protocol(
            "subscription identifier in a PUBLISH from a client",
        )),
        SUBSCRIPTION_IDENTIFIER => {
            let id = read_subscription_identifier(r)?;
            p.subscription_identifiers.push(id);
            Ok(())
        }
        CONTENT_TYPE => set_once(&mut p.content_type, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p.boxed())
}

pub(crate) fn publish_len(p: &PublishProperties) -> usize {
    opt_len(&p.payload_format_indicator)
        + opt_len(&p.message_expiry_interval_s)
        + opt_len(&p.topic_alias)
        + opt_len(&p.response_topic)
        + opt_len(&p.correlation_data)
        + user_len(&p.user_properties)
        + subscription_identifiers_len(&p.subscription_identifiers)
        + opt_len(&p.content_type)
}

fn subscription_identifiers_len(ids: &SmallVec<[u32; 1]>) -> usize {
    ids.iter().map(|&id| 1 + vbi_len(id as usize)).sum()
}

pub(crate) fn check_publish(p: &PublishProperties) -> Result<(), EncodeError> {
    check_opt(&p.response_topic)?;
    check_opt(&p.correlation_data)?;
    check_user(&p.user_properties)?;
    for &id in &p.subscription_identifiers {
        check_subscription_identifier(id)?;
    }
    check_opt(&p.content_type)
}

pub(crate) fn put_publish(out: &mut BytesMut, p: &PublishProperties) {
    put_vbi(out, publish_len(p));
    put_opt(out, PAYLOAD_FORMAT_INDICATOR, &p.payload_format_indicator);
    put_opt(out, MESSAGE_EXPIRY_INTERVAL, &p.message_expiry_interval_s);
    put_opt(out, TOPIC_ALIAS, &p.topic_alias);
    put_opt(out, RESPONSE_TOPIC, &p.response_topic);
    put_opt(out, CORRELATION_DATA, &p.correlation_data);
    put_user(out, &p.user_properties);
    for &id in &p.subscription_identifiers {
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_vbi(out, id as usize);
    }
    put_opt(out, CONTENT_TYPE, &p.content_type);
}

// ---- PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK --------------------

pub(crate) fn decode_ack(r: &mut Reader) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    read_section(r, |id, r| match id {
        REASON_STRING => set_once(&mut p.reason_string, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn ack_len(p: &AckProperties) -> usize {
    opt_len(&p.reason_string) + user_len(&p.user_properties)
}

pub(crate) fn ack_is_empty(p: &AckProperties) -> bool {
    p.reason_string.is_none() && p.user_properties.is_empty()
}

pub(crate) fn check_ack(p: &AckProperties) -> Result<(), EncodeError> {
    check_opt(&p.reason_string)?;
    check_user(&p.user_properties)
}

pub(crate) fn put_ack(out: &mut BytesMut, p: &AckProperties) {
    put_vbi(out, ack_len(p));
    put_opt(out, REASON_STRING, &p.reason_string);
    put_user(out, &p.user_properties);
}

// ---- SUBSCRIBE ----------------------------------------------------------

pub(crate) fn decode_subscribe(r: &mut Reader) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    read_section(r, |id, r| match id {
        SUBSCRIPTION_IDENTIFIER if p.subscription_identifier.is_some() => {
            Err(DecodeError::Protocol("property appears twice"))
        }
        SUBSCRIPTION_IDENTIFIER => {
            p.subscription_identifier = Some(read_subscription_identifier(r)?);
            Ok(())
        }
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn subscribe_len(p: &SubscribeProperties) -> usize {
    p.subscription_identifier
        .map_or(0, |id| 1 + vbi_len(id as usize))
        + user_len(&p.user_properties)
}

pub(crate) fn check_subscribe(p: &SubscribeProperties) -> Result<(), EncodeError> {
    if let Some(id) = p.subscription_identifier {
        check_subscription_identifier(id)?;
    }
    check_user(&p.user_properties)
}

pub(crate) fn put_subscribe(out: &mut BytesMut, p: &SubscribeProperties) {
    put_vbi(out, subscribe_len(p));
    if let Some(id) = p.subscription_identifier {
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_vbi(out, id as usize);
    }
    put_user(out, &p.user_properties);
}

// ---- UNSUBSCRIBE --------------------------------------------------------

pub(crate) fn decode_unsubscribe(r: &mut Reader) -> Result<UnsubscribeProperties, DecodeError> {
    let mut p = UnsubscribeProperties::default();
    read_section(r, |id, r| match id {
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn unsubscribe_len(p: &UnsubscribeProperties) -> usize {
    user_len(&p.user_properties)
}

pub(crate) fn check_unsubscribe(p: &UnsubscribeProperties) -> Result<(), EncodeError> {
    check_user(&p.user_properties)
}

pub(crate) fn put_unsubscribe(out: &mut BytesMut, p: &UnsubscribeProperties) {
    put_vbi(out, unsubscribe_len(p));
    put_user(out, &p.user_properties);
}

// ---- DISCONNECT ---------------------------------------------------------

pub(crate) fn decode_disconnect(r: &mut Reader) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    read_section(r, |id, r| match id {
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval_s, r),
        REASON_STRING => set_once(&mut p.reason_string, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        SERVER_REFERENCE => set_once(&mut p.server_reference, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn disconnect_len(p: &DisconnectProperties) -> usize {
    opt_len(&p.session_expiry_interval_s)
        + opt_len(&p.reason_string)
        + user_len(&p.user_properties)
        + opt_len(&p.server_reference)
}

pub(crate) fn disconnect_is_empty(p: &DisconnectProperties) -> bool {
    p.session_expiry_interval_s.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

pub(crate) fn check_disconnect(p: &DisconnectProperties) -> Result<(), EncodeError> {
    check_opt(&p.reason_string)?;
    check_user(&p.user_properties)?;
    check_opt(&p.server_reference)
}

pub(crate) fn put_disconnect(out: &mut BytesMut, p: &DisconnectProperties) {
    put_vbi(out, disconnect_len(p));
    put_opt(out, SESSION_EXPIRY_INTERVAL, &p.session_expiry_interval_s);
    put_opt(out, REASON_STRING, &p.reason_string);
    put_user(out, &p.user_properties);
    put_opt(out, SERVER_REFERENCE, &p.server_reference);
}

// ---- AUTH ---------------------------------------------------------------

pub(crate) fn decode_auth(r: &mut Reader) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    read_section(r, |id, r| match id {
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r),
        REASON_STRING => set_once(&mut p.reason_string, r),
        USER_PROPERTY => push_user(&mut p.user_properties, r),
        _ => Err(not_allowed()),
    })?;
    Ok(p)
}

pub(crate) fn auth_len(p: &AuthProperties) -> usize {
    opt_len(&p.authentication_method)
        + opt_len(&p.authentication_data)
        + opt_len(&p.reason_string)
        + user_len(&p.user_properties)
}

pub(crate) fn auth_is_empty(p: &AuthProperties) -> bool {
    p.authentication_method.is_none()
        && p.authentication_data.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
}

pub(crate) fn check_auth(p: &AuthProperties) -> Result<(), EncodeError> {
    check_opt(&p.authentication_method)?;
    check_opt(&p.authentication_data)?;
    check_opt(&p.reason_string)?;
    check_user(&p.user_properties)
}

pub(crate) fn put_auth(out: &mut BytesMut, p: &AuthProperties) {
    put_vbi(out, auth_len(p));
    put_opt(out, AUTHENTICATION_METHOD, &p.authentication_method);
    put_opt(out, AUTHENTICATION_DATA, &p.authentication_data);
    put_opt(out, REASON_STRING, &p.reason_string);
    put_user(out, &p.user_properties);
}
