//! Codec micro-benchmarks: decode and encode of the packets on the hot path.
//!
//! Every decode starts from a fresh copy of the encoded bytes, made in
//! Criterion's setup (not timed), because `decode` consumes its input.
//! `decode_stream_64k` decodes a whole 64 KiB read buffer (the size of one
//! connection's read buffer, `limits::READ_BUFFER_BYTES`) of back-to-back
//! QoS 0 PUBLISHes, as a shard's reader does after one large read.
//!
//! Run: `cargo bench --bench codec`; docs/microbenchmarks.md has results.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringmq::codec::{
    decode, encode, encoded_len, ByteStr, Connect, ConnectProperties, Packet, Protocol, Publish,
    PublishProperties, QoS, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use ringmq::limits::{PACKET_SIZE_MAX_BYTES, READ_BUFFER_BYTES};

/// The payload size of the "small message" cases: a typical sensor reading.
const SMALL_PAYLOAD_BYTES: usize = 64;

fn publish_qos0(payload_bytes: usize) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteStr::from_static("site/17/device/4242/sensor/temperature"),
        packet_id: 0,
        payload: Bytes::from(vec![0x5a; payload_bytes]),
        properties: None,
    }
}

/// A v5 request/response style PUBLISH: QoS 1 with user properties,
/// correlation data, response topic, content type and message expiry.
fn publish_qos1_v5_properties() -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteStr::from_static("site/17/device/4242/command/set-point"),
        packet_id: 4711,
        payload: Bytes::from(vec![0x5a; SMALL_PAYLOAD_BYTES]),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(300),
            response_topic: Some(ByteStr::from_static("site/17/device/4242/command/reply")),
            correlation_data: Some(Bytes::from_static(b"0123456789abcdef")),
            user_properties: vec![
                (
                    ByteStr::from_static("trace-id"),
                    ByteStr::from_static("4bf92f3577b34da6a3ce929d0e0e4736"),
                ),
                (ByteStr::from_static("tenant"), ByteStr::from_static("acme")),
                (
                    ByteStr::from_static("schema"),
                    ByteStr::from_static("setpoint.v2"),
                ),
            ],
            content_type: Some(ByteStr::from_static("application/json")),
            ..PublishProperties::default()
        }
        .boxed(),
    }
}

fn connect(protocol: Protocol) -> Connect {
    let properties = if protocol.is_v5() {
        ConnectProperties {
            session_expiry_interval_s: Some(3600),
            receive_maximum: Some(100),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Connect {
        protocol,
        clean_start: false,
        keep_alive_s: 60,
        client_id: ByteStr::from_static("device-0000000000004242"),
        will: None,
        username: Some(ByteStr::from_static("device-4242")),
        password: Some(Bytes::from_static(b"s3cret-token-0123456789")),
        properties,
    }
}

fn subscribe(protocol: Protocol) -> Subscribe {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    Subscribe {
        packet_id: 7,
        filters: vec![
            (
                ByteStr::from_static("site/17/device/4242/command/#"),
                options,
            ),
            (ByteStr::from_static("site/17/+/+/broadcast"), options),
            (ByteStr::from_static("$share/workers/site/17/jobs"), options),
        ],
        properties: SubscribeProperties {
            subscription_identifier: protocol.is_v5().then_some(12),
            ..SubscribeProperties::default()
        },
    }
}

fn encode_to_bytes(packet: &Packet, protocol: Protocol) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(packet, protocol));
    encode(packet, protocol, &mut out).expect("bench packets are valid");
    out.freeze()
}

