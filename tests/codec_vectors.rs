//! Conformance vectors from the npm package mqtt-packet (see
//! shared/conformance/README.md): hex <-> packet object pairs, MQTT 3.1.1 and
//! 5.0, plus bytes that must fail to parse and objects that must fail to
//! encode. The objects use mqtt-packet's JavaScript field names; `convert`
//! maps them onto our `Packet`.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use ringmq::codec::*;
use serde_json::{Map, Value};

/// CI clones the repo with `shared/` beside it. A git worktree nested one
/// level deeper (`<root>/wt/<name>`) finds it one more level up; the
/// environment variable overrides both.
fn vectors_path() -> PathBuf {
    const FILE: &str = "conformance/mqtt-packet-vectors.json";
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("RINGMQ_SHARED_DIR") {
        candidates.push(PathBuf::from(dir).join(FILE));
    }
    candidates.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/mqtt-packet-vectors.json"
    )));
    candidates.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/mqtt-packet-vectors.json"
    )));
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => path.clone(),
        None => panic!(
            "conformance vectors not found; tried {candidates:?}. \
             Check out shared/ beside the repository or set RINGMQ_SHARED_DIR."
        ),
    }
}

/// Vectors whose check is skipped, with why. `Parse` skips only the
/// hex -> packet direction, `Generate` only packet -> hex.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Skip {
    All,
    Parse,
    Generate,
}

const SKIPS: &[(&str, Skip, &str)] = &[
    (
        "connect MQTT bridge 131",
        Skip::All,
        "bridge bit in the protocol level (0x83): not MQTT, refused as unsupported version",
    ),
    (
        "connect MQTT bridge 132",
        Skip::All,
        "bridge bit in the protocol level (0x84): not MQTT, refused as unsupported version",
    ),
    (
        "Max payload publish packet",
        Skip::All,
        "256 MiB payload and no hex in the vector; the maximum length is unit-tested",
    ),
    (
        "Version 5 CONNACK test 1",
        Skip::All,
        "CONNACK of remaining length 1 has no reason code: malformed (MQTT 5.0 3.2.2)",
    ),
    (
        "connack MQTT 5 with properties",
        Skip::Parse,
        "Maximum QoS 2 is a protocol error (MQTT 5.0 3.2.2.3.4); encoding still checked",
    ),
    (
        "connack MQTT 5 with properties and doubled user properties",
        Skip::Parse,
        "Maximum QoS 2 is a protocol error (MQTT 5.0 3.2.2.3.4); encoding still checked",
    ),
    (
        "Version 5 DISCONNECT test 3",
        Skip::Generate,
        "we emit the shortest form e000 for a normal disconnection without properties",
    ),
    (
        "disconnect MQTT 5 with no properties",
        Skip::Generate,
        "we emit the shortest form e000 for a normal disconnection without properties",
    ),
];

fn skip_of(name: &str) -> Option<Skip> {
    SKIPS
        .iter()
        .find(|(skipped, _, _)| *skipped == name)
        .map(|&(_, skip, _)| skip)
}

// ---- object -> Packet -------------------------------------------------------

/// `Err`: the object cannot be expressed in our types (a JavaScript type
/// error, a missing field, a feature we do not model).
type Conv<T> = Result<T, String>;

struct Obj<'a>(&'a Map<String, Value>);

