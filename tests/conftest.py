"""Shared fixtures: one session-wide real stack, a fresh uniquely named topic per test.

Integration tests talk to the real services `.ci/run` starts (`pricewave stack up`); when one is
not running, the session fixture starts it the same way, so a developer can run any test alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from pricewave import stack
from pricewave.config import Settings, load_settings
from pricewave.kafka_io import ensure_topics, make_admin, make_consumer


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings tests run with: defaults plus PRICEWAVE_* from the environment."""
    return load_settings()


@pytest.fixture(scope="session")
def kafka_stack(settings: Settings) -> Settings:
    """A real Kafka broker at ``settings.kafka.bootstrap_servers`` (started if not running)."""
    stack.up(settings, ["kafka"])
    return settings


@pytest.fixture(scope="session")
def redis_stack(settings: Settings) -> Settings:
    """The stack's real Redis server (started if not running)."""
    stack.up(settings, ["redis"])
    return settings


@pytest.fixture(scope="session")
def flink_cluster(settings: Settings) -> Settings:
    """The real standalone Flink cluster (JobManager + TaskManagers), started if not running."""
    stack.up(settings, ["flink"])
    return settings


@pytest.fixture
def fresh_topic(kafka_stack: Settings, request: pytest.FixtureRequest) -> Iterator[str]:
    """A newly created topic with a unique name; deleted after the test."""
    stem = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:80]
    name = f"test-{stem}-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_stack, [name])
    yield name
    admin = make_admin(kafka_stack)
    try:
        admin.delete_topics([name])
    except Exception:  # best effort: a leftover test topic harms nothing
        pass
    finally:
        admin.close()


def consume_all(
    settings: Settings,
    topic: str,
    *,
    expected: int | None = None,
    timeout_s: float = 30.0,
    read_committed: bool = True,
) -> list[ConsumerRecord]:
    """Read a topic from the beginning until ``expected`` records arrived or it stays quiet.

    Without ``expected``, returns once no record arrived for 3 s (or at the timeout).
    """
    consumer = make_consumer(settings, [topic], read_committed=read_committed, consumer_timeout_ms=500)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    last_arrival = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
                last_arrival = time.monotonic()
            if expected is not None and len(records) >= expected:
                break
            if expected is None and records and time.monotonic() - last_arrival > 3:
                break
    finally:
        consumer.close()
    return records
