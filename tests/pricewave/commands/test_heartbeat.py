"""``pricewave heartbeat`` through the real CLI against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest

from pricewave.config import Settings
from pricewave.schemas import check_event
from pricewave.stack.process import child_environment
from tests.conftest import consume_all

pytestmark = pytest.mark.integration


def heartbeat(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pricewave heartbeat ARGS`` in a child process whose topics are ``settings``'."""
    return pricewave_on_topics(settings, "heartbeat", *args)


def pricewave_on_topics(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pricewave ARGS`` in a child process whose input topics are ``settings``' (wide tables)."""
    env = {**child_environment(), "COLUMNS": "250"}
    for role in ("clicks", "competitor_prices", "reviews"):
        env[f"PRICEWAVE_TOPICS__{role.upper()}"] = getattr(settings.topics, role)
    return subprocess.run(
        [sys.executable, "-m", "pricewave", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


def test_heartbeats_reach_every_partition_of_the_named_topics_on_the_wall_clock(
    fresh_topic_settings: Callable[..., Settings],
) -> None:
    settings = fresh_topic_settings("test-heartbeat", partitions=2)
    before_ms = int(time.time() * 1000)
    result = heartbeat(settings, "--every", "0.5", "--duration", "2", "--lag", "3")
    after_ms = int(time.time() * 1000)
    assert result.returncode == 0, result.stderr
    assert "sent" in result.stdout and "heartbeats" in result.stdout
    for topic in (settings.topics.competitor_prices, settings.topics.reviews):
        records = consume_all(settings, topic, timeout_s=20)
        assert records, topic
        beats = [json.loads(record.value) for record in records]
        assert all(check_event("heartbeat", record.value)[1] is None for record in records)
        # Every round reaches both partitions, stamped the wall clock minus the lag.
        assert Counter(record.partition for record in records) == {0: len(records) // 2, 1: len(records) // 2}
        assert all(before_ms - 3_000 <= beat["event_time"] <= after_ms - 3_000 for beat in beats)
    assert consume_all(settings, settings.topics.clicks, timeout_s=4) == []  # not named: untouched


def test_a_missing_topic_or_an_unknown_role_is_one_line_and_non_zero(
    fresh_topic_settings: Callable[..., Settings],
) -> None:
    settings = fresh_topic_settings("test-heartbeat-missing")
    topics = settings.topics.model_copy(update={"reviews": settings.topics.reviews + "-never-created"})
    result = heartbeat(settings.model_copy(update={"topics": topics}), "--topics", "reviews", "--duration", "1")
    assert result.returncode != 0
    assert "create the topics first" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    unknown = heartbeat(settings, "--topics", "prices")
    assert unknown.returncode == 2 and "choose from clicks, competitor_prices, reviews" in unknown.stderr
