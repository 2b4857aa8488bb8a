//! v5 properties (MQTT 5.0 section 2.2.2): one decoder, sizer, checker and
//! writer per property set. Writers emit properties in struct field order,
//! which is also the order the common JS encoder uses, so byte-level test
//! vectors match.
//!
//! Decoding rules applied to every set: an identifier not allowed on the
//! packet is malformed (2.2.2.2), a repeated property other than User
//! Property (and Subscription Identifier on server-to-client PUBLISH) is a
//! protocol error, and the property section must fit inside the packet.
//!
//! Here: the identifiers, the value types and the helpers every set is
//! built from. The sets are in two files by the packets that carry them:
//! `connection` (CONNECT, Will, CONNACK, DISCONNECT, AUTH: the life of a
//! connection) and `message` (PUBLISH, the acknowledgements, SUBSCRIBE,
//! UNSUBSCRIBE: the flow of messages, the hot path).

mod connection;
mod message;

pub(crate) use connection::*;
pub(crate) use message::*;

use bytes::{BufMut, Bytes, BytesMut};

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
