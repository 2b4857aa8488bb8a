//! Feeds arbitrary bytes to the decoder the way a connection does, under
//! every protocol and a small and a large size cap, and checks that whatever
//! is accepted re-encodes to the same packet with an exact `encoded_len`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringmq::codec::{decode, decode_any, encode, encoded_len, Packet, Protocol};

const PROTOCOLS: [Protocol; 3] = [Protocol::V31, Protocol::V311, Protocol::V5];
const SIZE_CAPS: [u32; 2] = [64, 1 << 20];

fuzz_target!(|data: &[u8]| {
    for max in SIZE_CAPS {
        // Server side: nothing before CONNECT, then its protocol.
        let mut buf = BytesMut::from(data);
        let mut protocol = None;
        while let Ok(Some(packet)) = decode(&mut buf, protocol, max) {
            if let Packet::Connect(connect) = &packet {
                protocol = Some(connect.protocol);
            }
            check_reencodes(&packet, protocol.unwrap_or(Protocol::V311));
        }
        for connection in PROTOCOLS {
            let mut buf = BytesMut::from(data);
            while let Ok(Some(packet)) = decode(&mut buf, Some(connection), max) {
                check_reencodes(&packet, connection);
            }
            let mut buf = BytesMut::from(data);
            while let Ok(Some(packet)) = decode_any(&mut buf, connection, max) {
                check_reencodes(&packet, connection);
            }
        }
    }
});

fn check_reencodes(packet: &Packet, protocol: Protocol) {
    // The one accepted form we do not write back: a v3.1.1-style CONNACK
    // refusal read on a v5 connection (a v3.1.1 server's answer).
    if let Packet::ConnAck(connack) = packet {
        if protocol.is_v5() && (1..=5).contains(&connack.reason_code.0) {
            return;
        }
    }
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("a decoded packet encodes");
    assert_eq!(out.len(), encoded_len(packet, protocol));
    let again = decode_any(&mut out, protocol, u32::MAX).expect("re-encoded packet decodes");
    assert_eq!(again.as_ref(), Some(packet));
    assert!(out.is_empty());
}
