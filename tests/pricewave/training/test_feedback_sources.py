"""Where ``train --from-log`` reads a live shop's outcomes: the clickstream topic and the online store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pricewave.config import Settings, load_settings
from pricewave.feature_store import open_store
from pricewave.kafka_io import make_producer
from pricewave.simulator.runner import Simulator
from pricewave.stack.process import child_environment
from pricewave.training.feedback import catalog_from_store, clicks_from_topic

pytestmark = pytest.mark.integration


def test_clicks_come_from_the_committed_topic_and_malformed_ones_are_skipped(
    fresh_topic_settings: Callable[..., Settings],
) -> None:
    settings = fresh_topic_settings("test-feedback")
    sim = Simulator("small", settings, seed=2, review_texts=["-"])
    clicks = [e.record for e in sim.iter_events(max_events=400) if e.name == "click_event" and e.record]
    producer = make_producer(settings)
    for record in clicks:
        producer.send(settings.topics.clicks, json.dumps(record).encode())
    producer.send(settings.topics.clicks, b'{"event_type": "view", "sku": ')  # malformed: skipped
    producer.flush()
    producer.close()
    frame = clicks_from_topic(settings, timeout_s=60)
    assert len(frame) == len(clicks) > 50
    assert sorted(frame["event_time"]) == sorted(r["event_time"] for r in clicks)
    assert set(frame["event_type"]) == {r["event_type"] for r in clicks}
    assert list(frame.columns) == ["sku", "event_type", "price_seen", "quantity", "event_time"]


def test_cost_and_limits_come_from_the_online_stores_catalog(feature_repo_copy: Path, tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    env = child_environment()
    for args in (
        ["export", "--scenario", "small", "--out", str(path)],
        ["load", str(path), "--repo", str(feature_repo_copy), "--profile", "sqlite"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "pricewave", "catalog", *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
    settings = load_settings()
    expected = {r["sku"]: r for r in Simulator("small", settings, seed=7).catalog_records()}
    store = open_store(settings, repo_path=feature_repo_copy, profile="sqlite")
    catalog = catalog_from_store(settings, list(expected), store=store)
    assert sorted(catalog["sku"]) == sorted(expected)
    for row in catalog.to_dict("records"):
        assert row["cost"] == pytest.approx(expected[row["sku"]]["cost"])
        assert row["ceiling_price"] == pytest.approx(expected[row["sku"]]["ceiling_price"])