impl<'a> Obj<'a> {
    fn of(value: &'a Value, what: &str) -> Conv<Obj<'a>> {
        value
            .as_object()
            .map(Obj)
            .ok_or_else(|| format!("{what} is not an object"))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn uint(&self, key: &str, max: u64) -> Conv<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(u64::from(*b))),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(format!("{key} = {v} is not an integer in 0..={max}")),
            },
        }
    }

    fn u8(&self, key: &str) -> Conv<Option<u8>> {
        Ok(self.uint(key, u8::MAX.into())?.map(|n| n as u8))
    }

    fn u16(&self, key: &str) -> Conv<Option<u16>> {
        Ok(self.uint(key, u16::MAX.into())?.map(|n| n as u16))
    }

    fn u32(&self, key: &str) -> Conv<Option<u32>> {
        Ok(self.uint(key, u32::MAX.into())?.map(|n| n as u32))
    }

    fn flag(&self, key: &str) -> Conv<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("{key} = {v} is not a boolean")),
        }
    }

    fn bytes(&self, key: &str) -> Conv<Option<Bytes>> {
        self.get(key).map(|v| to_bytes(v, key)).transpose()
    }

    fn string(&self, key: &str) -> Conv<Option<ByteStr>> {
        match self.bytes(key)? {
            None => Ok(None),
            Some(bytes) => ByteStr::try_from_bytes(bytes)
                .map(Some)
                .map_err(|e| format!("{key}: {e}")),
        }
    }

    fn qos(&self, key: &str) -> Conv<QoS> {
        let n = self.u8(key)?.unwrap_or(0);
        QoS::from_u8(n).ok_or_else(|| format!("{key} = {n}"))
    }
}

/// A JS string, `{"$hex": ..}` Buffer, or `{"$bigLen": n, "$prefixHex": ..}`.
fn to_bytes(value: &Value, key: &str) -> Conv<Bytes> {
    match value {
        Value::String(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
        Value::Object(o) => {
            if let Some(hex_str) = o.get("$hex").and_then(Value::as_str) {
                return hex::decode(hex_str)
                    .map(Bytes::from)
                    .map_err(|e| format!("{key}: {e}"));
            }
            let len = o
                .get("$bigLen")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{key}: unknown buffer form"))?;
            let prefix = o.get("$prefixHex").and_then(Value::as_str).unwrap_or("");
            let prefix = hex::decode(prefix).map_err(|e| format!("{key}: {e}"))?;
            // Zeroed allocation: pages are only touched where written.
            let mut big = vec![0u8; len as usize];
            big[..prefix.len()].copy_from_slice(&prefix);
            Ok(Bytes::from(big))
        }
        other => Err(format!("{key} = {other} is neither string nor buffer")),
    }
}

fn user_properties(props: &Obj) -> Conv<UserProperties> {
    let mut pairs = UserProperties::new();
    let Some(value) = props.get("userProperties") else {
        return Ok(pairs);
    };
    let map = Obj::of(value, "userProperties")?;
    for (key, values) in map.0 {
        let values = match values {
            Value::Array(list) => list.clone(),
            single => vec![single.clone()],
        };
        for value in values {
            let value = value
                .as_str()
                .ok_or_else(|| format!("user property {key} not a string"))?;
            pairs.push((key.as_str().into(), value.into()));
        }
    }
    Ok(pairs)
}

/// Every property key of the object must be one `allowed` lists, so that a
/// property we do not convert cannot pass silently.
fn props_obj<'a>(o: &Obj<'a>, allowed: &[&str]) -> Conv<Option<Obj<'a>>> {
    let Some(value) = o.get("properties") else {
        return Ok(None);
    };
    let props = Obj::of(value, "properties")?;
    for key in props.0.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(format!("property {key} not convertible here"));
        }
    }
    Ok(Some(props))
}

fn protocol_of(level: u64) -> Conv<Protocol> {
    match level {
        3 => Ok(Protocol::V31),
        4 => Ok(Protocol::V311),
        5 => Ok(Protocol::V5),
        other => Err(format!("protocol version {other}")),
    }
}

fn packet_id(o: &Obj) -> Conv<u16> {
    Ok(o.u16("messageId")?.unwrap_or(0))
}

fn reason(o: &Obj) -> Conv<ReasonCode> {
    Ok(ReasonCode(o.u8("reasonCode")?.unwrap_or(0)))
}

