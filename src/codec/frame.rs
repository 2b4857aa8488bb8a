//! The fixed header and the public entry points.
//!
//! Decoding checks the frame before parsing it: the first byte (packet type,
//! flags, whether this side may receive it) and the remaining length are
//! validated, and the size cap enforced, before a single body byte needs to
//! be buffered. Only a complete frame is split off the buffer and parsed.

use bytes::{Buf, BufMut, BytesMut};

use super::connect;
use super::disconnect;
use super::error::{DecodeError, EncodeError};
use super::publish;
use super::reason;
use super::subscribe;
use super::types::*;
use super::wire::{parse_vbi, put_vbi, vbi_len, Reader, Vbi, VARIABLE_BYTE_INTEGER_MAX};

// Control packet types, fixed header bits 7-4.
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// Flags PUBREL, SUBSCRIBE and UNSUBSCRIBE must carry (MQTT-3.6.1-1,
/// MQTT-3.8.1-1, MQTT-3.10.1-1); every other type but PUBLISH carries 0.
const FLAGS_QOS_1: u8 = 0b0010;

/// Decode one packet a client may send from the front of `buf`, consuming its
/// bytes. `protocol` is `None` until CONNECT was decoded, when only CONNECT is
/// accepted. `Ok(None)`: the packet is not complete yet; nothing is consumed.
/// A packet larger than `max_packet_size` (fixed header included) is refused
/// as soon as its remaining length is readable. After an error the buffer's
/// contents are unspecified: the connection must be closed.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode_frame(buf, protocol, max_packet_size, true)
}

/// Decode any packet kind, client- or server-sent: for clients, the load
/// generator and tests. A CONNECT is parsed in its own protocol level.
pub fn decode_any(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode_frame(buf, Some(protocol), max_packet_size, false)
}

fn decode_frame(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: u32,
    from_client: bool,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    check_first_byte(packet_type, flags, protocol, from_client)?;
    let (remaining_len, len_len) = match parse_vbi(&buf[1..]) {
        Vbi::Complete(value, len) => (value as usize, len),
        Vbi::Incomplete => return Ok(None),
        Vbi::Invalid => return Err(DecodeError::Malformed("remaining length")),
    };
    let header_len = 1 + len_len;
    let size = header_len + remaining_len;
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    if remaining_len <= 3 {
        // Small bodies that hold no string are read in place: splitting
        // them off would take (and later drop) a reference count on the
        // read buffer for every ack.
        // One arm per kind rather than `ack_kind`'s constructor pointer:
        // the ack is then built in place, not returned through a call.
        let body = &buf[header_len..size];
        let protocol = protocol.unwrap_or(Protocol::V311);
        use publish::decode_short_ack as short;
        let packet = match packet_type {
            PUBACK => Some(Packet::PubAck(short(body, protocol, reason::puback)?)),
            PUBREC => Some(Packet::PubRec(short(body, protocol, reason::puback)?)),
            PUBREL => Some(Packet::PubRel(short(body, protocol, reason::pubrel)?)),
            PUBCOMP => Some(Packet::PubComp(short(body, protocol, reason::pubrel)?)),
            PINGREQ if remaining_len == 0 => Some(Packet::PingReq),
            PINGRESP if remaining_len == 0 => Some(Packet::PingResp),
            _ => None,
        };
        if let Some(packet) = packet {
            buf.advance(size);
            return Ok(Some(packet));
        }
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header_len);
    let mut r = Reader::new(frame);
    // `check_first_byte` let `None` through only for CONNECT, which parses
    // its own protocol level; the fallback is never used to parse.
    let protocol = protocol.unwrap_or(Protocol::V311);
    // PUBLISH, the commonest body, is decoded inline (see above).
    let packet = if packet_type == PUBLISH {
        Packet::Publish(publish::decode_publish(
            flags,
            &mut r,
            protocol,
            from_client,
        )?)
    } else {
        decode_body(packet_type, flags, &mut r, protocol, from_client)?
    };
    if !r.is_empty() {
        return Err(DecodeError::Malformed("bytes after the end of the packet"));
    }
    Ok(Some(packet))
}

