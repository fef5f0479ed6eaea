"""The simulator against the real broker: paced production, and the closed loop through Kafka."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import Settings
from pricewave.kafka_io import encode_json, ensure_topics, make_admin, make_producer
from pricewave.schemas import check_event
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import FaultsSpec, load_scenario
from tests.conftest import consume_all

pytestmark = pytest.mark.integration

SMALL = load_scenario("small")
TEXTS = ["Great coffee, would buy again.", "Stale and overpriced."]
NO_FAULTS = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)
PRICEWAVE = Path(sys.executable).with_name("pricewave")


@pytest.fixture
def events_topic(kafka_stack: Settings) -> Iterator[str]:
    """A second fresh topic (the events, when ``fresh_topic`` holds the prices)."""
    name = f"test-sim-events-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_stack, [name])
    yield name
    admin = make_admin(kafka_stack)
    try:
        admin.delete_topics([name])
    except Exception:  # best effort: a leftover test topic harms nothing
        pass
    finally:
        admin.close()


def _routed(settings: Settings, events: str, prices: str | None = None) -> Settings:
    update = {"clicks": events, "competitor_prices": events, "reviews": events}
    if prices is not None:
        update["prices"] = prices
    return settings.model_copy(update={"topics": settings.topics.model_copy(update=update)})


def test_run_to_kafka_produces_at_the_set_rate(kafka_stack: Settings, fresh_topic: str) -> None:
    settings = _routed(kafka_stack, fresh_topic)
    sim = Simulator(SMALL, settings, seed=1, review_texts=TEXTS)
    summary = sim.run_to_kafka(rate=400, duration_s=3, closed_loop=False, progress=False)
    assert summary.delivery_errors == 0
    assert summary.events_per_s == pytest.approx(400, rel=0.15)
    assert 3 <= summary.elapsed_s < 6
    received = consume_all(settings, fresh_topic, expected=summary.messages, timeout_s=30)
    assert len(received) == summary.messages
    # Exactly what the simulator makes for this seed arrived, malformed bytes as they were sent.
    replay = Simulator(SMALL, settings, seed=1, review_texts=TEXTS)
    expected = Counter((e.key, e.value) for e in replay.iter_events(max_events=summary.messages))
    assert Counter((r.key, r.value) for r in received) == expected
    malformed = 0
    for record in received:
        decoded, reason = _check_any(record.value)
        if reason is None:
            assert decoded is not None and record.key == decoded["sku"].encode()
        else:
            malformed += 1
    assert summary.malformed > 0
    assert summary.malformed <= malformed <= summary.malformed + summary.duplicates


def _check_any(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    reasons = []
    for name in ("click_event", "competitor_price", "review"):
        record, reason = check_event(name, raw)
        if reason is None:
            return record, None
        reasons.append(reason)
    return None, reasons[0]


def _publish_sku_prices(settings: Settings, topic: str, prices: dict[str, float], *, abort: bool = False) -> None:
    producer = make_producer(settings, transactional_id=f"test-prices-{uuid.uuid4().hex}")
    producer.init_transactions()
    producer.begin_transaction()
    now = int(time.time() * 1000)
    for sku, price in prices.items():
        decision: dict[str, Any] = {
            "decision_id": f"d-{uuid.uuid4().hex}",
            "kind": "sku",
            "sku": sku,
            "user_key": None,
            "price": round(price, 2),
            "base_price": round(price, 2),
            "guardrail": None,
            "guardrails": [],
            "model_version": "test",
            "propensity": 1.0,
            "personalized": False,
            "decision_time": now,
            "event_time": SMALL.clock.start_ms,
        }
        assert check_event("price_decision", encode_json(decision))[1] is None
        producer.send(topic, encode_json(decision), key=sku.encode())
    producer.flush()
    if abort:
        producer.abort_transaction()
    else:
        producer.commit_transaction()
    producer.close()


def _closed_loop_run(settings: Settings, prices_topic: str, events_topic: str, multiplier: float) -> Simulator:
    settings = _routed(settings, events_topic, prices_topic)
    sim = Simulator(SMALL, settings, seed=3, faults=NO_FAULTS, review_texts=TEXTS)
    lists = {sku: item.list_price for sku, item in sim.market.skus.items()}
    _publish_sku_prices(settings, prices_topic, {sku: 0.5 * p for sku, p in lists.items()}, abort=True)
    _publish_sku_prices(settings, prices_topic, {sku: multiplier * p for sku, p in lists.items()})
    sim.run_to_kafka(rate=None, max_events=6_000, closed_loop=True, progress=False)
    return sim


def test_closed_loop_through_kafka_high_prices_sell_less(
    kafka_stack: Settings, fresh_topic: str, events_topic: str
) -> None:
    high = _closed_loop_run(kafka_stack, fresh_topic, events_topic, 1.4)
    # Only committed prices are shown: every view saw the published high price, none the aborted one.
    assert high.summary.prices_received == SMALL.catalog.n_skus
    assert high.summary.price_sources["sku"] == high.summary.views > 0
    clicks = consume_all(_routed(kafka_stack, events_topic), events_topic, expected=6_000)
    views = [json.loads(r.value) for r in clicks if b'"event_type":"view"' in r.value]
    assert views and all(v["price_seen"] == round(1.4 * high.market.skus[v["sku"]].list_price, 2) for v in views)

    low_prices = f"test-sim-prices-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_stack, [low_prices])
    try:
        low = _closed_loop_run(kafka_stack, low_prices, events_topic, 0.9)
    finally:
        admin = make_admin(kafka_stack)
        admin.delete_topics([low_prices])
        admin.close()
    assert low.summary.price_sources["sku"] == low.summary.views
    assert high.summary.purchases < 0.75 * low.summary.purchases


def test_cli_simulate_small_into_kafka(kafka_stack: Settings, fresh_topic: str) -> None:
    env = {
        **os.environ,
        "PRICEWAVE_TOPICS__CLICKS": fresh_topic,
        "PRICEWAVE_TOPICS__COMPETITOR_PRICES": fresh_topic,
        "PRICEWAVE_TOPICS__REVIEWS": fresh_topic,
        "PRICEWAVE_TOPICS__PRICES": f"test-sim-none-{uuid.uuid4().hex[:8]}",
    }
    command = [str(PRICEWAVE), "simulate", "--scenario", "small", "--max-events", "300", "--rate", "1000"]
    done = subprocess.run(
        [*command, "--seed", "4", "--json", "--no-progress"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["messages"] == 300 and summary["heartbeats"] > 0  # heartbeats on by default, apart
    market, beats = _without_heartbeats(consume_all(kafka_stack, fresh_topic, expected=300 + summary["heartbeats"]))
    assert (len(market), len(beats)) == (300, summary["heartbeats"])

    bad = subprocess.run([*command[:3], "no_such_scenario"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "unknown scenario" in bad.stderr


def _without_heartbeats(records: list[Any]) -> tuple[list[Any], list[Any]]:
    """The market's records and the heartbeats among ``records`` (every role routed to one topic)."""
    is_beat = [check_event("heartbeat", record.value)[1] is None for record in records]
    return [r for r, beat in zip(records, is_beat, strict=True) if not beat], [
        r for r, beat in zip(records, is_beat, strict=True) if beat
    ]