fn ack_properties(o: &Obj) -> Conv<AckProperties> {
    let Some(p) = props_obj(o, &["reasonString", "userProperties"])? else {
        return Ok(AckProperties::default());
    };
    Ok(AckProperties {
        reason_string: p.string("reasonString")?,
        user_properties: user_properties(&p)?,
    })
}

fn codes(o: &Obj, key: &str) -> Conv<Vec<ReasonCode>> {
    let Some(list) = o.get(key) else {
        return Ok(Vec::new());
    };
    list.as_array()
        .ok_or_else(|| format!("{key} not an array"))?
        .iter()
        .map(|v| match v.as_u64() {
            Some(n) if n <= 255 => Ok(ReasonCode(n as u8)),
            _ => Err(format!("{key} entry {v}")),
        })
        .collect()
}

/// Converts one vector object; `protocol` is the vector's protocol level
/// (CONNECT carries its own).
fn convert(value: &Value, protocol: Protocol) -> Conv<Packet> {
    let o = Obj::of(value, "packet")?;
    let cmd = o
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("no cmd".to_string())?;
    Ok(match cmd {
        "connect" => Packet::Connect(Box::new(convert_connect(&o)?)),
        "connack" => {
            let code = match o.get("returnCode") {
                Some(_) => o.u8("returnCode")?.unwrap_or(0),
                None => o.u8("reasonCode")?.unwrap_or(0),
            };
            let properties = match props_obj(
                &o,
                &[
                    "sessionExpiryInterval",
                    "receiveMaximum",
                    "maximumQoS",
                    "retainAvailable",
                    "maximumPacketSize",
                    "assignedClientIdentifier",
                    "topicAliasMaximum",
                    "reasonString",
                    "userProperties",
                    "wildcardSubscriptionAvailable",
                    "subscriptionIdentifiersAvailable",
                    "sharedSubscriptionAvailable",
                    "serverKeepAlive",
                    "responseInformation",
                    "serverReference",
                    "authenticationMethod",
                    "authenticationData",
                ],
            )? {
                None => ConnAckProperties::default(),
                Some(p) => ConnAckProperties {
                    session_expiry_interval_s: p.u32("sessionExpiryInterval")?,
                    receive_maximum: p.u16("receiveMaximum")?,
                    maximum_qos: p.u8("maximumQoS")?,
                    retain_available: p.u8("retainAvailable")?,
                    maximum_packet_size: p.u32("maximumPacketSize")?,
                    assigned_client_identifier: p.string("assignedClientIdentifier")?,
                    topic_alias_maximum: p.u16("topicAliasMaximum")?,
                    reason_string: p.string("reasonString")?,
                    user_properties: user_properties(&p)?,
                    wildcard_subscription_available: p.u8("wildcardSubscriptionAvailable")?,
                    subscription_identifiers_available: p.u8("subscriptionIdentifiersAvailable")?,
                    shared_subscription_available: p.u8("sharedSubscriptionAvailable")?,
                    server_keep_alive_s: p.u16("serverKeepAlive")?,
                    response_information: p.string("responseInformation")?,
                    server_reference: p.string("serverReference")?,
                    authentication_method: p.string("authenticationMethod")?,
                    authentication_data: p.bytes("authenticationData")?,
                },
            };
            Packet::ConnAck(Box::new(ConnAck {
                session_present: o.flag("sessionPresent")?,
                reason_code: ReasonCode(code),
                properties,
            }))
        }
        "publish" => {
            let properties = match props_obj(
                &o,
                &[
                    "payloadFormatIndicator",
                    "messageExpiryInterval",
                    "topicAlias",
                    "responseTopic",
                    "correlationData",
                    "userProperties",
                    "subscriptionIdentifier",
                    "contentType",
                ],
            )? {
                None => PublishProperties::default(),
                Some(p) => {
                    let subscription_identifiers = match p.get("subscriptionIdentifier") {
                        None => Default::default(),
                        Some(Value::Array(list)) => list
                            .iter()
                            .map(|v| v.as_u64().map(|n| n as u32).ok_or(format!("id {v}")))
                            .collect::<Conv<_>>()?,
                        Some(_) => [p.u32("subscriptionIdentifier")?.unwrap_or(0)]
                            .into_iter()
                            .collect(),
                    };
                    PublishProperties {
                        payload_format_indicator: p.u8("payloadFormatIndicator")?,
                        message_expiry_interval_s: p.u32("messageExpiryInterval")?,
                        topic_alias: p.u16("topicAlias")?,
                        response_topic: p.string("responseTopic")?,
                        correlation_data: p.bytes("correlationData")?,
                        user_properties: user_properties(&p)?,
                        subscription_identifiers,
                        content_type: p.string("contentType")?,
                    }
                }
            };
            Packet::Publish(Publish {
                dup: o.flag("dup")?,
                qos: o.qos("qos")?,
                retain: o.flag("retain")?,
                topic: o.string("topic")?.ok_or("no topic")?,
                packet_id: packet_id(&o)?,
                payload: o.bytes("payload")?.unwrap_or_default(),
                properties: properties.boxed(),
            })
        }
        "puback" | "pubrec" | "pubrel" | "pubcomp" => {
            let ack = PubAck {
                packet_id: packet_id(&o)?,
                reason_code: reason(&o)?,
                properties: ack_properties(&o)?,
            };
            match cmd {
                "puback" => Packet::PubAck(ack),
                "pubrec" => Packet::PubRec(ack),
                "pubrel" => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
        "subscribe" => {
            let properties = match props_obj(&o, &["subscriptionIdentifier", "userProperties"])? {
                None => SubscribeProperties::default(),
                Some(p) => SubscribeProperties {
                    subscription_identifier: p.u32("subscriptionIdentifier")?,
                    user_properties: user_properties(&p)?,
                },
            };
            let list = o
                .get("subscriptions")
                .and_then(Value::as_array)
                .ok_or("subscriptions not an array")?;
            let mut filters = Vec::new();
            for entry in list {
                let s = Obj::of(entry, "subscription")?;
                let options = SubscriptionOptions {
                    qos: s.qos("qos")?,
                    no_local: s.flag("nl")?,
                    retain_as_published: s.flag("rap")?,
                    retain_handling: s.u8("rh")?.unwrap_or(0),
                };
                filters.push((s.string("topic")?.ok_or("no topic")?, options));
            }
            Packet::Subscribe(Subscribe {
                packet_id: packet_id(&o)?,
                filters,
                properties,
            })
        }
        "suback" => Packet::SubAck(SubAck {
            packet_id: packet_id(&o)?,
            reason_codes: codes(&o, "granted")?,
            properties: ack_properties(&o)?,
        }),
        "unsubscribe" => {
            let properties = match props_obj(&o, &["userProperties"])? {
                None => UnsubscribeProperties::default(),
                Some(p) => UnsubscribeProperties {
                    user_properties: user_properties(&p)?,
                },
            };
            let filters = o
                .get("unsubscriptions")
                .and_then(Value::as_array)
                .ok_or("unsubscriptions not an array")?
                .iter()
                .map(|v| v.as_str().map(ByteStr::from).ok_or(format!("filter {v}")))
                .collect::<Conv<_>>()?;
            Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(&o)?,
                filters,
                properties,
            })
        }
        "unsuback" => Packet::UnsubAck(UnsubAck {
            packet_id: packet_id(&o)?,
            reason_codes: if protocol.is_v5() {
                codes(&o, "granted")?
            } else {
                Vec::new()
            },
            properties: ack_properties(&o)?,
        }),
        "pingreq" => Packet::PingReq,
        "pingresp" => Packet::PingResp,
        "disconnect" => {
            let properties = match props_obj(
                &o,
                &[
                    "sessionExpiryInterval",
                    "reasonString",
                    "userProperties",
                    "serverReference",
                ],
            )? {
                None => DisconnectProperties::default(),
                Some(p) => DisconnectProperties {
                    session_expiry_interval_s: p.u32("sessionExpiryInterval")?,
                    reason_string: p.string("reasonString")?,
                    user_properties: user_properties(&p)?,
                    server_reference: p.string("serverReference")?,
                },
            };
            Packet::Disconnect(Box::new(Disconnect {
                reason_code: reason(&o)?,
                properties,
            }))
        }
        "auth" => {
            let properties = match props_obj(
                &o,
                &[
                    "authenticationMethod",
                    "authenticationData",
                    "reasonString",
                    "userProperties",
                ],
            )? {
                None => AuthProperties::default(),
                Some(p) => AuthProperties {
                    authentication_method: p.string("authenticationMethod")?,
                    authentication_data: p.bytes("authenticationData")?,
                    reason_string: p.string("reasonString")?,
                    user_properties: user_properties(&p)?,
                },
            };
            Packet::Auth(Box::new(Auth {
                reason_code: reason(&o)?,
                properties,
            }))
        }
        other => return Err(format!("cmd {other}")),
    })
}