/// The cases shared by the decode and encode groups: (name, protocol,
/// protocol the decoder is in, packet).
fn cases() -> Vec<(&'static str, Protocol, Option<Protocol>, Packet)> {
    vec![
        (
            "publish_qos0_64B_v311",
            Protocol::V311,
            Some(Protocol::V311),
            Packet::Publish(publish_qos0(SMALL_PAYLOAD_BYTES)),
        ),
        (
            "publish_qos0_64B_v5",
            Protocol::V5,
            Some(Protocol::V5),
            Packet::Publish(publish_qos0(SMALL_PAYLOAD_BYTES)),
        ),
        (
            "publish_qos1_v5_properties",
            Protocol::V5,
            Some(Protocol::V5),
            Packet::Publish(publish_qos1_v5_properties()),
        ),
        // CONNECT is decoded before the protocol is known.
        (
            "connect_v311",
            Protocol::V311,
            None,
            Packet::Connect(Box::new(connect(Protocol::V311))),
        ),
        (
            "connect_v5",
            Protocol::V5,
            None,
            Packet::Connect(Box::new(connect(Protocol::V5))),
        ),
        (
            "subscribe_3_filters_v311",
            Protocol::V311,
            Some(Protocol::V311),
            Packet::Subscribe(subscribe(Protocol::V311)),
        ),
        (
            "subscribe_3_filters_v5",
            Protocol::V5,
            Some(Protocol::V5),
            Packet::Subscribe(subscribe(Protocol::V5)),
        ),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, protocol, decoder_protocol, packet) in cases() {
        let wire = encode_to_bytes(&packet, protocol);
        // Sanity: the bytes decode back to the packet the case describes.
        let decoded = decode(
            &mut BytesMut::from(&wire[..]),
            decoder_protocol,
            PACKET_SIZE_MAX_BYTES,
        )
        .expect("decodes")
        .expect("complete");
        assert_eq!(decoded, packet, "{name} round trip");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| decode(buf, decoder_protocol, PACKET_SIZE_MAX_BYTES),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, protocol, _, packet) in cases() {
        let len = encoded_len(&packet, protocol);
        group.throughput(Throughput::Bytes(len as u64));
        let mut out = BytesMut::with_capacity(len);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&packet), protocol, &mut out).expect("encodes");
                out.len()
            })
        });
    }
    group.finish();

    // The writer sizes its batch with this before encoding.
    let mut group = c.benchmark_group("encoded_len");
    for (name, protocol, _, packet) in cases() {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| encoded_len(black_box(&packet), protocol))
        });
    }
    group.finish();
}

/// A 64 KiB buffer of back-to-back QoS 0 PUBLISHes with 64-byte payloads
/// (the tail that does not fit a whole packet is left out), decoded until
/// `decode` reports an incomplete packet.
fn bench_decode_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_stream_64k");
    for protocol in [Protocol::V311, Protocol::V5] {
        let one = encode_to_bytes(
            &Packet::Publish(publish_qos0(SMALL_PAYLOAD_BYTES)),
            protocol,
        );
        let packets = READ_BUFFER_BYTES / one.len();
        let mut stream = BytesMut::with_capacity(packets * one.len());
        for _ in 0..packets {
            stream.extend_from_slice(&one);
        }
        let stream = stream.freeze();
        let name = if protocol.is_v5() {
            "publish_qos0_64B_v5"
        } else {
            "publish_qos0_64B_v311"
        };
        group.throughput(Throughput::Elements(packets as u64));
        group.bench_function(BenchmarkId::new("packets", name), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&stream[..]),
                |buf| decode_all(buf, protocol, packets),
                BatchSize::SmallInput,
            )
        });
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(BenchmarkId::new("bytes", name), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&stream[..]),
                |buf| decode_all(buf, protocol, packets),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn decode_all(buf: &mut BytesMut, protocol: Protocol, expected: usize) -> usize {
    let mut payload_bytes = 0;
    let mut count = 0;
    while let Some(packet) = decode(buf, Some(protocol), PACKET_SIZE_MAX_BYTES).expect("valid") {
        if let Packet::Publish(p) = packet {
            payload_bytes += p.payload.len();
        }
        count += 1;
    }
    assert_eq!(count, expected);
    payload_bytes
}

criterion_group!(benches, bench_decode, bench_encode, bench_decode_stream);
criterion_main!(benches);
