"""The monitor's feed reconnects (as after a broker restart) without counting what it read twice.

Real broker (the shared stack's), fresh single-partition topics: known decisions are produced, the
monitor folds them, its feed then fails once mid-batch (the same path as a broker that went away:
the consumer is closed and a new one made), more decisions arrive; every figure must count each
decision once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pricewave.config import Settings
from pricewave.kafka_io import encode_json, make_producer
from pricewave.monitor import Monitor
from tests.pricewave.monitor.test_tally_redelivery import decision

pytestmark = pytest.mark.integration

ROLES = ("clicks", "competitor_prices", "reviews", "prices", "dlq")


@pytest.fixture
def monitor_settings(fresh_topic_settings: Callable[..., Settings]) -> Settings:
    return fresh_topic_settings("test-reconnect")


def produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    producer = make_producer(settings)
    for record in records:
        producer.send(settings.topics.prices, encode_json(record))
    producer.flush()
    producer.close()


def wait_total(monitor: Monitor, total: int, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        figures = monitor.snapshot()["prices"]
        if figures["total"] >= total:
            return dict(figures)
        time.sleep(0.2)
    raise AssertionError(f"the monitor counted {monitor.snapshot()['prices']['total']} decisions, not {total}")


def test_a_reconnected_feed_goes_on_where_it_stopped(monitor_settings: Settings) -> None:
    monitor = Monitor(monitor_settings, group_id="none", backfill=None, refresh_s=0.5)
    fold = monitor.tally.add
    failures: list[int] = []

    def fail_once_on_the_eighth(topic: str, value: bytes) -> None:
        if monitor.tally.price_total == 7 and not failures:
            failures.append(1)
            raise ConnectionError("broker went away")  # as a poll on a broken connection would
        fold(topic, value)

    monitor.tally.add = fail_once_on_the_eighth  # type: ignore[method-assign]
    monitor.start()
    try:
        produce(monitor_settings, [decision(n) for n in range(5)])
        wait_total(monitor, 5)
        produce(monitor_settings, [decision(n) for n in range(5, 12)])
        figures = wait_total(monitor, 12)
        time.sleep(2.5)  # a feed that re-read the topic would count more by now
        figures = monitor.snapshot()["prices"]
    finally:
        monitor.stop()
    assert failures, "the feed never failed: the test did not test a reconnect"
    assert figures["total"] == 12
    assert figures["by_kind"] == {"sku": 8, "offer": 4}
    assert figures["redelivered"] == 0
    assert monitor.tally.counts[monitor_settings.topics.prices] == 12