/// mqtt-packet's defaults: protocol "MQTT" level 4, clean session, keep
/// alive 0.
fn convert_connect(o: &Obj) -> Conv<Connect> {
    if o.flag("bridgeMode")? {
        return Err("bridge mode".into());
    }
    let name = match o.get("protocolId") {
        None => "MQTT",
        Some(v) => v.as_str().ok_or(format!("protocolId {v}"))?,
    };
    let level = o.uint("protocolVersion", 255)?.unwrap_or(4);
    let protocol = protocol_of(level)?;
    let expected_name = if protocol == Protocol::V31 {
        "MQIsdp"
    } else {
        "MQTT"
    };
    if name != expected_name {
        return Err(format!("protocol {name} level {level}"));
    }
    let properties = match props_obj(
        o,
        &[
            "sessionExpiryInterval",
            "receiveMaximum",
            "maximumPacketSize",
            "topicAliasMaximum",
            "requestResponseInformation",
            "requestProblemInformation",
            "userProperties",
            "authenticationMethod",
            "authenticationData",
        ],
    )? {
        None => ConnectProperties::default(),
        Some(p) => ConnectProperties {
            session_expiry_interval_s: p.u32("sessionExpiryInterval")?,
            receive_maximum: p.u16("receiveMaximum")?,
            maximum_packet_size: p.u32("maximumPacketSize")?,
            topic_alias_maximum: p.u16("topicAliasMaximum")?,
            request_response_information: p.u8("requestResponseInformation")?,
            request_problem_information: p.u8("requestProblemInformation")?,
            user_properties: user_properties(&p)?,
            authentication_method: p.string("authenticationMethod")?,
            authentication_data: p.bytes("authenticationData")?,
        },
    };
    let will = match o.get("will") {
        None => None,
        Some(value) => {
            let w = Obj::of(value, "will")?;
            let properties = match props_obj(
                &w,
                &[
                    "willDelayInterval",
                    "payloadFormatIndicator",
                    "messageExpiryInterval",
                    "contentType",
                    "responseTopic",
                    "correlationData",
                    "userProperties",
                ],
            )? {
                None => WillProperties::default(),
                Some(p) => WillProperties {
                    will_delay_interval_s: p.u32("willDelayInterval")?,
                    payload_format_indicator: p.u8("payloadFormatIndicator")?,
                    message_expiry_interval_s: p.u32("messageExpiryInterval")?,
                    content_type: p.string("contentType")?,
                    response_topic: p.string("responseTopic")?,
                    correlation_data: p.bytes("correlationData")?,
                    user_properties: user_properties(&p)?,
                },
            };
            Some(Will {
                topic: w.string("topic")?.ok_or("will without topic")?,
                payload: w.bytes("payload")?.ok_or("will without payload")?,
                qos: w.qos("qos")?,
                retain: w.flag("retain")?,
                properties,
            })
        }
    };
    let clean_start = match o.get("clean") {
        None => true,
        Some(_) => o.flag("clean")?,
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive_s: o.u16("keepalive")?.unwrap_or(0),
        client_id: o.string("clientId")?.ok_or("no clientId")?,
        will,
        username: o.string("username")?,
        password: o.bytes("password")?,
        properties,
    })
}