fn check_first_byte(
    packet_type: u8,
    flags: u8,
    protocol: Option<Protocol>,
    from_client: bool,
) -> Result<(), DecodeError> {
    match packet_type {
        0 => return Err(DecodeError::Malformed("packet type 0 is reserved")),
        AUTH if protocol.is_some_and(|p| !p.is_v5()) => {
            return Err(DecodeError::Malformed(
                "packet type 15 is reserved before MQTT 5",
            ))
        }
        _ => {}
    }
    if protocol.is_none() && packet_type != CONNECT {
        // MQTT-3.1.0-1.
        return Err(DecodeError::Protocol("first packet is not CONNECT"));
    }
    if from_client && matches!(packet_type, CONNACK | SUBACK | UNSUBACK | PINGRESP) {
        return Err(DecodeError::Protocol(
            "server-to-client packet from a client",
        ));
    }
    let flags_ok = match packet_type {
        PUBLISH => {
            let qos = (flags >> publish::QOS_SHIFT) & 0x03;
            if qos == 3 {
                // MQTT-3.3.1-4.
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            // MQTT-3.3.1-2.
            qos != 0 || flags & publish::FLAG_DUP == 0
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => flags == FLAGS_QOS_1,
        _ => flags == 0,
    };
    if !flags_ok {
        return Err(DecodeError::Malformed("fixed header flags"));
    }
    Ok(())
}

/// For the four packets shaped like PUBACK: how to wrap the decoded ack,
/// and the reason codes its kind allows.
#[allow(clippy::type_complexity)]
fn ack_kind(packet_type: u8) -> Option<(fn(PubAck) -> Packet, fn(u8) -> bool)> {
    match packet_type {
        PUBACK => Some((Packet::PubAck, reason::puback)),
        PUBREC => Some((Packet::PubRec, reason::puback)),
        PUBREL => Some((Packet::PubRel, reason::pubrel)),
        PUBCOMP => Some((Packet::PubComp, reason::pubrel)),
        _ => None,
    }
}

fn decode_body(
    packet_type: u8,
    flags: u8,
    r: &mut Reader,
    protocol: Protocol,
    from_client: bool,
) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        CONNECT => Packet::Connect(Box::new(connect::decode_connect(r)?)),
        CONNACK => Packet::ConnAck(Box::new(connect::decode_connack(r, protocol)?)),
        PUBLISH => Packet::Publish(publish::decode_publish(flags, r, protocol, from_client)?),
        PUBACK | PUBREC | PUBREL | PUBCOMP => {
            let (make, reason_valid) = ack_kind(packet_type).expect("an ack type");
            make(publish::decode_ack(r, protocol, reason_valid)?)
        }
        SUBSCRIBE => Packet::Subscribe(subscribe::decode_subscribe(r, protocol)?),
        SUBACK => Packet::SubAck(subscribe::decode_suback(r, protocol)?),
        UNSUBSCRIBE => Packet::Unsubscribe(subscribe::decode_unsubscribe(r, protocol)?),
        UNSUBACK => Packet::UnsubAck(subscribe::decode_unsuback(r, protocol)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(Box::new(disconnect::decode_disconnect(r, protocol)?)),
        AUTH => Packet::Auth(Box::new(disconnect::decode_auth(r)?)),
        _ => unreachable!("packet type is 4 bits and 0 was refused"),
    })
}

/// Exact number of bytes `encode` writes for `packet` (when it succeeds).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let remaining_len = remaining_len(packet, protocol);
    1 + vbi_len(remaining_len) + remaining_len
}

/// Append `packet` to `out`, reserving its exact size once. On error nothing
/// is written. Fields the protocol lacks are left out (v5 properties and
/// reason codes on v3.1.1; a v5 SUBACK error code becomes 0x80). CONNECT is
/// written in its own `protocol` field's version.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    if let Packet::Publish(p) = packet {
        return encode_publish(&p.as_ref(), protocol, usize::MAX, out).map(|_| ());
    }
    check(packet, protocol)?;
    let remaining_len = remaining_len(packet, protocol);
    if remaining_len > VARIABLE_BYTE_INTEGER_MAX {
        return Err(EncodeError::PacketTooLarge { remaining_len });
    }
    let total_len = 1 + vbi_len(remaining_len) + remaining_len;
    out.reserve(total_len);
    let start_len = out.len();
    out.put_u8(first_byte(packet));
    put_vbi(out, remaining_len);
    match packet {
        Packet::Connect(c) => connect::put_connect(out, c),
        Packet::ConnAck(c) => connect::put_connack(out, c, protocol),
        Packet::Publish(p) => publish::put_publish(out, &p.as_ref(), protocol),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            publish::put_ack(out, a, protocol)
        }
        Packet::Subscribe(s) => subscribe::put_subscribe(out, s, protocol),
        Packet::SubAck(s) => subscribe::put_suback(out, s, protocol),
        Packet::Unsubscribe(u) => subscribe::put_unsubscribe(out, u, protocol),
        Packet::UnsubAck(u) => subscribe::put_unsuback(out, u, protocol),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => disconnect::put_disconnect(out, d, protocol),
        Packet::Auth(a) => disconnect::put_auth(out, a),
    }
    debug_assert_eq!(out.len() - start_len, total_len, "{}", packet.kind());
    Ok(())
}