def _event_times(records: list[Any]) -> list[int]:
    times = []
    for record in records:
        decoded, _reason = _check_any(record.value)
        if isinstance(decoded, dict) and isinstance(decoded.get("event_time"), int):
            times.append(decoded["event_time"])
    return times


@pytest.mark.parametrize(("speedup", "duration_s"), [(1.0, 10.0), (20.0, 4.0)])
def test_the_cli_streams_on_the_live_clock_paced_by_event_time(
    kafka_stack: Settings, fresh_topic: str, speedup: float, duration_s: float
) -> None:
    """``simulate`` into Kafka starts its clock now and sends each event at its (scaled) time:
    channels judge freshness by the wall clock, so a clock in 2025 made every price stale."""
    env = {
        **os.environ,
        "PRICEWAVE_TOPICS__CLICKS": fresh_topic,
        "PRICEWAVE_TOPICS__COMPETITOR_PRICES": fresh_topic,
        "PRICEWAVE_TOPICS__REVIEWS": fresh_topic,
    }
    started_ms = time.time() * 1000
    command = [str(PRICEWAVE), "simulate", "--scenario", "small", "--duration", str(duration_s)]
    command += ["--speedup", str(speedup), "--no-closed-loop", "--json", "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    expected = summary["messages"] + summary["heartbeats"]
    records, beats = _without_heartbeats(consume_all(kafka_stack, fresh_topic, expected=expected, timeout_s=30))
    # The summary counts what was sent: not the message made when the duration ran out.
    assert (len(records), len(beats)) == (summary["messages"], summary["heartbeats"])
    times = sorted(_event_times(records))
    assert len(times) > 20
    # The scenario's late events carry old event times on purpose: judge by the 5th-95th percentiles.
    first, last = times[len(times) // 20], times[-len(times) // 20]
    # The clock starts at the wall clock when the command starts (a few seconds of start-up later).
    assert started_ms - 1_000 <= first <= started_ms + 30_000, (first, started_ms)
    # Paced by event time: the span of event times is about speedup x the streaming time.
    span_s = (last - first) / 1000
    assert speedup * duration_s * 0.4 <= span_s <= speedup * duration_s * 1.1, span_s
    assert summary["elapsed_s"] == pytest.approx(duration_s, abs=1.5)


def test_heartbeats_reach_every_partition_of_the_quiet_topics_and_are_not_messages(
    fresh_topic_settings: Any,
) -> None:
    settings = fresh_topic_settings("test-sim-heartbeat", partitions=3)
    sim = Simulator(SMALL, settings, seed=2, review_texts=TEXTS, faults=NO_FAULTS)
    summary = sim.run_to_kafka(rate=None, max_events=400, closed_loop=False, progress=False, heartbeat_s=60)
    assert summary.delivery_errors == 0 and summary.heartbeats > 0
    clicks = consume_all(settings, settings.topics.clicks, timeout_s=20)
    assert not any(b'"heartbeat"' in record.value for record in clicks)  # only the quiet topics get them
    for topic in (settings.topics.competitor_prices, settings.topics.reviews):
        records = consume_all(settings, topic, timeout_s=20)
        beats = [(r.partition, json.loads(r.value)) for r in records if b'"heartbeat"' in r.value]
        assert len(beats) == summary.heartbeats // 2
        assert all(check_event("heartbeat", json.dumps(beat).encode())[1] is None for _, beat in beats)
        # Each round reaches all 3 partitions, at the simulated clock, rounds >= 60 simulated s apart.
        times = sorted({beat["event_time"] for _, beat in beats})
        assert Counter(partition for partition, _ in beats) == {p: len(times) for p in range(3)}
        assert all(later - earlier >= 60_000 for earlier, later in itertools.pairwise(times))
        assert summary.sim_start_ms <= times[0] and times[-1] <= summary.sim_end_ms
    # What the market sent is counted as before; the heartbeats apart.
    market = len(clicks) + sum(
        sum(b'"heartbeat"' not in r.value for r in consume_all(settings, topic, timeout_s=5))
        for topic in (settings.topics.competitor_prices, settings.topics.reviews)
    )
    assert market == summary.messages
