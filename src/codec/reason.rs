//! Which reason codes each v5 packet kind may carry (MQTT 5.0 section 2.4
//! and each packet's Reason Code table). A code outside its packet's table
//! is treated as malformed: the peer sent something the spec does not define.

/// CONNACK (MQTT 5.0 3.2.2.2).
pub(crate) fn connack_v5(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

/// v3.1.1 CONNACK return codes 0..5; 6..255 are reserved.
pub(crate) fn connack_v3(code: u8) -> bool {
    code <= 5
}

/// PUBACK and PUBREC (3.4.2.1, 3.5.2.1).
pub(crate) fn puback(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// PUBREL and PUBCOMP (3.6.2.1, 3.7.2.1).
pub(crate) fn pubrel(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

/// SUBACK (3.9.3).
pub(crate) fn suback_v5(code: u8) -> bool {
    matches!(
        code,
        0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// v3.1.1 SUBACK return codes (3.9.3).
pub(crate) fn suback_v3(code: u8) -> bool {
    matches!(code, 0x00..=0x02 | 0x80)
}

/// UNSUBACK (3.11.3).
pub(crate) fn unsuback(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// DISCONNECT (3.14.2.1).
pub(crate) fn disconnect(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
    )
}

/// AUTH (3.15.2.1).
pub(crate) fn auth(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_spec_samples() {
        assert!(connack_v5(0x8C) && !connack_v5(0x8B) && !connack_v5(0x01));
        assert!(puback(0x10) && !puback(0x11) && !puback(0x05));
        assert!(pubrel(0x92) && !pubrel(0x10));
        assert!(suback_v5(0xA2) && !suback_v5(0x79) && !suback_v5(0x03));
        assert!(unsuback(0x11) && !unsuback(0x84));
        assert!(disconnect(0x04) && disconnect(0xA2) && !disconnect(0x05));
        assert!(!disconnect(0x8C) && !disconnect(0x91) && !disconnect(0x92));
        assert!(auth(0x18) && !auth(0x17));
    }
}
