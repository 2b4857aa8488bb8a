//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP
//! (MQTT 5.0 sections 3.3-3.7).
//!
//! PUBLISH is the hot path: decoding one without properties takes slices of
//! the frame and allocates nothing; encoding writes straight into `out`.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties as props;
use super::types::*;
use super::wire::{check_field_len, field_len, put_binary, Reader};

pub(crate) const FLAG_RETAIN: u8 = 0x01;
pub(crate) const QOS_SHIFT: u8 = 1;
pub(crate) const FLAG_DUP: u8 = 0x08;

/// Fixed-header flags; the frame check already refused QoS 3 and DUP on
/// QoS 0.
#[inline(always)]
pub(crate) fn decode_publish(
    flags: u8,
    r: &mut Reader,
    protocol: Protocol,
    from_client: bool,
) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> QOS_SHIFT) & 0x03).ok_or(DecodeError::Malformed("QoS 3"))?;
    let (topic, wildcard) = r.topic_name()?;
    if wildcard {
        return Err(DecodeError::TopicNameInvalid);
    }
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        let id = r.u16("packet identifier")?;
        if id == 0 {
            return Err(DecodeError::Protocol("PUBLISH with packet identifier 0"));
        }
        id
    };
    let properties = if protocol.is_v5() {
        props::decode_publish(r, from_client)?
    } else {
        None
    };
    let properties_read = properties.as_deref().unwrap_or(&PUBLISH_PROPERTIES_EMPTY);
    if topic.is_empty() {
        // v5 lets a Topic Alias stand for the name (MQTT-3.3.2-8); v3.1.1
        // requires at least one character (4.7.3).
        if !protocol.is_v5() {
            return Err(DecodeError::TopicNameInvalid);
        }
        if properties_read.topic_alias.is_none() {
            return Err(DecodeError::Protocol(
                "empty topic name without topic alias",
            ));
        }
    }
    let payload = r.rest();
    if properties_read.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err()
    {
        return Err(DecodeError::PayloadFormatInvalid);
    }
    Ok(Publish {
        dup: flags & FLAG_DUP != 0,
        qos,
        retain: flags & FLAG_RETAIN != 0,
        topic,
        packet_id,
        payload,
        properties,
    })
}

pub(crate) fn publish_flags(p: &PublishRef<'_>) -> u8 {
    let mut flags = (p.qos as u8) << QOS_SHIFT;
    if p.dup {
        flags |= FLAG_DUP;
    }
    if p.retain {
        flags |= FLAG_RETAIN;
    }
    flags
}

pub(crate) fn publish_len(p: &PublishRef<'_>, protocol: Protocol) -> usize {
    let mut len = field_len(p.topic.as_bytes()) + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        len += 2;
    }
    if protocol.is_v5() {
        len += p
            .properties
            .map_or(1, |pr| props::section_len(props::publish_len(pr)));
    }
    len
}

pub(crate) fn check_publish(p: &PublishRef<'_>, protocol: Protocol) -> Result<(), EncodeError> {
    check_field_len(p.topic.as_bytes(), "topic name")?;
    if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
        return Err(EncodeError::PacketIdZero("PUBLISH with QoS > 0"));
    }
    if p.topic.is_empty() && (!protocol.is_v5() || p.properties().topic_alias.is_none()) {
        return Err(EncodeError::Invalid("empty topic name without topic alias"));
    }
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::Invalid("DUP set on a QoS 0 PUBLISH"));
    }
    if let (true, Some(pr)) = (protocol.is_v5(), p.properties) {
        props::check_publish(pr)?;
    }
    Ok(())
}

/// Properties are dropped on v3.1.1: a v5 publisher's message reaches a
/// v3.1.1 subscriber without them, as MQTT 5.0 intends.
pub(crate) fn put_publish(out: &mut BytesMut, p: &PublishRef<'_>, protocol: Protocol) {
    put_binary(out, p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    if protocol.is_v5() {
        match p.properties {
            Some(pr) => props::put_publish(out, pr),
            None => out.put_u8(0), // property length 0
        }
    }
    out.put_slice(p.payload);
}

/// v5 lets the sender drop trailing fields (3.4.2.1): remaining length 2
/// means SUCCESS without properties, 3 means a reason without properties.
/// `reason_valid` is the packet kind's reason code table.
pub(crate) fn decode_ack(
    r: &mut Reader,
    protocol: Protocol,
    reason_valid: fn(u8) -> bool,
) -> Result<PubAck, DecodeError> {
    let packet_id = r.u16("packet identifier")?;
    let mut ack = PubAck {
        packet_id,
        ..PubAck::default()
    };
    if !protocol.is_v5() || r.is_empty() {
        return Ok(ack);
    }
    let code = r.u8("reason code")?;
    if !reason_valid(code) {
        return Err(DecodeError::Malformed(
            "reason code not valid for this packet",
        ));
    }
    ack.reason_code = ReasonCode(code);
    if !r.is_empty() {
        ack.properties = props::decode_ack(r)?;
    }
    Ok(ack)
}

/// `decode_ack` for a body of at most 3 bytes (so without properties), read
/// in place: the caller does not split the read buffer for it, so the
/// commonest packet after PUBLISH takes no reference count.
#[inline(always)]
pub(crate) fn decode_short_ack(
    body: &[u8],
    protocol: Protocol,
    reason_valid: fn(u8) -> bool,
) -> Result<PubAck, DecodeError> {
    debug_assert!(body.len() <= 3);
    let [hi, lo, rest @ ..] = body else {
        return Err(DecodeError::Malformed("packet identifier"));
    };
    let mut ack = PubAck {
        packet_id: u16::from_be_bytes([*hi, *lo]),
        ..PubAck::default()
    };
    match rest {
        [] => {}
        [_] if !protocol.is_v5() => {
            return Err(DecodeError::Malformed("bytes after the end of the packet"))
        }
        [code] => {
            if !reason_valid(*code) {
                return Err(DecodeError::Malformed(
                    "reason code not valid for this packet",
                ));
            }
            ack.reason_code = ReasonCode(*code);
        }
        _ => return Err(DecodeError::Malformed("bytes after the end of the packet")),
    }
    Ok(ack)
}

/// Shortest form: SUCCESS without properties is just the packet id. Other
/// reasons carry an explicit zero property length, like most encoders emit.
fn ack_is_short(a: &PubAck, protocol: Protocol) -> bool {
    !protocol.is_v5()
        || (a.reason_code == ReasonCode::SUCCESS && props::ack_is_empty(&a.properties))
}

pub(crate) fn ack_len(a: &PubAck, protocol: Protocol) -> usize {
    if ack_is_short(a, protocol) {
        2
    } else {
        3 + props::section_len(props::ack_len(&a.properties))
    }
}

pub(crate) fn check_ack(a: &PubAck, protocol: Protocol) -> Result<(), EncodeError> {
    if protocol.is_v5() {
        props::check_ack(&a.properties)?;
    }
    Ok(())
}

pub(crate) fn put_ack(out: &mut BytesMut, a: &PubAck, protocol: Protocol) {
    out.put_u16(a.packet_id);
    if !ack_is_short(a, protocol) {
        out.put_u8(a.reason_code.0);
        props::put_ack(out, &a.properties);
    }
}
