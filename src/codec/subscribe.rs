//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (MQTT 5.0 sections 3.8-3.11).
//!
//! Filters are only checked to be non-empty strings here; wildcard placement
//! is the router's job, which answers per filter in SUBACK.

use bytes::{BufMut, BytesMut};

use super::bytestr::ByteStr;
use super::error::{DecodeError, EncodeError};
use super::properties as props;
use super::reason;
use super::types::*;
use super::wire::{check_field_len, field_len, put_str, Reader};

const OPTION_QOS_MASK: u8 = 0x03;
const OPTION_NO_LOCAL: u8 = 0x04;
const OPTION_RETAIN_AS_PUBLISHED: u8 = 0x08;
const OPTION_RETAIN_HANDLING_SHIFT: u8 = 4;
const OPTION_RESERVED_V5: u8 = 0xC0;
const OPTION_RESERVED_V3: u8 = 0xFC;

fn read_packet_id(r: &mut Reader, kind: &'static str) -> Result<u16, DecodeError> {
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return Err(DecodeError::Protocol(kind));
    }
    Ok(id)
}

fn read_filter(r: &mut Reader) -> Result<ByteStr, DecodeError> {
    let filter = r.string("topic filter")?;
    if filter.is_empty() {
        return Err(DecodeError::TopicFilterInvalid);
    }
    Ok(filter)
}

