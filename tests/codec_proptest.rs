//! Property tests: any valid packet survives encode -> decode, `encoded_len`
//! is exact, the size cap needs only the fixed header, arbitrary or mutated
//! bytes never panic the decoder, and a stream cut into random chunks decodes
//! to the same packets as in one piece.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use ringmq::codec::*;

const MAX: u32 = 1 << 24;

// ---- leaves -----------------------------------------------------------------

fn text() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9/é€😀 _-]{0,10}".prop_map(ByteStr::from)
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9/é€😀 _$-]{1,12}".prop_map(ByteStr::from)
}

fn topic_filter() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9/+#é$]{1,12}".prop_map(ByteStr::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn user_properties() -> impl Strategy<Value = UserProperties> {
    vec((text(), text()), 0..3)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

fn code(valid: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(valid).prop_map(ReasonCode)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..200, 1u32..=268_435_455]
}

/// Payload and Payload Format Indicator: an indicator of 1 comes with UTF-8.
fn payload_with_format(v5: bool) -> impl Strategy<Value = (Bytes, Option<u8>)> {
    (binary(), text(), flag()).prop_map(move |(bytes, text, indicator)| {
        if !v5 {
            (bytes, None)
        } else if indicator == Some(1) {
            (text.into_bytes(), indicator)
        } else {
            (bytes, indicator)
        }
    })
}

const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

// ---- packets ----------------------------------------------------------------

fn connect(v5: bool) -> impl Strategy<Value = Packet> {
    let protocol = if v5 {
        Just(Protocol::V5).boxed()
    } else {
        prop_oneof![Just(Protocol::V31), Just(Protocol::V311)].boxed()
    };
    let properties = (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(1u32..),
        option::of(any::<u16>()),
        flag(),
        flag(),
        user_properties(),
        option::of((text(), option::of(binary()))),
    )
        .prop_map(
            |(session, receive, packet_size, alias_max, response, problem, user, auth)| {
                ConnectProperties {
                    session_expiry_interval_s: session,
                    receive_maximum: receive,
                    maximum_packet_size: packet_size,
                    topic_alias_maximum: alias_max,
                    request_response_information: response,
                    request_problem_information: problem,
                    user_properties: user,
                    authentication_method: auth.as_ref().map(|(method, _)| method.clone()),
                    authentication_data: auth.and_then(|(_, data)| data),
                }
            },
        );
    let will_properties = (
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(
            |(delay, expiry, content_type, response_topic, correlation, user)| WillProperties {
                will_delay_interval_s: delay,
                payload_format_indicator: None,
                message_expiry_interval_s: expiry,
                content_type,
                response_topic,
                correlation_data: correlation,
                user_properties: user,
            },
        );
    let will = option::of(
        (
            topic_name(),
            payload_with_format(v5),
            qos(),
            any::<bool>(),
            will_properties,
        )
            .prop_map(
                move |(topic, (payload, indicator), qos, retain, mut properties)| {
                    if v5 {
                        properties.payload_format_indicator = indicator;
                    } else {
                        properties = WillProperties::default();
                    }
                    Will {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties,
                    }
                },
            ),
    );
    (
        protocol,
        any::<bool>(),
        any::<u16>(),
        text(),
        will,
        option::of(text()),
        option::of(binary()),
        properties,
    )
        .prop_map(
            |(
                protocol,
                clean_start,
                keep_alive_s,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                let v5 = protocol.is_v5();
                // v3.x identifier rules (3.1: required; 3.1.1: empty only
                // with a clean session) and no password without user name.
                let client_id = match protocol {
                    Protocol::V31 if client_id.is_empty() => ByteStr::from("c"),
                    Protocol::V311 if client_id.is_empty() && !clean_start => ByteStr::from("c"),
                    _ => client_id,
                };
                let username = if !v5 && password.is_some() && username.is_none() {
                    Some(ByteStr::from("u"))
                } else {
                    username
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive_s,
                    client_id,
                    will,
                    username,
                    password,
                    properties: if v5 {
                        properties
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
}

fn connack(v5: bool) -> impl Strategy<Value = Packet> {
    let codes: &'static [u8] = if v5 {
        CONNACK_CODES
    } else {
        &[0, 1, 2, 3, 4, 5]
    };
    let strings = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(binary()),
    );
    let numbers = (
        option::of(any::<u32>()),
        option::of(1u16..),
        flag(),
        flag(),
        option::of(1u32..),
        option::of(any::<u16>()),
        flag(),
        flag(),
        flag(),
        option::of(any::<u16>()),
    );
    (
        any::<bool>(),
        code(codes),
        numbers,
        strings,
        user_properties(),
    )
        .prop_map(move |(session_present, reason_code, n, s, user)| {
            let properties = if v5 {
                ConnAckProperties {
                    session_expiry_interval_s: n.0,
                    receive_maximum: n.1,
                    maximum_qos: n.2,
                    retain_available: n.3,
                    maximum_packet_size: n.4,
                    assigned_client_identifier: s.0,
                    topic_alias_maximum: n.5,
                    reason_string: s.1,
                    user_properties: user,
                    wildcard_subscription_available: n.6,
                    subscription_identifiers_available: n.7,
                    shared_subscription_available: n.8,
                    server_keep_alive_s: n.9,
                    response_information: s.2,
                    server_reference: s.3,
                    authentication_method: s.4,
                    authentication_data: s.5,
                }
            } else {
                ConnAckProperties::default()
            };
            Packet::ConnAck(Box::new(ConnAck {
                // MQTT-3.2.2-6: no session on a refused connection.
                session_present: session_present && reason_code.0 == 0,
                reason_code,
                properties,
            }))
        })
}

fn publish(v5: bool) -> impl Strategy<Value = Packet> {
    let properties = (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        option::of(text()),
    );
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        1u16..,
        payload_with_format(v5),
        properties,
    )
        .prop_map(
            move |(dup, qos, retain, topic, empty_topic, packet_id, (payload, indicator), p)| {
                let properties = if v5 {
                    PublishProperties {
                        payload_format_indicator: indicator,
                        message_expiry_interval_s: p.0,
                        topic_alias: p.1,
                        response_topic: p.2,
                        correlation_data: p.3,
                        user_properties: p.4,
                        subscription_identifiers: p.5.into_iter().collect(),
                        content_type: p.6,
                    }
                } else {
                    PublishProperties::default()
                };
                // v5: a topic alias may stand for the name.
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    ByteStr::default()
                } else {
                    topic
                };
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_most_once { 0 } else { packet_id },
                    payload,
                    properties: properties.boxed(),
                })
            },
        )
}

