"""Checks of the test harness itself (no broker): log parsing, TOML writing, codec round trips."""
import tomllib

import mqttraw
from conftest import Broker, to_toml, default_ringmq_config


def test_connected_line_parsing(tmp_path):
    b = Broker(tmp_path, kind="ringmq")
    b.log_path.write_text("\n".join([
        "2025-01-01T00:00:00.000001Z DEBUG ringmq::shard: client connected shard=1 client_id=\"abc\" peer=127.0.0.1:5",
        "2025-01-01T00:00:00.000002Z DEBUG shard{shard=0}: ringmq::shard::conn: client connected client_id=abc shard=0",
        "\x1b[2m2025\x1b[0m \x1b[34mDEBUG\x1b[0m ringmq: client connected \x1b[3mshard\x1b[0m\x1b[2m=\x1b[0m1 \x1b[3mclient_id\x1b[0m\x1b[2m=\x1b[0m\"x-1\"",
        "DEBUG ringmq: client disconnected shard=1 client_id=abc",
        "{\"level\":\"DEBUG\",\"fields\":{\"message\":\"client connected\",\"shard\":0,\"client_id\":\"j\"}}",
    ]) + "\n")
    got = b.connected_shards()
    assert got["abc"] == [1, 0]
    assert got["x-1"] == [1]
    assert got["j"] == [0]


def test_toml_round_trip(tmp_path):
    cfg = default_ringmq_config(12345, str(tmp_path / "d"), 2, "debug")
    cfg["mqtt"]["weird"] = 'a"b\\c'
    assert tomllib.loads(to_toml(cfg)) == cfg


def test_codec_round_trip():
    props = {"content_type": "x", "user_property": [("a", "b"), ("a", "c")], "topic_alias": 3,
             "subscription_identifier": [1, 300], "correlation_data": b"\x00\x01", "message_expiry_interval": 9}
    raw = mqttraw.publish("t/x", b"pay", qos=2, pid=77, retain=True, dup=True, props=props)
    first, rest = raw[0], raw[1:]
    n, pos = mqttraw.decode_varint(rest, 0)
    p = mqttraw.decode(first, rest[pos:], mqttraw.V5)
    assert (p.topic, p.payload, p.qos, p.retain, p.dup, p.pid) == ("t/x", b"pay", 2, True, True, 77)
    assert p.props == props
    assert mqttraw.varint(268435455) == b"\xff\xff\xff\x7f"
