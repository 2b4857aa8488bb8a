use super::*;

/// The id of the message a test sends as number `seq` of stream 3.
fn id_of(seq: u64) -> MessageId {
    MessageId {
        node: 7,
        shard: 3,
        seq: 100 + seq,
    }
}

fn out(seq: u64, topic: &str, payload: &[u8]) -> OutForward {
    OutForward {
        id: id_of(seq),
        stream_seq: seq,
        message: Arc::new(Message {
            topic: ByteStr::from(topic),
            payload: Bytes::copy_from_slice(payload),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: None,
            origin: None,
            expires_at: None,
            id: Some(id_of(seq)),
        }),
        expires_at_unix_ms: None,
        shared: None,
    }
}

/// A message with every optional field set.
fn full(seq: u64) -> OutForward {
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval_s: Some(60),
        response_topic: Some(ByteStr::from("reply/to")),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![
            (ByteStr::from("k1"), ByteStr::from("v1")),
            (ByteStr::from("k\u{e9}"), ByteStr::from("")),
        ],
        content_type: Some(ByteStr::from("text/plain")),
        ..PublishProperties::default()
    };
    OutForward {
        id: id_of(seq),
        stream_seq: seq,
        message: Arc::new(Message {
            topic: ByteStr::from("a/\u{fc}ber/topic"),
            payload: Bytes::from_static(b"\x00\x01binary"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: props.boxed(),
            origin: Some(Origin::new(&ByteStr::from("publisher-1"))),
            expires_at: None,
            id: Some(id_of(seq)),
        }),
        expires_at_unix_ms: Some(1_700_000_000_123),
        shared: Some(SharedTarget {
            group: "g".into(),
            filter: "a/+/topic".into(),
        }),
    }
}

const WINDOW: WindowId = WindowId {
    epoch: 42,
    opened: 5,
};

fn encode(forwards: &[OutForward]) -> Bytes {
    let bytes = forwards.iter().map(batch_bytes).sum();
    let mut e = RecordsEncoder::new(WINDOW, 3, &forwards[0], bytes);
    for f in forwards {
        e.push(f);
    }
    assert_eq!(e.count(), forwards.len());
    e.finish()
}

fn assert_same(got: &InForward, sent: &OutForward) {
    assert_eq!(got.id, sent.id);
    assert_eq!(got.stream_seq, sent.stream_seq);
    assert_eq!(got.expires_at_unix_ms, sent.expires_at_unix_ms);
    assert_eq!(got.shared, sent.shared);
    assert_eq!(
        got.message, *sent.message,
        "the message comes back as it was"
    );
}

#[test]
fn a_frame_round_trips_with_every_field() {
    let sent = [full(9), out(10, "t", b"x"), full(11), out(12, "t/2", b"")];
    let body = encode(&sent);
    let frame = decode(&body).expect("decodes");
    assert_eq!(frame.window, WINDOW);
    assert_eq!(frame.shard, 3);
    assert_eq!(frame.forwards.len(), sent.len());
    for (got, sent) in frame.forwards.iter().zip(&sent) {
        assert_same(got, sent);
    }
}

