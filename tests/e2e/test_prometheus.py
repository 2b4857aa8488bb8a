"""Prometheus metrics (issue 12, item 6): `GET /api/v5/prometheus/stats` in the text format
(checked by promtool), open by default and behind the API's credentials with
`prometheus.enable_basic_auth = true`, and scraped by a real Prometheus server (Debian's
`prometheus`, installed by scripts/install-test-deps.sh) that the test starts; the test reads
`ringmq_messages_received_total` back from Prometheus's own query API."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import free_port, make_uid
from mqttraw import V5
from test_redirection import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("Prometheus endpoint")]

PATH = "/api/v5/prometheus/stats"
FAMILIES = {
    "ringmq_connections": "gauge", "ringmq_sessions": "gauge", "ringmq_subscriptions": "gauge",
    "ringmq_retained_messages": "gauge", "ringmq_messages_received_total": "counter",
    "ringmq_messages_sent_total": "counter", "ringmq_messages_dropped_total": "counter",
    "ringmq_bytes_received_total": "counter", "ringmq_bytes_sent_total": "counter",
    "ringmq_redirects_total": "counter",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-test-deps.sh "
                    "(Debian package `prometheus`)", pytrace=False)
    return path


def scrape(b, auth=None) -> tuple[int, str, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{b.api_port}{PATH}")
    if auth is not None:
        import base64
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def total(s: dict[str, float], name: str) -> float:
    return sum(v for k, v in s.items() if k == name or k.startswith(name + "{"))


def test_stats_are_valid_text_format_without_credentials(broker_factory, tmp_path):
    b = broker_factory(shards=2)
    topic = make_uid("t")
    sub = b.raw(connect=make_uid("sub"))
    sub.subscribe(topic, qos=1)
    pub = b.raw(connect=make_uid("pub"))
    pub.publish(topic + "/r", "kept", qos=1, retain=True)
    for i in range(5):
        pub.publish(topic, f"m{i}", qos=1)
    for _ in range(5):
        sub.ack(sub.expect_publish())

    code, text, headers = scrape(b)
    assert code == 200, text
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    for name, kind in FAMILIES.items():
        assert f"# TYPE {name} {kind}\n" in text, name
        assert f"# HELP {name} " in text, name
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    s = samples(text)
    assert s['ringmq_connections{shard="0"}'] + s['ringmq_connections{shard="1"}'] == 2
    assert total(s, "ringmq_sessions") == 2 and total(s, "ringmq_subscriptions") == 1
    assert s["ringmq_retained_messages"] == 1
    assert total(s, "ringmq_messages_received_total") == 6
    assert total(s, "ringmq_messages_sent_total") == 5
    assert total(s, "ringmq_bytes_received_total") > 0 and total(s, "ringmq_bytes_sent_total") > 0
    assert {k for k in s if k.startswith("ringmq_messages_dropped_total")} == {
        f'ringmq_messages_dropped_total{{reason="{r}"}}'
        for r in ("queue_full", "expired", "too_large", "closed", "no_recipient")}
    assert 'ringmq_redirects_total{reason="use_another_server",shard="0"}' in s


def test_dropped_messages_are_counted(broker_factory):
    b = broker_factory(shards=2, config={"mqtt": {"max_mqueue_len": 2}})
    cid, topic = make_uid("slow"), make_uid("t")
    r = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 300})
    r.subscribe(topic, qos=1)
    r.disconnect()
    p = b.raw(connect=make_uid("pub"))
    for i in range(5):
        p.publish(topic, f"m{i}", qos=1)
    deadline = time.monotonic() + 5
    while True:
        s = samples(scrape(b)[1])
        if s['ringmq_messages_dropped_total{reason="queue_full"}'] == 3:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.05)
    # The count stays when the session ends.
    assert api(b, "DELETE", "/api/v5/clients/" + cid)[0] == 204
    time.sleep(0.3)
    assert samples(scrape(b)[1])['ringmq_messages_dropped_total{reason="queue_full"}'] == 3


def test_basic_auth_when_enabled(broker_factory):
    b = broker_factory(config={"prometheus": {"enable_basic_auth": True},
                               "api": {"username": "ops", "password": "s3cret"}})
    code, body, headers = scrape(b)
    assert code == 401, body
    assert headers.get("www-authenticate", "").startswith("Basic"), headers
    assert scrape(b, auth=("ops", "wrong"))[0] == 401
    code, text, _ = scrape(b, auth=("ops", "s3cret"))
    assert code == 200 and "ringmq_connections" in text
    # The rest of the API is unchanged.
    assert api(b, "GET", "/api/v5/status", auth=("ops", "s3cret"))[0] == 200


def test_open_by_default_and_the_rest_still_needs_credentials(broker):
    assert scrape(broker)[0] == 200
    assert api(broker, "GET", "/api/v5/status", auth=None)[0] == 401


def prom_query(port: int, query: str):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_prometheus_server_scrapes_the_broker(broker_factory, tmp_path):
    b = broker_factory(shards=2)
    prom = tool("prometheus")
    port = free_port()
    data = tmp_path / "prometheus-data"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: ringmq\n"
        f"    metrics_path: {PATH}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{b.api_port}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen(
        [prom, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        # Up and scraping the broker.
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                up = prom_query(port, 'up{job="ringmq"}')
                if up and up[0]["value"][1] == "1":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-3000:]
            time.sleep(0.2)

        n = 137
        topic = make_uid("t")
        pub = b.raw(connect=make_uid("pub"))
        pub.publish_many([(topic, f"m{i}".encode()) for i in range(n)], qos=1)

        deadline = time.monotonic() + 30
        while True:
            got = prom_query(port, "sum(ringmq_messages_received_total)")
            value = float(got[0]["value"][1]) if got else None
            if value == n:
                break
            assert value is None or value < n, f"Prometheus has {value}, published {n}"
            assert time.monotonic() < deadline, f"Prometheus has {value}, published {n}"
            time.sleep(0.5)
        per_shard = prom_query(port, "ringmq_messages_received_total")
        assert {r["metric"]["shard"] for r in per_shard} == {"0", "1"}, per_shard
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
