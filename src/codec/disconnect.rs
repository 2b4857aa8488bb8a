//! DISCONNECT and AUTH (MQTT 5.0 sections 3.14-3.15). On v3.1.1 DISCONNECT
//! is empty and AUTH does not exist.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties as props;
use super::reason;
use super::types::*;
use super::wire::Reader;

/// Remaining length 0 means Normal disconnection; 1 means a reason code
/// without properties (3.14.2.1, 3.14.2.2.1).
pub(crate) fn decode_disconnect(
    r: &mut Reader,
    protocol: Protocol,
) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    if !protocol.is_v5() || r.is_empty() {
        return Ok(disconnect);
    }
    let code = r.u8("reason code")?;
    if !reason::disconnect(code) {
        return Err(DecodeError::Malformed("DISCONNECT reason code"));
    }
    disconnect.reason_code = ReasonCode(code);
    if !r.is_empty() {
        disconnect.properties = props::decode_disconnect(r)?;
    }
    Ok(disconnect)
}

fn disconnect_is_short(d: &Disconnect, protocol: Protocol) -> bool {
    !protocol.is_v5()
        || (d.reason_code == ReasonCode::NORMAL_DISCONNECTION
            && props::disconnect_is_empty(&d.properties))
}

pub(crate) fn disconnect_len(d: &Disconnect, protocol: Protocol) -> usize {
    if disconnect_is_short(d, protocol) {
        0
    } else {
        1 + props::section_len(props::disconnect_len(&d.properties))
    }
}

pub(crate) fn check_disconnect(d: &Disconnect, protocol: Protocol) -> Result<(), EncodeError> {
    if protocol.is_v5() {
        props::check_disconnect(&d.properties)?;
    }
    Ok(())
}

pub(crate) fn put_disconnect(out: &mut BytesMut, d: &Disconnect, protocol: Protocol) {
    if !disconnect_is_short(d, protocol) {
        out.put_u8(d.reason_code.0);
        props::put_disconnect(out, &d.properties);
    }
}

/// Remaining length 0 means Success without properties (3.15.2.1); unlike
/// DISCONNECT, a reason code alone is not a defined form.
pub(crate) fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    if r.is_empty() {
        return Ok(auth);
    }
    let code = r.u8("reason code")?;
    if !reason::auth(code) {
        return Err(DecodeError::Malformed("AUTH reason code"));
    }
    auth.reason_code = ReasonCode(code);
    auth.properties = props::decode_auth(r)?;
    Ok(auth)
}

fn auth_is_short(a: &Auth) -> bool {
    a.reason_code == ReasonCode::SUCCESS && props::auth_is_empty(&a.properties)
}

pub(crate) fn auth_len(a: &Auth) -> usize {
    if auth_is_short(a) {
        0
    } else {
        1 + props::section_len(props::auth_len(&a.properties))
    }
}

pub(crate) fn check_auth(a: &Auth, protocol: Protocol) -> Result<(), EncodeError> {
    if !protocol.is_v5() {
        return Err(EncodeError::NotInProtocol("AUTH"));
    }
    props::check_auth(&a.properties)
}

pub(crate) fn put_auth(out: &mut BytesMut, a: &Auth) {
    if !auth_is_short(a) {
        out.put_u8(a.reason_code.0);
        props::put_auth(out, &a.properties);
    }
}