#[test]
fn topics_and_payloads_are_slices_of_the_frame() {
    let sent = [out(1, "topic/one", b"payload one"), out(2, "t2", b"two")];
    let body = encode(&sent);
    let frame = decode(&body).unwrap();
    let inside = body.as_ptr_range();
    for f in &frame.forwards {
        for part in [&f.message.payload[..], f.message.topic.as_bytes()] {
            assert!(
                inside.contains(&part.as_ptr()),
                "not a copy: points into the frame body"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let body = encode(&[full(1), out(2, "t", b"abc"), full(3)]);
    for len in 0..body.len() {
        let cut = body.slice(..len);
        assert!(
            decode(&cut).is_err(),
            "{len} of {} bytes decoded",
            body.len()
        );
    }
    // A byte more than the records hold.
    let mut longer = body.to_vec();
    longer.push(0);
    assert_eq!(
        decode(&Bytes::from(longer)).unwrap_err(),
        RecordsError::Trailing(1)
    );
}

/// Each record carries its message's own id, whatever node and shard
/// published it: a message a shared group handed back on this node and
/// picked again for another node keeps its publisher's id. Two messages
/// with the same bytes stay two ids.
#[test]
fn each_record_carries_its_messages_own_id() {
    let mut first = out(1, "t", b"x");
    let mut second = out(2, "t", b"x");
    let elsewhere = MessageId {
        node: 0xFEED_F00D,
        shard: 60_000,
        seq: u64::MAX - 1,
    };
    first.id = elsewhere;
    Arc::get_mut(&mut first.message).unwrap().id = Some(elsewhere);
    second.id.seq = 1 << 62;
    Arc::get_mut(&mut second.message).unwrap().id = Some(second.id);
    let sent = [first, second];
    let frame = decode(&encode(&sent)).expect("decodes");
    let ids: Vec<_> = frame.forwards.iter().map(|f| f.message.id).collect();
    assert_eq!(ids, [Some(elsewhere), Some(sent[1].id)]);
    for (got, sent) in frame.forwards.iter().zip(&sent) {
        assert_same(got, sent);
    }
}

/// Layout 1 (ids made up by the driver) and any later one are refused.
#[test]
fn an_unknown_layout_is_refused() {
    assert_eq!(RECORDS_LAYOUT_VERSION, 2);
    for layout in [0, 1, RECORDS_LAYOUT_VERSION + 1] {
        let mut body = encode(&[out(1, "t", b"x")]).to_vec();
        body[0] = layout;
        assert_eq!(
            decode(&Bytes::from(body)).unwrap_err(),
            RecordsError::UnknownLayout { found: layout }
        );
    }
}

#[test]
fn a_wrong_count_is_refused() {
    let body = encode(&[out(1, "t", b"x"), out(2, "t", b"y")]).to_vec();
    let with_count = |n: u32| {
        let mut b = body.clone();
        b[4..8].copy_from_slice(&n.to_le_bytes());
        decode(&Bytes::from(b))
    };
    assert!(matches!(
        with_count(0),
        Err(RecordsError::Count { count: 0, .. })
    ));
    assert!(matches!(with_count(1), Err(RecordsError::Trailing(_))));
    assert!(matches!(with_count(3), Err(RecordsError::Truncated { .. })));
    let over = u32::try_from(FORWARD_BATCH_MESSAGES_MAX).unwrap() + 1;
    assert!(matches!(with_count(over), Err(RecordsError::Count { .. })));
    // A huge count is refused before anything is allocated for it.
    assert!(matches!(
        with_count(u32::MAX),
        Err(RecordsError::Count { .. })
    ));
    assert!(with_count(2).is_ok());
}

#[test]
fn an_oversized_body_or_record_length_is_refused() {
    let big = Bytes::from(vec![
        RECORDS_LAYOUT_VERSION;
        CLUSTER_LOGIC_BODY_MAX_BYTES + 1
    ]);
    assert!(matches!(decode(&big), Err(RecordsError::TooLarge { .. })));
    // A record length past the end of the body.
    let mut body = encode(&[out(1, "t", b"x")]).to_vec();
    body[BODY_HEAD_BYTES..BODY_HEAD_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode(&Bytes::from(body)),
        Err(RecordsError::Truncated {
            what: "a record",
            ..
        })
    ));
    // A payload length past the end of its record.
    let mut body = encode(&[out(1, "t", b"x"), out(2, "t", b"y")]).to_vec();
    let payload_len_at = BODY_HEAD_BYTES + 4 + 14 + 1 + 2;
    body[payload_len_at..payload_len_at + 4].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        decode(&Bytes::from(body)),
        Err(RecordsError::Truncated {
            what: "the payload",
            ..
        })
    ));
}

#[test]
fn bad_strings_and_flags_are_refused() {
    let topic_at = BODY_HEAD_BYTES + RECORD_HEAD_BYTES;
    let body = encode(&[out(1, "ab", b"x")]).to_vec();
    let with = |at: usize, byte: u8| {
        let mut b = body.clone();
        b[at] = byte;
        decode(&Bytes::from(b))
    };
    let bad_utf8 = with(topic_at, 0xff).unwrap_err();
    assert!(
        matches!(&bad_utf8, RecordsError::Invalid { index: 0, reason } if reason.contains("topic")),
        "{bad_utf8}"
    );
    assert!(with(topic_at, 0).is_err(), "NUL in a topic");
    assert!(with(topic_at, b'+').is_err(), "a wildcard in a topic name");
    let flags_at = BODY_HEAD_BYTES + 4 + 14;
    assert!(with(flags_at, 3).is_err(), "QoS 3");
    assert!(with(flags_at, 0x80).is_err(), "an unknown flag");
    assert!(with(1, 1).is_err(), "frame flags");
    // The second record's index is named.
    let mut body = encode(&[out(1, "ok", b"x"), out(2, "ab", b"y")]).to_vec();
    let second_topic_at = body.len() - 3;
    body[second_topic_at] = 0xc3;
    assert!(matches!(
        decode(&Bytes::from(body)),
        Err(RecordsError::Invalid { index: 1, .. })
    ));
}

#[test]
fn a_record_longer_than_its_fields_is_refused() {
    // The record says one byte more than its fields, and that byte is
    // there: not silently skipped.
    let mut body = encode(&[out(1, "t", b"x")]).to_vec();
    let len = u32::from_le_bytes(
        body[BODY_HEAD_BYTES..BODY_HEAD_BYTES + 4]
            .try_into()
            .unwrap(),
    );
    body[BODY_HEAD_BYTES..BODY_HEAD_BYTES + 4].copy_from_slice(&(len + 1).to_le_bytes());
    body.push(0);
    assert!(matches!(
        decode(&Bytes::from(body)),
        Err(RecordsError::Invalid { index: 0, .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes: an error or a frame, never a panic; and any frame this
    /// build writes reads back.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let _ = decode(&Bytes::from(bytes));
    }

    #[test]
    fn flipped_bytes_never_panic(at in 0usize..1000, byte in proptest::prelude::any::<u8>()) {
        let mut body = encode(&[full(1), out(2, "t", b"abc")]).to_vec();
        let at = at % body.len();
        body[at] = byte;
        let _ = decode(&Bytes::from(body));
    }
}