fn ack_properties(v5: bool) -> impl Strategy<Value = AckProperties> {
    (option::of(text()), user_properties()).prop_map(move |(reason_string, user)| {
        if v5 {
            AckProperties {
                reason_string,
                user_properties: user,
            }
        } else {
            AckProperties::default()
        }
    })
}

fn pub_ack(v5: bool, codes: &'static [u8]) -> impl Strategy<Value = PubAck> {
    (any::<u16>(), code(codes), ack_properties(v5)).prop_map(
        move |(packet_id, reason_code, properties)| PubAck {
            packet_id,
            reason_code: if v5 { reason_code } else { ReasonCode::SUCCESS },
            properties,
        },
    )
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if v5 {
                SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            }
        },
    );
    (
        1u16..,
        vec((topic_filter(), options), 1..4),
        option::of(subscription_identifier()),
        user_properties(),
    )
        .prop_map(move |(packet_id, filters, id, user)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: if v5 {
                    SubscribeProperties {
                        subscription_identifier: id,
                        user_properties: user,
                    }
                } else {
                    SubscribeProperties::default()
                },
            })
        })
}

fn suback(v5: bool) -> impl Strategy<Value = Packet> {
    let codes: &'static [u8] = if v5 { SUBACK_CODES } else { &[0, 1, 2, 0x80] };
    (any::<u16>(), vec(code(codes), 1..4), ack_properties(v5)).prop_map(
        |(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        },
    )
}

fn unsubscribe(v5: bool) -> impl Strategy<Value = Packet> {
    (1u16.., vec(topic_filter(), 1..4), user_properties()).prop_map(
        move |(packet_id, filters, user)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: UnsubscribeProperties {
                    user_properties: if v5 { user } else { Vec::new() },
                },
            })
        },
    )
}

fn unsuback(v5: bool) -> impl Strategy<Value = Packet> {
    (
        any::<u16>(),
        vec(code(UNSUBACK_CODES), 1..4),
        ack_properties(v5),
    )
        .prop_map(move |(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes: if v5 { reason_codes } else { Vec::new() },
                properties,
            })
        })
}