// ---- the test ---------------------------------------------------------------

/// A generous cap: the vectors' largest parsed packet is 2 KiB.
const MAX_PACKET_SIZE: u32 = 1 << 20;

/// Kinds only a server sends; PUBLISH carrying Subscription Identifiers is
/// server-to-client too (MQTT-3.3.4-6).
fn is_client_to_server(packet: &Packet) -> bool {
    match packet {
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => false,
        Packet::Publish(p) => p.properties().subscription_identifiers.is_empty(),
        _ => true,
    }
}

#[derive(Default, Debug)]
struct Tally {
    /// Vectors with at least one direction checked and no failure; the
    /// unrepresentable generate-error objects are not counted.
    vectors_checked: usize,
    parsed: usize,
    generated: usize,
    parse_errors: usize,
    encode_errors: usize,
    unrepresentable: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

fn check_parse(
    name: &str,
    hex_str: &str,
    protocol: Protocol,
    expected: &Packet,
) -> Result<(), String> {
    let bytes = hex::decode(hex_str).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decode_any(&mut buf, protocol, MAX_PACKET_SIZE);
    match decoded {
        Ok(Some(packet)) if &packet == expected && buf.is_empty() => {}
        other => {
            return Err(format!(
                "{name}: parse gave {other:?}, expected {expected:?}"
            ))
        }
    }
    // The server-side decoder must agree on what a client may send.
    if is_client_to_server(expected) {
        let mut buf = BytesMut::from(&bytes[..]);
        let connection_protocol = match expected {
            Packet::Connect(_) => None,
            _ => Some(protocol),
        };
        let decoded = decode(&mut buf, connection_protocol, MAX_PACKET_SIZE);
        if decoded.as_ref().ok().and_then(Option::as_ref) != Some(expected) {
            return Err(format!("{name}: server decode gave {decoded:?}"));
        }
    } else {
        let mut buf = BytesMut::from(&bytes[..]);
        if decode(&mut buf, Some(protocol), MAX_PACKET_SIZE).is_ok() {
            return Err(format!("{name}: server accepted a server-to-client packet"));
        }
    }
    Ok(())
}

fn check_generate(
    name: &str,
    hex_str: &str,
    protocol: Protocol,
    packet: &Packet,
) -> Result<(), String> {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).map_err(|e| format!("{name}: encode failed: {e}"))?;
    if hex::encode(&out) != hex_str {
        return Err(format!(
            "{name}: encoded {}, expected {hex_str}",
            hex::encode(&out)
        ));
    }
    if encoded_len(packet, protocol) != out.len() {
        return Err(format!("{name}: encoded_len disagrees"));
    }
    Ok(())
}

