//! The CONNACK: what a connection settles at CONNECT, what the CONNACK
//! announces of it, and whether the client can receive it at all.
//!
//! MQTT 5.0 gives every CONNACK property a meaning when it is absent
//! (section 3.2.2.3): Receive Maximum 65535, Maximum QoS 2, Retain,
//! Wildcard Subscription, Subscription Identifiers and Shared Subscription
//! Available 1, Maximum Packet Size only the protocol's own limit, Topic
//! Alias Maximum 0, the client's Session Expiry Interval and Keep Alive.
//! Only values that differ from those go on the wire, so a client with a
//! small Maximum Packet Size can still receive its CONNACK.

use crate::codec::ReasonCode;
use crate::codec::{self, ByteStr, ConnAck, ConnAckProperties, Connect, Packet, Protocol};
use crate::limits::PACKET_SIZE_MAX_BYTES;

use super::SessionConfig;

/// What CONNECT and our config settle for the life of a connection.
pub(super) struct Negotiated {
    /// The Session Expiry Interval the client asked for (3.1.1: 0 with
    /// Clean Session 1, our cap without).
    pub expiry_requested_s: u32,
    /// The one that applies: the request capped by our maximum.
    pub expiry_s: u32,
    /// The Keep Alive that applies (after the Server Keep Alive cap).
    pub keep_alive_s: u16,
    /// Our Server Keep Alive, when it overrides the client's (v5 only).
    pub server_keep_alive_s: Option<u16>,
}

pub(super) fn negotiate(connect: &Connect, cfg: &SessionConfig) -> Negotiated {
    let v5 = connect.protocol.is_v5();
    let expiry_requested_s = if v5 {
        connect.properties.session_expiry_interval_s.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        cfg.max_session_expiry_interval_s
    };
    let (keep_alive_s, server_keep_alive_s) = match cfg.server_keepalive_s {
        Some(cap) if v5 && (connect.keep_alive_s == 0 || connect.keep_alive_s > cap) => {
            (cap, Some(cap))
        }
        _ => (connect.keep_alive_s, None),
    };
    Negotiated {
        expiry_requested_s,
        expiry_s: expiry_requested_s.min(cfg.max_session_expiry_interval_s),
        keep_alive_s,
        server_keep_alive_s,
    }
}

/// Our Receive Maximum: the cap on the client's unacknowledged QoS 2
/// messages and on our outbound window.
pub(super) fn receive_maximum(cfg: &SessionConfig) -> u16 {
    cfg.max_inflight.max(1)
}

/// The properties of a successful v5 CONNACK: only those whose value
/// differs from what their absence means. Subscription Identifiers are
/// always available, so that property is never sent; nor is Maximum QoS
/// (every QoS is supported).
pub(super) fn properties(
    n: &Negotiated,
    cfg: &SessionConfig,
    assigned_client_id: Option<ByteStr>,
) -> ConnAckProperties {
    let receive_maximum = receive_maximum(cfg);
    ConnAckProperties {
        session_expiry_interval_s: (n.expiry_s != n.expiry_requested_s).then_some(n.expiry_s),
        receive_maximum: (receive_maximum < u16::MAX).then_some(receive_maximum),
        maximum_packet_size: (cfg.max_packet_size < PACKET_SIZE_MAX_BYTES)
            .then_some(cfg.max_packet_size),
        topic_alias_maximum: (cfg.max_topic_alias > 0).then_some(cfg.max_topic_alias),
        retain_available: (!cfg.retain_available).then_some(0),
        wildcard_subscription_available: (!cfg.wildcard_subscription_available).then_some(0),
        shared_subscription_available: (!cfg.shared_subscription_available).then_some(0),
        server_keep_alive_s: n.server_keep_alive_s,
        assigned_client_identifier: assigned_client_id,
        ..ConnAckProperties::default()
    }
}