fn disconnect(v5: bool) -> impl Strategy<Value = Packet> {
    (
        code(DISCONNECT_CODES),
        option::of(any::<u32>()),
        option::of(text()),
        user_properties(),
        option::of(text()),
    )
        .prop_map(
            move |(reason_code, session, reason_string, user, reference)| {
                Packet::Disconnect(Box::new(if v5 {
                    Disconnect {
                        reason_code,
                        properties: DisconnectProperties {
                            session_expiry_interval_s: session,
                            reason_string,
                            user_properties: user,
                            server_reference: reference,
                        },
                    }
                } else {
                    Disconnect::default()
                }))
            },
        )
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        code(&[0x00, 0x18, 0x19]),
        option::of(text()),
        option::of(binary()),
        option::of(text()),
        user_properties(),
    )
        .prop_map(|(reason_code, method, data, reason_string, user)| {
            Packet::Auth(Box::new(Auth {
                reason_code,
                properties: AuthProperties {
                    authentication_method: method,
                    authentication_data: data,
                    reason_string,
                    user_properties: user,
                },
            }))
        })
}

fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let v5 = protocol.is_v5();
    let common = prop_oneof![
        connect(v5),
        connack(v5),
        publish(v5),
        publish(v5),
        pub_ack(v5, PUBACK_CODES).prop_map(Packet::PubAck),
        pub_ack(v5, PUBACK_CODES).prop_map(Packet::PubRec),
        pub_ack(v5, PUBREL_CODES).prop_map(Packet::PubRel),
        pub_ack(v5, PUBREL_CODES).prop_map(Packet::PubComp),
        subscribe(v5),
        suback(v5),
        unsubscribe(v5),
        unsuback(v5),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v5),
    ];
    if v5 {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::V311), Just(Protocol::V5)]
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    protocol().prop_flat_map(|protocol| (Just(protocol), packet(protocol)))
}

fn encoded(packet: &Packet, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).unwrap();
    out
}

fn from_client(packet: &Packet) -> bool {
    match packet {
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => false,
        Packet::Publish(p) => p.properties().subscription_identifiers.is_empty(),
        _ => true,
    }
}

/// Decodes until the buffer runs dry or an error; never panics.
fn drain(
    buf: &mut BytesMut,
    mut step: impl FnMut(&mut BytesMut) -> Result<Option<Packet>, DecodeError>,
) {
    while let Ok(Some(_)) = step(buf) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip((protocol, packet) in protocol_and_packet()) {
        let mut out = encoded(&packet, protocol);
        prop_assert_eq!(out.len(), encoded_len(&packet, protocol));
        let bytes = out.clone();
        prop_assert_eq!(decode_any(&mut out, protocol, MAX), Ok(Some(packet.clone())));
        prop_assert!(out.is_empty());

        // What a client may send, the server-side decoder reads the same.
        if from_client(&packet) {
            let connection = match &packet {
                Packet::Connect(_) => None,
                _ => Some(protocol),
            };
            let mut buf = bytes.clone();
            prop_assert_eq!(decode(&mut buf, connection, MAX), Ok(Some(packet.clone())));
        } else {
            prop_assert!(decode(&mut bytes.clone(), Some(protocol), MAX).is_err());
        }

        // The cap needs only the fixed header: refused one byte short of
        // fitting, from the header alone.
        let header_len = bytes.len() - remaining_len_of(&bytes);
        let mut header = BytesMut::from(&bytes[..header_len]);
        let too_small = bytes.len() as u32 - 1;
        let refused = decode_any(&mut header, protocol, too_small);
        prop_assert!(
            matches!(refused, Err(DecodeError::PacketTooLarge { size, .. }) if size == bytes.len()),
            "{:?}", refused
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
            drain(&mut BytesMut::from(&bytes[..]), |b| decode_any(b, protocol, MAX));
            drain(&mut BytesMut::from(&bytes[..]), |b| decode(b, Some(protocol), MAX));
        }
        drain(&mut BytesMut::from(&bytes[..]), |b| decode(b, None, MAX));
    }

    #[test]
    fn mutated_packets_never_panic(
        (protocol, packet) in protocol_and_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&packet, protocol).to_vec();
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        // Sometimes also lie about the length by truncating.
        let len = cut.index(bytes.len() + 1).max(bytes.len() / 2);
        bytes.truncate(len);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(packet)) = decode_any(&mut buf, protocol, MAX) {
            check_reencodes(&packet, protocol)?;
        }
        drain(&mut BytesMut::from(&bytes[..]), |b| decode(b, Some(protocol), MAX));
        drain(&mut BytesMut::from(&bytes[..]), |b| decode(b, None, MAX));
    }

    #[test]
    fn chunked_stream_decodes_like_whole(
        (protocol, packets) in protocol().prop_flat_map(|p| (Just(p), vec(packet(p), 1..8))),
        chunk_lens in vec(1usize..40, 1..64),
    ) {
        let mut stream = BytesMut::new();
        for packet in &packets {
            encode(packet, protocol, &mut stream).unwrap();
        }
        let stream = stream.freeze();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        let mut chunks = chunk_lens.iter().cycle();
        while fed < stream.len() {
            let end = (fed + chunks.next().unwrap()).min(stream.len());
            buf.extend_from_slice(&stream[fed..end]);
            fed = end;
            while let Some(packet) = decode_any(&mut buf, protocol, MAX).unwrap() {
                decoded.push(packet);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packets);
    }
}

