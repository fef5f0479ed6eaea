"""``pricewave topics lateness`` through the real CLI against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pricewave.config import Settings
from tests.pricewave.commands.test_heartbeat import pricewave_on_topics

pytestmark = pytest.mark.integration


def test_topics_lateness_measures_the_input_and_sizes_the_out_of_orderness(
    fresh_topic_settings: Callable[..., Settings],
) -> None:
    """Clicks out of order by 1-2 s (20 %) and 19 s late (10 %), a heartbeat on a quiet topic: allowing
    10 % late, the bound is just over 2 s (each record is behind the newest one before it)."""
    from pricewave.kafka_io import encode_json, make_producer, send_heartbeats

    settings = fresh_topic_settings("test-lateness", partitions=1)
    t0 = int(time.time() * 1000) - 600_000
    shifts = [0, 3_000, 1_000, 0, 2_000, 0, 0, 20_000, 0, 500] * 100  # ms behind the clock's progress
    producer = make_producer(settings)
    for n, behind in enumerate(shifts):
        producer.send(settings.topics.clicks, encode_json({"event_time": t0 + n * 1_000 - behind, "n": n}))
    send_heartbeats(producer, settings.topics.reviews, t0, "test")
    producer.flush()
    producer.close()
    result = pricewave_on_topics(settings, "topics", "lateness", "--late-share", "0.1")
    assert result.returncode == 0, result.stderr
    # Behind the newest before them: 10 % by 1 s, 10 % by 2 s, 10 % by 19 s (the rest are on time).
    assert "recommended: --out-of-orderness 2.1" in result.stdout, result.stdout
    assert "10.000%" in result.stdout  # late at the job's 5 s: the 19 s ones
    assert settings.topics.clicks in result.stdout and "1,000" in result.stdout
