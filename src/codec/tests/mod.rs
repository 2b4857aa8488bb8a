//! Unit tests across the codec: frame checks, per-packet validation, short
//! forms, error mapping and encode checks. Round trips of arbitrary packets
//! and the conformance vectors live in `tests/codec_*.rs`. One file per
//! packet group; the helpers they share are here.

use bytes::{Bytes, BytesMut};

use super::*;

const MAX: u32 = 1 << 20;

fn buf(hex_str: &str) -> BytesMut {
    BytesMut::from(&hex::decode(hex_str.replace(' ', "")).unwrap()[..])
}

fn server(hex_str: &str, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
    decode(&mut buf(hex_str), Some(protocol), MAX)
}

fn any(hex_str: &str, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
    decode_any(&mut buf(hex_str), protocol, MAX)
}

fn encode_hex(packet: &Packet, protocol: Protocol) -> String {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(packet, protocol));
    hex::encode(&out)
}

fn round_trip(packet: Packet, protocol: Protocol) {
    let mut out = BytesMut::new();
    encode(&packet, protocol, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(&packet, protocol));
    let decoded = decode_any(&mut out, protocol, MAX).unwrap().unwrap();
    assert_eq!(decoded, packet);
    assert!(out.is_empty());
}

fn publish(topic: &str, qos: QoS, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        payload: Bytes::from_static(payload),
        properties: None,
    }
}

fn connect(protocol: Protocol) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive_s: 30,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

mod connect;
mod encode;
mod frame;
mod publish;
mod subscribe;