#[test]
fn mqtt_packet_vectors() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut tally = Tally::default();

    for vector in &vectors {
        let kind = vector["kind"].as_str().unwrap();
        let name = vector["name"].as_str().unwrap();
        let protocol = protocol_of(vector["protocolVersion"].as_u64().unwrap()).unwrap();
        let hex_str = vector["hex"].as_str().unwrap_or("");
        let skip = skip_of(name);
        if skip == Some(Skip::All) {
            // A deliberate divergence must stay one: we refuse these bytes.
            if !hex_str.is_empty() {
                let bytes = hex::decode(hex_str).unwrap();
                let mut buf = BytesMut::from(&bytes[..]);
                if decode_any(&mut buf, protocol, MAX_PACKET_SIZE).is_ok() {
                    tally
                        .failures
                        .push(format!("{name}: skipped but now decodes"));
                }
            }
            tally.skipped.push(format!("{kind} {name}"));
            continue;
        }
        let (parse, generate) = match kind {
            "parse_generate" | "parse_and_generate" | "parse_generate_defaults" => (true, true),
            "parse_only" => (true, false),
            "generate_only" => (false, true),
            "parse_error" => {
                let bytes = hex::decode(hex_str).unwrap();
                match decode_any(&mut BytesMut::from(&bytes[..]), protocol, MAX_PACKET_SIZE) {
                    Err(_) => {
                        tally.parse_errors += 1;
                        tally.vectors_checked += 1;
                    }
                    Ok(result) => tally
                        .failures
                        .push(format!("{name} ({hex_str}): decoded to {result:?}")),
                }
                continue;
            }
            "generate_error" | "write_to_stream_error" => {
                match convert(&vector["object"], protocol) {
                    Err(_) => tally.unrepresentable += 1,
                    Ok(packet) => match encode(&packet, protocol, &mut BytesMut::new()) {
                        Err(_) => {
                            tally.encode_errors += 1;
                            tally.vectors_checked += 1;
                        }
                        Ok(()) => tally.failures.push(format!("{name}: encoded")),
                    },
                }
                continue;
            }
            other => panic!("unknown vector kind {other}"),
        };
        let packet = match convert(&vector["object"], protocol) {
            Ok(packet) => packet,
            Err(e) => {
                tally.failures.push(format!("{name}: cannot convert: {e}"));
                continue;
            }
        };
        let protocol = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => protocol,
        };
        let failures_before = tally.failures.len();
        if parse && skip != Some(Skip::Parse) {
            match check_parse(name, hex_str, protocol, &packet) {
                Ok(()) => tally.parsed += 1,
                Err(e) => tally.failures.push(e),
            }
        }
        if generate && skip != Some(Skip::Generate) {
            match check_generate(name, hex_str, protocol, &packet) {
                Ok(()) => tally.generated += 1,
                Err(e) => tally.failures.push(e),
            }
        }
        match skip {
            Some(Skip::Parse) => {
                let bytes = hex::decode(hex_str).unwrap();
                let mut buf = BytesMut::from(&bytes[..]);
                if decode_any(&mut buf, protocol, MAX_PACKET_SIZE).is_ok() {
                    tally
                        .failures
                        .push(format!("{name}: parse skipped but now decodes"));
                }
            }
            Some(Skip::Generate) => {
                // Our encoding differs but must still read back the same.
                let mut out = BytesMut::new();
                encode(&packet, protocol, &mut out).unwrap();
                let decoded = decode_any(&mut out, protocol, MAX_PACKET_SIZE);
                if hex::encode(&out) == hex_str || decoded != Ok(Some(packet.clone())) {
                    tally
                        .failures
                        .push(format!("{name}: generate skip no longer needed"));
                }
            }
            _ => {}
        }
        if skip.is_some() {
            tally.skipped.push(format!("{kind} {name} (partly)"));
        }
        if tally.failures.len() == failures_before {
            tally.vectors_checked += 1;
        }
    }

    println!(
        "{} vectors, {} checked: {} parsed, {} generated, {} parse errors, {} encode errors, \
         {} generate-error objects unrepresentable in our types, skipped {:?}",
        vectors.len(),
        tally.vectors_checked,
        tally.parsed,
        tally.generated,
        tally.parse_errors,
        tally.encode_errors,
        tally.unrepresentable,
        tally.skipped
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(
        tally.vectors_checked >= 130,
        "only {} vectors checked: did the file shrink?",
        tally.vectors_checked
    );
    assert!(tally.parsed >= 60 && tally.generated >= 55 && tally.parse_errors >= 55);
}
