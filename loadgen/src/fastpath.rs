//! In-place parsing of the packets a load generator receives by the million:
//! PUBLISH (subscribers) and PUBACK / PUBREC / PUBREL / PUBCOMP.
//!
//! `ringmq::codec::decode_any` turns each frame into owned `Bytes` (two
//! atomic reference-count updates) and validates the topic as UTF-8; in the
//! selftest profile that was a third of the load generator's CPU. Here a
//! frame is a slice of the read buffer: the fixed header, the topic length,
//! the packet id and the v5 property length are checked against the frame
//! length and skipped, nothing is copied. Every other packet kind goes to the
//! codec, and `--codec-decode` sends everything there (full validation of
//! what the broker sends, at a lower rate). The tests check this parser
//! against the codec's encoder.

/// One frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Publish {
        qos: u8,
        packet_id: u16,
        payload: &'a [u8],
    },
    /// PUBACK (4), PUBREC (5), PUBREL (6), PUBCOMP (7).
    Ack {
        kind: u8,
        packet_id: u16,
        reason: u8,
    },
    /// Anything else: decode with the codec.
    Other,
}

pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;

/// Variable byte integer at the start of `b`: Ok(None) if incomplete.
fn vbi(b: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let mut value = 0usize;
    for (k, &byte) in b.iter().enumerate().take(4) {
        value |= ((byte & 0x7F) as usize) << (7 * k);
        if byte & 0x80 == 0 {
            return Ok(Some((value, k + 1)));
        }
    }
    if b.len() >= 4 {
        return Err("variable byte integer longer than 4 bytes");
    }
    Ok(None)
}

/// Parse the frame at the start of `buf`. Ok(None): incomplete.
/// Ok(Some((frame, length in bytes))).
pub fn parse(
    buf: &[u8],
    v5: bool,
    max_packet_size: usize,
) -> Result<Option<(Frame<'_>, usize)>, &'static str> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_len)) = vbi(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_len + remaining;
    if size > max_packet_size {
        return Err("packet larger than the maximum packet size");
    }
    if buf.len() < size {
        return Ok(None);
    }
    let body = &buf[1 + len_len..size];
    let kind = first >> 4;
    let frame = match kind {
        3 => {
            let qos = (first >> 1) & 3;
            if qos == 3 {
                return Err("PUBLISH with QoS 3");
            }
            if body.len() < 2 {
                return Err("PUBLISH shorter than its topic length");
            }
            let mut pos = 2 + u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut packet_id = 0;
            if qos > 0 {
                let id = body.get(pos..pos + 2).ok_or("PUBLISH without packet id")?;
                packet_id = u16::from_be_bytes([id[0], id[1]]);
                if packet_id == 0 {
                    return Err("PUBLISH with packet id 0");
                }
                pos += 2;
            }
            if v5 {
                let rest = body.get(pos..).ok_or("PUBLISH shorter than its topic")?;
                let (props, n) = vbi(rest)?.ok_or("PUBLISH property length truncated")?;
                pos += n + props;
            }
            let payload = body.get(pos..).ok_or("PUBLISH shorter than its header")?;
            Frame::Publish {
                qos,
                packet_id,
                payload,
            }
        }
        PUBACK..=PUBCOMP => {
            if body.len() < 2 {
                return Err("acknowledgement without packet id");
            }
            Frame::Ack {
                kind,
                packet_id: u16::from_be_bytes([body[0], body[1]]),
                reason: if v5 && body.len() > 2 { body[2] } else { 0 },
            }
        }
        _ => Frame::Other,
    };
    Ok(Some((frame, size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ringmq::codec::{
        encode, AckProperties, ByteStr, Packet, Protocol, PubAck, Publish, PublishProperties, QoS,
        ReasonCode,
    };
    use smallvec::smallvec;

    fn enc(p: &Packet, protocol: Protocol) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(p, protocol, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn publish_matches_the_codec() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [0usize, 24, 200, 20_000] {
                    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                    let mut properties = PublishProperties::default();
                    if protocol.is_v5() {
                        // What a broker may add on the way to a subscriber.
                        properties.subscription_identifiers = smallvec![7, 300];
                        properties.message_expiry_interval_s = Some(60);
                    }
                    let p = Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: ByteStr::from("a/b/ü"),
                        packet_id: if qos == QoS::AtMostOnce { 0 } else { 513 },
                        payload: payload.clone().into(),
                        properties: properties.boxed(),
                    });
                    let mut bytes = enc(&p, protocol);
                    let len = bytes.len();
                    bytes.extend_from_slice(&[0xE0, 0]); // a DISCONNECT behind it
                    let (frame, n) = parse(&bytes, protocol.is_v5(), 1 << 20).unwrap().unwrap();
                    assert_eq!(n, len);
                    assert_eq!(
                        frame,
                        Frame::Publish {
                            qos: qos as u8,
                            packet_id: if qos == QoS::AtMostOnce { 0 } else { 513 },
                            payload: &payload,
                        }
                    );
                    // Every strict prefix is incomplete, never an error.
                    for cut in [0, 1, 2, len / 2, len - 1] {
                        assert_eq!(parse(&bytes[..cut], protocol.is_v5(), 1 << 20), Ok(None));
                    }
                    assert!(parse(&bytes, protocol.is_v5(), len - 1).is_err());
                }
            }
        }
    }

    #[test]
    fn acks_match_the_codec() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for (kind, make) in [
                (PUBACK, Packet::PubAck as fn(PubAck) -> Packet),
                (PUBREC, Packet::PubRec),
                (PUBREL, Packet::PubRel),
                (PUBCOMP, Packet::PubComp),
            ] {
                for reason in [ReasonCode::SUCCESS, ReasonCode(0x10)] {
                    if reason.0 == 0x10 && kind >= PUBREL {
                        continue;
                    }
                    let a = PubAck {
                        packet_id: 0xABCD,
                        reason_code: reason,
                        properties: AckProperties::default(),
                    };
                    let bytes = enc(&make(a), protocol);
                    let (frame, n) = parse(&bytes, protocol.is_v5(), 1 << 20).unwrap().unwrap();
                    assert_eq!(n, bytes.len());
                    let want_reason = if protocol.is_v5() { reason.0 } else { 0 };
                    assert_eq!(
                        frame,
                        Frame::Ack {
                            kind,
                            packet_id: 0xABCD,
                            reason: want_reason
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn other_kinds_and_errors() {
        assert_eq!(parse(&[0xD0, 0], true, 100), Ok(Some((Frame::Other, 2))));
        assert_eq!(
            parse(&[0x20, 2, 0, 0], false, 100),
            Ok(Some((Frame::Other, 4)))
        );
        assert!(parse(&[0x36, 2, 0, 0], false, 100).is_err()); // QoS 3
        assert!(parse(&[0x32, 3, 0, 1, b'a'], false, 100).is_err()); // no packet id
        assert!(parse(&[0x32, 5, 0, 1, b'a', 0, 0], false, 100).is_err()); // packet id 0
        assert!(parse(&[0x30, 3, 0, 9, b'a'], false, 100).is_err()); // topic past the end
        assert!(parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], false, 100).is_err());
    }
}