/// Whatever the decoder accepts encodes back to the same packet; the one
/// exception is a v3.1.1-style CONNACK refusal read on a v5 connection.
fn check_reencodes(packet: &Packet, protocol: Protocol) -> Result<(), TestCaseError> {
    if let Packet::ConnAck(c) = packet {
        if protocol.is_v5() && (1..=5).contains(&c.reason_code.0) {
            return Ok(());
        }
    }
    let mut out = BytesMut::new();
    prop_assert_eq!(encode(packet, protocol, &mut out), Ok(()));
    prop_assert_eq!(out.len(), encoded_len(packet, protocol));
    prop_assert_eq!(
        decode_any(&mut out, protocol, MAX),
        Ok(Some(packet.clone()))
    );
    Ok(())
}

/// Remaining length from an encoded packet's fixed header.
fn remaining_len_of(bytes: &[u8]) -> usize {
    let mut value = 0;
    for (i, byte) in bytes[1..].iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

// ---- fuzz seed corpus -------------------------------------------------------

const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode");

/// Regenerates the committed seed corpus (deterministic):
/// `cargo test --test codec_proptest -- --ignored write_fuzz_seed_corpus`.
#[test]
#[ignore]
fn write_fuzz_seed_corpus() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    std::fs::create_dir_all(CORPUS_DIR).unwrap();
    for protocol in [Protocol::V311, Protocol::V5] {
        let tag = if protocol.is_v5() { "v5" } else { "v311" };
        let strategy = packet(protocol);
        for i in 0..40 {
            let packet = strategy.new_tree(&mut runner).unwrap().current();
            let bytes = encoded(&packet, protocol);
            let name = format!("{tag}-{i:02}-{}", packet.kind().to_lowercase());
            std::fs::write(format!("{CORPUS_DIR}/{name}"), &bytes).unwrap();
        }
        // Whole sessions as a server reads them: CONNECT first.
        let connect_strategy = connect(protocol.is_v5());
        for i in 0..6 {
            let Packet::Connect(mut first) =
                connect_strategy.new_tree(&mut runner).unwrap().current()
            else {
                unreachable!()
            };
            first.protocol = protocol;
            if !protocol.is_v5() {
                first.properties = ConnectProperties::default();
                if let Some(will) = &mut first.will {
                    will.properties = WillProperties::default();
                }
            }
            let mut stream = encoded(&Packet::Connect(first), protocol);
            for _ in 0..4 {
                let packet = strategy.new_tree(&mut runner).unwrap().current();
                if from_client(&packet) && !matches!(packet, Packet::Connect(_)) {
                    encode(&packet, protocol, &mut stream).unwrap();
                }
            }
            std::fs::write(format!("{CORPUS_DIR}/{tag}-session-{i}"), &stream).unwrap();
        }
    }
}

/// Replays the committed corpus (and any crash reproducers in
/// fuzz/artifacts) through every decoder, so CI covers what fuzzing found
/// without needing cargo-fuzz.
#[test]
fn fuzz_corpus_replays_cleanly() {
    let mut files = 0;
    for dir in [
        CORPUS_DIR,
        concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/artifacts/decode"),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
                drain(&mut BytesMut::from(&bytes[..]), |b| {
                    decode_any(b, protocol, MAX)
                });
                drain(&mut BytesMut::from(&bytes[..]), |b| {
                    decode(b, Some(protocol), MAX)
                });
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let mut connection = None;
            while let Ok(Some(packet)) = decode(&mut buf, connection, MAX) {
                if let Packet::Connect(c) = &packet {
                    connection = Some(c.protocol);
                }
            }
            let name = path.file_name().unwrap().to_string_lossy();
            if name.contains("-session-") {
                assert!(buf.is_empty(), "{name}: the server did not read it all");
            }
            files += 1;
        }
    }
    assert!(
        files >= 50,
        "seed corpus missing: {files} files in {CORPUS_DIR}"
    );
}