/// `encode` for a PUBLISH given by its parts (the outbound hot path), if
/// its encoded size is at most `max_packet_size`: `Ok(false)` and nothing
/// written when it is larger (the receiver's Maximum Packet Size,
/// MQTT-3.1.2-24).
pub fn encode_publish(
    p: &PublishRef<'_>,
    protocol: Protocol,
    max_packet_size: usize,
    out: &mut BytesMut,
) -> Result<bool, EncodeError> {
    publish::check_publish(p, protocol)?;
    let remaining_len = publish::publish_len(p, protocol);
    if remaining_len > VARIABLE_BYTE_INTEGER_MAX {
        return Err(EncodeError::PacketTooLarge { remaining_len });
    }
    let total_len = 1 + vbi_len(remaining_len) + remaining_len;
    if total_len > max_packet_size {
        return Ok(false);
    }
    out.reserve(total_len);
    out.put_u8(PUBLISH << 4 | publish::publish_flags(p));
    put_vbi(out, remaining_len);
    publish::put_publish(out, p, protocol);
    Ok(true)
}

/// `encode` for a PUBACK, PUBREC, PUBREL or PUBCOMP without properties:
/// 4 bytes (SUCCESS is implied, 3.4.2.1), or 6 when a v5 reason code other
/// than SUCCESS must be sent (with a zero property length, as `encode`
/// writes it). Returns the bytes written.
pub fn encode_short_ack(
    kind: AckKind,
    packet_id: u16,
    reason: ReasonCode,
    protocol: Protocol,
    out: &mut BytesMut,
) -> usize {
    let (packet_type, flags) = match kind {
        AckKind::PubAck => (PUBACK, 0),
        AckKind::PubRec => (PUBREC, 0),
        AckKind::PubRel => (PUBREL, FLAGS_QOS_1),
        AckKind::PubComp => (PUBCOMP, 0),
    };
    out.put_u8(packet_type << 4 | flags);
    if protocol.is_v5() && reason != ReasonCode::SUCCESS {
        out.put_u8(4);
        out.put_u16(packet_id);
        out.put_u8(reason.0);
        out.put_u8(0);
        6
    } else {
        out.put_u8(2);
        out.put_u16(packet_id);
        4
    }
}

fn first_byte(packet: &Packet) -> u8 {
    let (packet_type, flags) = match packet {
        Packet::Connect(_) => (CONNECT, 0),
        Packet::ConnAck(_) => (CONNACK, 0),
        Packet::Publish(p) => (PUBLISH, publish::publish_flags(&p.as_ref())),
        Packet::PubAck(_) => (PUBACK, 0),
        Packet::PubRec(_) => (PUBREC, 0),
        Packet::PubRel(_) => (PUBREL, FLAGS_QOS_1),
        Packet::PubComp(_) => (PUBCOMP, 0),
        Packet::Subscribe(_) => (SUBSCRIBE, FLAGS_QOS_1),
        Packet::SubAck(_) => (SUBACK, 0),
        Packet::Unsubscribe(_) => (UNSUBSCRIBE, FLAGS_QOS_1),
        Packet::UnsubAck(_) => (UNSUBACK, 0),
        Packet::PingReq => (PINGREQ, 0),
        Packet::PingResp => (PINGRESP, 0),
        Packet::Disconnect(_) => (DISCONNECT, 0),
        Packet::Auth(_) => (AUTH, 0),
    };
    packet_type << 4 | flags
}

fn remaining_len(packet: &Packet, protocol: Protocol) -> usize {
    match packet {
        Packet::Connect(c) => connect::connect_len(c),
        Packet::ConnAck(c) => connect::connack_len(c, protocol),
        Packet::Publish(p) => publish::publish_len(&p.as_ref(), protocol),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            publish::ack_len(a, protocol)
        }
        Packet::Subscribe(s) => subscribe::subscribe_len(s, protocol),
        Packet::SubAck(s) => subscribe::suback_len(s, protocol),
        Packet::Unsubscribe(u) => subscribe::unsubscribe_len(u, protocol),
        Packet::UnsubAck(u) => subscribe::unsuback_len(u, protocol),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => disconnect::disconnect_len(d, protocol),
        Packet::Auth(a) => disconnect::auth_len(a),
    }
}

/// Refuses what the peer's decoder would reject or what cannot be framed.
fn check(packet: &Packet, protocol: Protocol) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect::check_connect(c),
        Packet::ConnAck(c) => connect::check_connack(c, protocol),
        Packet::Publish(p) => publish::check_publish(&p.as_ref(), protocol),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            publish::check_ack(a, protocol)
        }
        Packet::Subscribe(s) => subscribe::check_subscribe(s, protocol),
        Packet::SubAck(s) => subscribe::check_suback(s, protocol),
        Packet::Unsubscribe(u) => subscribe::check_unsubscribe(u, protocol),
        Packet::UnsubAck(u) => subscribe::check_unsuback(u, protocol),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => disconnect::check_disconnect(d, protocol),
        Packet::Auth(a) => disconnect::check_auth(a, protocol),
    }
}
