//! The property sets of the life of a connection: CONNECT, Will, CONNACK,
//! DISCONNECT and AUTH.

use bytes::BytesMut;

use super::*;

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
