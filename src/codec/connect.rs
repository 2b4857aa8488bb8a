//! CONNECT and CONNACK (MQTT 3.1.1 section 3.1-3.2, MQTT 5.0 section 3.1-3.2).

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties as props;
use super::properties::has_wildcard;
use super::reason;
use super::types::*;
use super::wire::{check_field_len, field_len, put_binary, put_str, Reader};

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

const CONNACK_FLAG_SESSION_PRESENT: u8 = 0x01;

fn protocol_name(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::V31 => b"MQIsdp",
        Protocol::V311 | Protocol::V5 => b"MQTT",
    }
}

pub(crate) fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (&name[..], level) {
        (b"MQIsdp", 3) => Protocol::V31,
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp" | b"MQTT", _) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    decode_after_level(r, protocol).map_err(|error| DecodeError::InConnect {
        protocol,
        error: Box::new(error),
    })
}

fn decode_after_level(r: &mut Reader, protocol: Protocol) -> Result<Connect, DecodeError> {
    let flags = r.u8("connect flags")?;
    if flags & FLAG_RESERVED != 0 {
        return Err(DecodeError::Malformed("reserved connect flag set"));
    }
    let will_flag = flags & FLAG_WILL != 0;
    let will_qos_bits = (flags >> WILL_QOS_SHIFT) & 0x03;
    let will_retain = flags & FLAG_WILL_RETAIN != 0;
    let has_password = flags & FLAG_PASSWORD != 0;
    let has_username = flags & FLAG_USERNAME != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain without will flag",
        ));
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::Malformed("will QoS 3"))?;
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::Malformed(
            "password flag without user name flag",
        ));
    }
    let keep_alive_s = r.u16("keep alive")?;
    let properties = if protocol.is_v5() {
        props::decode_connect(r)?
    } else {
        ConnectProperties::default()
    };

    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = if protocol.is_v5() {
            props::decode_will(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string("will topic")?;
        if topic.is_empty() || has_wildcard(&topic) {
            return Err(DecodeError::TopicNameInvalid);
        }
        let payload = r.binary("will payload")?;
        if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err()
        {
            return Err(DecodeError::PayloadFormatInvalid);
        }
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary("password")?)
    } else {
        None
    };

    let clean_start = flags & FLAG_CLEAN_START != 0;
    // MQTT 3.1 requires a client identifier; 3.1.1 allows an empty one only
    // with a clean session (MQTT-3.1.3-8); both answer CONNACK 0x02. v5
    // lets the server assign one, which is the session's business.
    let client_id_rejected = match protocol {
        Protocol::V31 => client_id.is_empty(),
        Protocol::V311 => client_id.is_empty() && !clean_start,
        Protocol::V5 => false,
    };
    if client_id_rejected {
        return Err(DecodeError::ClientIdNotValid);
    }

    Ok(Connect {
        protocol,
        clean_start,
        keep_alive_s,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

pub(crate) fn connect_len(c: &Connect) -> usize {
    let v5 = c.protocol.is_v5();
    let mut len = field_len(protocol_name(c.protocol)) + 1 + 1 + 2;
    if v5 {
        len += props::section_len(props::connect_len(&c.properties));
    }
    len += field_len(c.client_id.as_bytes());
    if let Some(will) = &c.will {
        if v5 {
            len += props::section_len(props::will_len(&will.properties));
        }
        len += field_len(will.topic.as_bytes()) + field_len(&will.payload);
    }
    if let Some(username) = &c.username {
        len += field_len(username.as_bytes());
    }
    if let Some(password) = &c.password {
        len += field_len(password);
    }
    len
}

pub(crate) fn check_connect(c: &Connect) -> Result<(), EncodeError> {
    check_field_len(c.client_id.as_bytes(), "client identifier")?;
    if let Some(will) = &c.will {
        check_field_len(will.topic.as_bytes(), "will topic")?;
        check_field_len(&will.payload, "will payload")?;
        if c.protocol.is_v5() {
            props::check_will(&will.properties)?;
        }
    }
    if let Some(username) = &c.username {
        check_field_len(username.as_bytes(), "user name")?;
    }
    if let Some(password) = &c.password {
        check_field_len(password, "password")?;
        if c.username.is_none() && !c.protocol.is_v5() {
            return Err(EncodeError::Invalid(
                "password without user name before MQTT 5",
            ));
        }
    }
    if c.protocol.is_v5() {
        props::check_connect(&c.properties)?;
    }
    Ok(())
}

/// Written in the connect's own protocol, whatever the connection's.
pub(crate) fn put_connect(out: &mut BytesMut, c: &Connect) {
    let v5 = c.protocol.is_v5();
    put_binary(out, protocol_name(c.protocol));
    out.put_u8(c.protocol.level());
    let mut flags = 0;
    if c.clean_start {
        flags |= FLAG_CLEAN_START;
    }
    if let Some(will) = &c.will {
        flags |= FLAG_WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
        if will.retain {
            flags |= FLAG_WILL_RETAIN;
        }
    }
    if c.password.is_some() {
        flags |= FLAG_PASSWORD;
    }
    if c.username.is_some() {
        flags |= FLAG_USERNAME;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive_s);
    if v5 {
        props::put_connect(out, &c.properties);
    }
    put_str(out, &c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            props::put_will(out, &will.properties);
        }
        put_str(out, &will.topic);
        put_binary(out, &will.payload);
    }
    if let Some(username) = &c.username {
        put_str(out, username);
    }
    if let Some(password) = &c.password {
        put_binary(out, password);
    }
}

pub(crate) fn decode_connack(r: &mut Reader, protocol: Protocol) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("connect acknowledge flags")?;
    if flags & !CONNACK_FLAG_SESSION_PRESENT != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flag set"));
    }
    let session_present = flags & CONNACK_FLAG_SESSION_PRESENT != 0;
    let code = r.u8("connect reason code")?;
    // A v3.1.1-only server answers a v5 CONNECT with a two-byte v3.1.1
    // CONNACK (return code 1); a v5 client must still be able to read it.
    let v3_format = !protocol.is_v5() || r.is_empty();
    let properties = if v3_format {
        if !reason::connack_v3(code) {
            return Err(DecodeError::Malformed("CONNACK return code"));
        }
        ConnAckProperties::default()
    } else {
        if !reason::connack_v5(code) {
            return Err(DecodeError::Malformed("CONNACK reason code"));
        }
        props::decode_connack(r)?
    };
    if session_present && code != 0 {
        return Err(DecodeError::Protocol(
            "session present with a refused connection",
        ));
    }
    Ok(ConnAck {
        session_present,
        reason_code: ReasonCode(code),
        properties,
    })
}

pub(crate) fn connack_len(c: &ConnAck, protocol: Protocol) -> usize {
    if protocol.is_v5() {
        2 + props::section_len(props::connack_len(&c.properties))
    } else {
        2
    }
}

pub(crate) fn check_connack(c: &ConnAck, protocol: Protocol) -> Result<(), EncodeError> {
    if protocol.is_v5() {
        props::check_connack(&c.properties)
    } else if reason::connack_v3(c.reason_code.0) {
        Ok(())
    } else {
        Err(EncodeError::Invalid("v3.1.1 CONNACK return code above 5"))
    }
}

pub(crate) fn put_connack(out: &mut BytesMut, c: &ConnAck, protocol: Protocol) {
    // MQTT 3.1 has no Session Present: its acknowledge flags byte is
    // reserved and must be 0.
    out.put_u8(if c.session_present && protocol != Protocol::V31 {
        CONNACK_FLAG_SESSION_PRESENT
    } else {
        0
    });
    out.put_u8(c.reason_code.0);
    if protocol.is_v5() {
        props::put_connack(out, &c.properties);
    }
}