/// The client's Maximum Packet Size; `u32::MAX` (larger than any packet
/// MQTT can encode) when it set none, and always for 3.1/3.1.1.
pub fn client_packet_size_max(connect: &Connect) -> u32 {
    match connect.properties.maximum_packet_size {
        Some(max) if connect.protocol.is_v5() => max,
        _ => u32::MAX,
    }
}

pub(crate) fn fits(connack: &ConnAck, protocol: Protocol, size_max: u32) -> bool {
    let packet = Packet::ConnAck(Box::new(connack.clone()));
    size_max == u32::MAX || codec::encoded_len(&packet, protocol) <= size_max as usize
}

/// `connack` made to fit the client's Maximum Packet Size, or `None` when
/// it cannot be, and then nothing may be sent (MQTT-3.1.2-24).
///
/// Reason String and User Properties are the properties the spec lets a
/// server leave out of a CONNACK that would otherwise be too large
/// (MQTT-3.2.2-19, -20); every other property of a successful CONNACK
/// states something the client must know (its assigned id, our limits), so
/// a success that still does not fit is not sent. A refusal (reason code
/// 0x80 or above) says all it must in its reason code: its other
/// properties (a Server Reference) are optional and go too.
pub fn fit(mut connack: ConnAck, protocol: Protocol, size_max: u32) -> Option<ConnAck> {
    if fits(&connack, protocol, size_max) {
        return Some(connack);
    }
    connack.properties.reason_string = None;
    connack.properties.user_properties.clear();
    if connack.reason_code.is_error() && !fits(&connack, protocol, size_max) {
        connack.properties = ConnAckProperties::default();
    }
    fits(&connack, protocol, size_max).then_some(connack)
}

/// Whether the client can receive the CONNACK that `Connection::accept`
/// would send it. `Err` when it cannot: the refusal CONNACK to send
/// instead, or `None` when not even that fits (then the connection closes
/// without sending anything). `assigned_client_id`: the id the server made
/// up for an empty one.
///
/// Why a refusal and which one. A server MUST send CONNACK before any
/// other packet (MQTT-3.2.0-1) and MUST NOT send a packet larger than the
/// client's Maximum Packet Size (MQTT-3.1.2-24), so when the successful
/// CONNACK cannot be made to fit (see [`fit`]) the connection cannot be
/// accepted: a DISCONNECT would come before any CONNACK. A CONNACK with a
/// reason code of 0x80 or more, followed by the close, is the refusal the
/// spec provides (sections 3.2.2.2 and 4.13, MQTT-3.2.2-7,
/// MQTT-4.13.2-1), and the reason-code-only form (5 bytes) is a packet of
/// its own that may well fit where the success did not. Its code is 0x83
/// Implementation specific error, "the CONNECT is valid but is not
/// accepted by this Server": 0x95 Packet too large means in a CONNACK that
/// the CONNECT itself was too large, which is not the case. Below 5 bytes
/// nothing fits and the connection is closed without a word, which
/// MQTT-4.13.2-1 allows ("whether or not the CONNACK ... is sent").
#[allow(clippy::result_large_err)] // built once per refused connection
pub fn check_fits(
    connect: &Connect,
    cfg: &SessionConfig,
    assigned_client_id: Option<&ByteStr>,
) -> Result<(), Option<ConnAck>> {
    let size_max = client_packet_size_max(connect);
    if size_max == u32::MAX {
        return Ok(());
    }
    let n = negotiate(connect, cfg);
    let success = ConnAck {
        session_present: false,
        reason_code: ReasonCode::SUCCESS,
        properties: properties(&n, cfg, assigned_client_id.cloned()),
    };
    if fit(success, connect.protocol, size_max).is_some() {
        return Ok(());
    }
    let refusal = ConnAck {
        session_present: false,
        reason_code: ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
        properties: ConnAckProperties {
            reason_string: Some(ByteStr::from_static(
                "Maximum Packet Size too small for the CONNACK",
            )),
            ..ConnAckProperties::default()
        },
    };
    Err(fit(refusal, connect.protocol, size_max))
}
