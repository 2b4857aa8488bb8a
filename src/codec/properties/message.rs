//! The property sets of the flow of messages: PUBLISH, the
//! acknowledgements, SUBSCRIBE and UNSUBSCRIBE.

use bytes::BytesMut;
use smallvec::SmallVec;

use super::*;

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
