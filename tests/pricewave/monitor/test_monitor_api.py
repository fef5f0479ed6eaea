"""The monitor's JSON API, event stream and /metrics against a known input on fresh topics.

A known set of price decisions, competitor prices, dead letters and clicks (with a consumer group
that committed part of them) is produced into fresh topics; the monitor, run in-process on a free
port, must report exactly the figures computed here from that input.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from pricewave.config import Settings
from pricewave.kafka_io import encode_json, make_producer
from pricewave.monitor import Monitor, make_server

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ROLES = ("clicks", "competitor_prices", "reviews", "prices", "dlq")


@pytest.fixture
def monitor_settings(fresh_topic_settings: Callable[..., Settings]) -> Settings:
    """Settings naming five fresh single-partition topics."""
    return fresh_topic_settings("test-monitor")


def decision(n: int) -> dict[str, Any]:
    """The n-th known price decision: latency 10·n ms, a few guardrails, kill switch, exploration."""
    rules = [["floor"], [], ["max_change", "rounding"], ["kill_switch"], ["rounding"]][n % 5]
    return {
        "decision_id": f"d{n}",
        "kind": "offer" if n % 4 == 3 else "sku",
        "sku": ["A1", "B2", "C3"][n % 3],
        "user_key": "0" * 32 if n % 4 == 3 else None,
        "price": 10.0 + n / 10,
        "base_price": 10.0,
        "guardrail": rules[-1] if rules else None,
        "guardrails": rules,
        "model_version": "none" if "kill_switch" in rules else f"m{1 + n // 20}",
        # ε = 0.1, K = 8: an explored (non-greedy) price 0.1 / 8, the greedy one 0.9 + 0.1 / 8
        "propensity": 0.0125 if n % 6 == 0 else 0.9125,
        "personalized": n % 4 == 3,
        "decision_time": T0 + n * 1000 + 10 * n,
        "event_time": T0 + n * 1000,
    }


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@pytest.fixture
def known_input(monitor_settings: Settings) -> dict[str, Any]:
    topics = monitor_settings.topics
    producer = make_producer(monitor_settings)
    decisions = [decision(n) for n in range(40)]
    for record in decisions:
        producer.send(topics.prices, encode_json(record))
    producer.send(topics.prices, b"not json at all")
    competitors = [
        {"event_id": f"c{n}", "sku": "A1", "competitor": ["shopx", "shopy"][n % 2], "price": 9.0 + n,
         "in_stock": True, "event_time": T0 + 500 + n * 2000}
        for n in range(4)
    ]  # fmt: skip
    for record in competitors:
        producer.send(topics.competitor_prices, encode_json(record))
    reasons = ["late", "missing_field: sku", "late", "invalid_json: Expecting value", "late", "missing_field: sku"]
    letters = [
        {"reason": reason, "source_topic": topics.clicks, "partition": 0, "offset": n, "raw_b64": "e30=",
         "raw_size": 2, "schema": "click_event", "dead_letter_time": T0 + n}
        for n, reason in enumerate(reasons)
    ]  # fmt: skip
    for record in letters:
        producer.send(topics.dlq, encode_json(record))
    for n in range(7):
        producer.send(topics.clicks, encode_json({"n": n}))
    producer.flush()
    producer.close()
    # a consumer group that has committed 3 of the 7 clicks: lag 4
    group = f"test-monitor-group-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(bootstrap_servers=monitor_settings.kafka.bootstrap_servers, group_id=group,
                             enable_auto_commit=False)  # fmt: skip
    consumer.commit({TopicPartition(topics.clicks, 0): OffsetAndMetadata(3, "", -1)})
    consumer.close()
    return {"decisions": decisions, "competitors": competitors, "reasons": reasons, "group": group}


@pytest.fixture
def running_monitor(monitor_settings: Settings, known_input: dict[str, Any]) -> Iterator[tuple[Monitor, str]]:
    monitor = Monitor(monitor_settings, group_id=known_input["group"], backfill=None, refresh_s=0.5)
    server = make_server(monitor, port=0)
    monitor.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield monitor, server.url
    monitor.stop()
    server.shutdown()
    server.server_close()


def wait_for(url: str, done: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    snapshot: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snapshot = requests.get(f"{url}/api/snapshot", timeout=10).json()
        if done(snapshot):
            return snapshot
        time.sleep(0.3)
    raise AssertionError(f"monitor never got there: {json.dumps(snapshot)[:2000]}")


def test_api_counts_match_the_known_input(
    running_monitor: tuple[Monitor, str], known_input: dict[str, Any], monitor_settings: Settings
) -> None:
    _, url = running_monitor
    decisions = known_input["decisions"]
    topics = monitor_settings.topics

    def complete(snapshot: dict[str, Any]) -> bool:
        lag_rows = [t for t in snapshot["kafka"]["topics"] if t["topic"] == topics.clicks and t["lag_total"] == 4]
        return (
            snapshot["prices"]["total"] == 40
            and snapshot["dead_letters"]["total"] == 6
            and snapshot["counts"].get(topics.competitor_prices) == 4
            and bool(lag_rows)
        )

    snap = wait_for(url, complete)
    prices = snap["prices"]
    latencies = [float(d["decision_time"] - d["event_time"]) for d in decisions]
    assert prices["by_kind"] == {"sku": sum(d["kind"] == "sku" for d in decisions), "offer": 10}
    assert prices["latency_ms"] == {
        "p50": nearest_rank(latencies, 0.5),
        "p99": nearest_rank(latencies, 0.99),
        "samples": 40,
    }
    assert prices["latency_ms"]["p50"] == 190.0 and prices["latency_ms"]["p99"] == 390.0
    assert prices["guardrail_hits"] == {"rounding": 16, "floor": 8, "max_change": 8, "kill_switch": 8}
    assert prices["fallback_share"] == 8 / 40
    # exploration: a price other than the greedy one (every ε-greedy propensity is below 1)
    assert prices["exploration_share"] == 7 / 40 == sum(d["propensity"] < 0.5 for d in decisions) / 40
    assert prices["personalized_share"] == 10 / 40
    assert prices["model_version"] == decisions[-1]["model_version"] == "m2"
    assert prices["model_versions"] == {"m1": 16, "m2": 16, "none": 8}
    assert prices["updates_per_minute"] == 40  # all arrived within the last minute
    assert snap["unparsed"] == 1  # the one malformed price record

    letters = snap["dead_letters"]
    assert letters["late"] == 3
    assert letters["by_reason"] == {"late": 3, "missing_field": 2, "invalid_json": 1}
    assert [entry["reason"] for entry in letters["latest"]] == list(reversed(known_input["reasons"]))

    # the busiest sku's chart: our sku prices and both competitors on one carried-forward time axis
    assert snap["skus"][0] == "A1"
    series = snap["sku_series"]
    ours = [d for d in decisions if d["sku"] == "A1" and d["kind"] == "sku"]
    times = sorted({d["decision_time"] for d in ours} | {c["event_time"] for c in known_input["competitors"]})
    assert series["x"] == [t / 1000 for t in times]
    assert [s["label"] for s in series["series"]] == ["our price", "shopx", "shopy"]
    assert series["series"][0]["values"][-1] == ours[-1]["price"]
    assert series["series"][2]["values"][-1] == 12.0  # shopy's last quote
    assert requests.get(f"{url}/api/snapshot?sku=B2", timeout=10).json()["sku_series"]["sku"] == "B2"

    clicks = next(t for t in snap["kafka"]["topics"] if t["topic"] == topics.clicks)
    assert clicks["partitions"] == [{"partition": 0, "end_offset": 7, "committed": 3, "lag": 4}]
    assert clicks["input"] is True
    prices_topic = next(t for t in snap["kafka"]["topics"] if t["topic"] == topics.prices)
    assert prices_topic["end_offset_total"] == 41 and prices_topic["lag_total"] is None

    assert snap["flink"]["rest_url"] == monitor_settings.flink.rest_url
    assert set(snap["freshness"]) >= {"available", "views"}
    if not snap["freshness"]["available"]:
        assert snap["freshness"]["reason"].startswith("unavailable")


def test_metrics_and_event_stream_carry_the_same_figures(
    running_monitor: tuple[Monitor, str], known_input: dict[str, Any], monitor_settings: Settings
) -> None:
    _, url = running_monitor
    wait_for(url, lambda s: s["prices"]["total"] == 40 and s["dead_letters"]["total"] == 6)
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    assert "pricewave_prices_total 40" in lines
    assert 'pricewave_guardrail_hits_total{rule="kill_switch"} 8' in lines
    assert "pricewave_dead_letters_late_total 3" in lines
    assert 'pricewave_dead_letters_by_reason_total{reason="missing_field"} 2' in lines
    assert 'pricewave_price_latency_seconds{quantile="0.99"} 0.39' in lines
    assert 'pricewave_model_info{version="m2"} 1' in lines
    assert "pricewave_price_fallback_share 0.2" in lines
    assert "# TYPE pricewave_prices_total counter" in lines

    with requests.get(f"{url}/api/events?sku=C3", stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events: list[dict[str, Any]] = []
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 2:
                    break
    assert [event["prices"]["total"] for event in events] == [40, 40]
    assert events[1]["version"] > events[0]["version"]  # one event per poll
    assert events[0]["sku_series"]["sku"] == "C3"

    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and "/static/vendor/uPlot.iife.min.js" in page.text
    assert requests.get(f"{url}/static/vendor/uPlot.iife.min.js", timeout=10).status_code == 200
    assert requests.get(f"{url}/static/../server.py", timeout=10).status_code == 404