fn decode_options(byte: u8, protocol: Protocol) -> Result<SubscriptionOptions, DecodeError> {
    if !protocol.is_v5() {
        // MQTT-3.8.3-4: reserved bits or QoS 3 make the packet malformed.
        if byte & OPTION_RESERVED_V3 != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            ));
        }
        let qos = QoS::from_u8(byte).ok_or(DecodeError::Malformed("requested QoS 3"))?;
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    if byte & OPTION_RESERVED_V5 != 0 {
        // MQTT-3.8.3-5.
        return Err(DecodeError::Malformed(
            "reserved subscription option bits set",
        ));
    }
    // 3.8.3.1 calls QoS 3 and Retain Handling 3 protocol errors.
    let qos = QoS::from_u8(byte & OPTION_QOS_MASK).ok_or(DecodeError::Protocol(
        "maximum QoS 3 in subscription options",
    ))?;
    let retain_handling = byte >> OPTION_RETAIN_HANDLING_SHIFT;
    if retain_handling == 3 {
        return Err(DecodeError::Protocol("retain handling 3"));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & OPTION_NO_LOCAL != 0,
        retain_as_published: byte & OPTION_RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

fn options_byte(o: &SubscriptionOptions, protocol: Protocol) -> u8 {
    let mut byte = o.qos as u8;
    if protocol.is_v5() {
        if o.no_local {
            byte |= OPTION_NO_LOCAL;
        }
        if o.retain_as_published {
            byte |= OPTION_RETAIN_AS_PUBLISHED;
        }
        byte |= o.retain_handling << OPTION_RETAIN_HANDLING_SHIFT;
    }
    byte
}

pub(crate) fn decode_subscribe(
    r: &mut Reader,
    protocol: Protocol,
) -> Result<Subscribe, DecodeError> {
    let packet_id = read_packet_id(r, "SUBSCRIBE with packet identifier 0")?;
    let properties = if protocol.is_v5() {
        props::decode_subscribe(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = read_filter(r)?;
        let options = decode_options(r.u8("subscription options")?, protocol)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        // MQTT-3.8.3-3.
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(crate) fn subscribe_len(s: &Subscribe, protocol: Protocol) -> usize {
    let mut len = 2;
    if protocol.is_v5() {
        len += props::section_len(props::subscribe_len(&s.properties));
    }
    len + s
        .filters
        .iter()
        .map(|(filter, _)| field_len(filter.as_bytes()) + 1)
        .sum::<usize>()
}

pub(crate) fn check_subscribe(s: &Subscribe, protocol: Protocol) -> Result<(), EncodeError> {
    if s.packet_id == 0 {
        return Err(EncodeError::PacketIdZero("SUBSCRIBE"));
    }
    if s.filters.is_empty() {
        return Err(EncodeError::Invalid("SUBSCRIBE without topic filters"));
    }
    for (filter, options) in &s.filters {
        check_field_len(filter.as_bytes(), "topic filter")?;
        if protocol.is_v5() && options.retain_handling > 2 {
            return Err(EncodeError::Invalid("retain handling above 2"));
        }
    }
    if protocol.is_v5() {
        props::check_subscribe(&s.properties)?;
    }
    Ok(())
}

pub(crate) fn put_subscribe(out: &mut BytesMut, s: &Subscribe, protocol: Protocol) {
    out.put_u16(s.packet_id);
    if protocol.is_v5() {
        props::put_subscribe(out, &s.properties);
    }
    for (filter, options) in &s.filters {
        put_str(out, filter);
        out.put_u8(options_byte(options, protocol));
    }
}

pub(crate) fn decode_suback(r: &mut Reader, protocol: Protocol) -> Result<SubAck, DecodeError> {
    let packet_id = r.u16("packet identifier")?;
    let properties = if protocol.is_v5() {
        props::decode_ack(r)?
    } else {
        AckProperties::default()
    };
    let valid = if protocol.is_v5() {
        reason::suback_v5
    } else {
        reason::suback_v3
    };
    let codes = r.rest();
    if codes.is_empty() {
        return Err(DecodeError::Malformed("SUBACK without reason codes"));
    }
    if !codes.iter().all(|&code| valid(code)) {
        return Err(DecodeError::Malformed("SUBACK reason code"));
    }
    Ok(SubAck {
        packet_id,
        reason_codes: codes.iter().map(|&code| ReasonCode(code)).collect(),
        properties,
    })
}

pub(crate) fn suback_len(s: &SubAck, protocol: Protocol) -> usize {
    let mut len = 2 + s.reason_codes.len();
    if protocol.is_v5() {
        len += props::section_len(props::ack_len(&s.properties));
    }
    len
}

pub(crate) fn check_suback(s: &SubAck, protocol: Protocol) -> Result<(), EncodeError> {
    if s.reason_codes.is_empty() {
        return Err(EncodeError::Invalid("SUBACK without reason codes"));
    }
    if protocol.is_v5() {
        props::check_ack(&s.properties)?;
    }
    Ok(())
}

/// v3.1.1 knows one failure code, 0x80: every v5 error code maps to it.
pub(crate) fn put_suback(out: &mut BytesMut, s: &SubAck, protocol: Protocol) {
    out.put_u16(s.packet_id);
    if protocol.is_v5() {
        props::put_ack(out, &s.properties);
        for code in &s.reason_codes {
            out.put_u8(code.0);
        }
    } else {
        for code in &s.reason_codes {
            out.put_u8(if code.is_error() {
                ReasonCode::SUBACK_FAILURE.0
            } else {
                code.0
            });
        }
    }
}

pub(crate) fn decode_unsubscribe(
    r: &mut Reader,
    protocol: Protocol,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = read_packet_id(r, "UNSUBSCRIBE with packet identifier 0")?;
    let properties = if protocol.is_v5() {
        props::decode_unsubscribe(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(read_filter(r)?);
    }
    if filters.is_empty() {
        // MQTT-3.10.3-2.
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(crate) fn unsubscribe_len(u: &Unsubscribe, protocol: Protocol) -> usize {
    let mut len = 2;
    if protocol.is_v5() {
        len += props::section_len(props::unsubscribe_len(&u.properties));
    }
    len + u
        .filters
        .iter()
        .map(|filter| field_len(filter.as_bytes()))
        .sum::<usize>()
}

pub(crate) fn check_unsubscribe(u: &Unsubscribe, protocol: Protocol) -> Result<(), EncodeError> {
    if u.packet_id == 0 {
        return Err(EncodeError::PacketIdZero("UNSUBSCRIBE"));
    }
    if u.filters.is_empty() {
        return Err(EncodeError::Invalid("UNSUBSCRIBE without topic filters"));
    }
    for filter in &u.filters {
        check_field_len(filter.as_bytes(), "topic filter")?;
    }
    if protocol.is_v5() {
        props::check_unsubscribe(&u.properties)?;
    }
    Ok(())
}

pub(crate) fn put_unsubscribe(out: &mut BytesMut, u: &Unsubscribe, protocol: Protocol) {
    out.put_u16(u.packet_id);
    if protocol.is_v5() {
        props::put_unsubscribe(out, &u.properties);
    }
    for filter in &u.filters {
        put_str(out, filter);
    }
}

/// v3.1.1 UNSUBACK is only the packet id (its length must be 2).
pub(crate) fn decode_unsuback(r: &mut Reader, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.u16("packet identifier")?;
    if !protocol.is_v5() {
        return Ok(UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        });
    }
    let properties = props::decode_ack(r)?;
    let codes = r.rest();
    if codes.is_empty() {
        return Err(DecodeError::Malformed("UNSUBACK without reason codes"));
    }
    if !codes.iter().all(|&code| reason::unsuback(code)) {
        return Err(DecodeError::Malformed("UNSUBACK reason code"));
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes: codes.iter().map(|&code| ReasonCode(code)).collect(),
        properties,
    })
}

pub(crate) fn unsuback_len(u: &UnsubAck, protocol: Protocol) -> usize {
    if protocol.is_v5() {
        2 + props::section_len(props::ack_len(&u.properties)) + u.reason_codes.len()
    } else {
        2
    }
}

pub(crate) fn check_unsuback(u: &UnsubAck, protocol: Protocol) -> Result<(), EncodeError> {
    if protocol.is_v5() {
        if u.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("UNSUBACK without reason codes"));
        }
        props::check_ack(&u.properties)?;
    }
    Ok(())
}

pub(crate) fn put_unsuback(out: &mut BytesMut, u: &UnsubAck, protocol: Protocol) {
    out.put_u16(u.packet_id);
    if protocol.is_v5() {
        props::put_ack(out, &u.properties);
        for code in &u.reason_codes {
            out.put_u8(code.0);
        }
    }
}
