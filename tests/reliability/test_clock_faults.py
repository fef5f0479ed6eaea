"""Clock faults in the input: records stamped minutes ahead, and the late verdict across a restore.

Real broker, real Flink MiniCluster, small inputs on fresh single-partition topics.

* :func:`test_records_minutes_ahead_neither_move_the_watermark_nor_make_on_time_traffic_late`: one
  valid and one malformed click stamped 4 minutes ahead of the stream (and of their own Kafka record
  timestamp), in the middle of on-time traffic. Both are dead-lettered with their reason, none of the
  on-time clicks after them is late, and every window closes with the counts of the on-time clicks.
  Before, such a record moved its partition's watermark 4 minutes ahead (the job's clock guard
  allows 5 minutes) and the ~4 minutes of traffic after it were dead-lettered as ``late``.
* :func:`test_a_late_record_is_late_after_a_restore_too`: a job stopped with a savepoint and
  restored from it judges a record 10 minutes behind its partition ``late``. Before, the late
  verdict (``CURRENT_WATERMARK``) was NULL after every restore until the first new watermark, so
  the first records after a restore were on time whatever their event time.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pricewave.config import Settings
from pricewave.job import JobOptions, build_pipeline, create_table_environment, register_udfs
from pricewave.job.sources import checked_view, dead_letter_ddl, dead_letter_insert, record_skew_reason, source_ddl
from pricewave.kafka_io import encode_json, make_producer
from pricewave.privacy import pseudonymize_user
from pricewave.schemas import check_event
from tests.reliability.harness import MINUTE, T0, bounded_options, decision_log_rows, fresh_topics, read_topic

pytestmark = pytest.mark.integration

SKUS = ["sku-a", "sku-b", "sku-c"]
KINDS = ["view", "view", "click", "view", "add_to_cart", "purchase"]
AHEAD_MS = 4 * MINUTE


def click(n: int, event_time: int) -> dict[str, Any]:
    kind = KINDS[n % len(KINDS)]
    record: dict[str, Any] = {
        "event_id": f"c{n}",
        "event_type": kind,
        "user_key": pseudonymize_user(f"clock-user-{n % 7}", b"clock"),
        "session_id": f"s{n % 7}",
        "sku": SKUS[n % len(SKUS)],
        "price_seen": 10.0 + n % 5,
        "channel": "web",
        "event_time": event_time,
    }
    if kind in ("add_to_cart", "purchase"):
        record["quantity"] = 1
    return record


def _feature_repo(applied_feature_repo: Path, base: Path) -> Path:
    import shutil

    repo = base / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    return repo


@pytest.fixture
def clock_settings(kafka_stack: Settings, applied_feature_repo: Path, tmp_path: Path) -> Iterator[Settings]:
    """Fresh single-partition topics and a private applied feature repo with a catalog."""
    from pricewave.feature_store import FeatureWriter, open_store

    settings = fresh_topics(kafka_stack).model_copy(
        update={"feature_repo": str(_feature_repo(applied_feature_repo, tmp_path))}
    )
    catalog = [
        {"sku": sku, "base_price": 12.0, "cost": 6.0, "map_price": None, "ceiling_price": 20.0,
         "category": "coffee", "event_time": T0 - 86_400_000}
        for sku in SKUS
    ]  # fmt: skip
    FeatureWriter(open_store(settings)).write("sku_catalog", catalog)
    yield settings


def test_records_minutes_ahead_neither_move_the_watermark_nor_make_on_time_traffic_late(
    clock_settings: Settings, tmp_path: Path
) -> None:
    settings = clock_settings
    # 15 minutes of clicks, one every 10 s, each sent by a producer whose clock is right: its Kafka
    # record timestamp is its event time. In the middle, two records from a device whose clock runs
    # 4 minutes ahead (the producer stamps them with its own, right, clock). The stream starts 30
    # minutes ago, not at T0: the broker's retention would delete records with timestamps that old.
    start = (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    stream = [click(n, start + n * 10_000) for n in range(90)]
    middle = 45
    now = stream[middle]["event_time"]
    ahead_valid = click(1000, now + AHEAD_MS)
    ahead_malformed = encode_json({**click(1001, now + AHEAD_MS), "price_seen": -1.0})
    malformed_reason = check_event("click_event", ahead_malformed)[1]
    assert malformed_reason is not None and malformed_reason.startswith("out_of_range")
    producer = make_producer(settings)
    topic = settings.topics.clicks
    offsets: dict[str, int] = {}
    for n, record in enumerate(stream):
        producer.send(topic, encode_json(record), timestamp_ms=record["event_time"]).get(timeout=30)
        if n == middle:
            offsets["valid"] = producer.send(topic, encode_json(ahead_valid), timestamp_ms=now).get(timeout=30).offset
            offsets["malformed"] = producer.send(topic, ahead_malformed, timestamp_ms=now).get(timeout=30).offset
    producer.close()

    options = bounded_options(decision_log_dir=str(tmp_path / "decisions"))
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options).execute().wait()

    letters = [json.loads(r.value) for r in read_topic(settings, settings.topics.dlq, read_committed=False)]
    by_offset = {letter["offset"]: letter["reason"] for letter in letters}
    late = sorted(offset for offset, reason in by_offset.items() if reason == "late")
    assert not late, f"{len(late)} on-time clicks were dead-lettered as late (offsets {late[:5]}...)"
    assert by_offset == {
        offsets["valid"]: "bad_timestamp: event_time more than 60 s ahead of its Kafka record timestamp",
        offsets["malformed"]: malformed_reason,
    }
    assert record_skew_reason(options) == by_offset[offsets["valid"]]
    raw = json.loads(base64.b64decode(next(d["raw_b64"] for d in letters if d["offset"] == offsets["valid"])))
    assert raw["event_id"] == "c1000"

    # Every window closed, with the demand of the on-time clicks only (the ahead ones not counted).
    frame = pd.DataFrame(stream)
    expected: dict[tuple[str, int], tuple[int, int]] = {}
    last = int(frame.event_time.max()) + 11 * MINUTE
    for end in range(start + MINUTE, last, MINUTE):
        window = frame[(frame.event_time >= end - 10 * MINUTE) & (frame.event_time < end)]
        recent = window[window.event_time >= end - 2 * MINUTE]
        for sku, group in window.groupby("sku"):
            views_5m = int((recent[recent.sku == sku].event_type == "view").sum())
            expected[(str(sku), end - 1)] = (views_5m, int((group.event_type == "view").sum()))
    seen = {}
    for row in decision_log_rows(tmp_path / "decisions"):
        if row["kind"] == "sku":
            features = json.loads(row["features_json"])
            seen[(row["sku"], int(row["event_time"]))] = (int(features["views_5m"]), int(features["views_1h"]))
    assert seen == expected


def _dead_letter_pipeline(settings: Settings, options: JobOptions) -> Any:
    """The clicks' source, validation and dead letters of the job: a small job to stop and restore."""
    t_env = create_table_environment(settings, options)
    register_udfs(t_env, settings, options)
    t_env.execute_sql(source_ddl(settings, "clicks", options=options))
    t_env.execute_sql(checked_view(settings, "clicks", options))
    t_env.execute_sql(dead_letter_ddl(settings, options))
    statements = t_env.create_statement_set()
    statements.add_insert_sql(dead_letter_insert(settings, "clicks"))
    return statements


def _stop_with_savepoint(client: Any, directory: Path) -> str:
    """Stop the job with a canonical savepoint and return its path (PyFlink's wrapper misses the format)."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return str(client._j_job_client.stopWithSavepoint(False, directory.as_uri(), canonical).get())


def _wait_for_letters(settings: Settings, count: int, timeout_s: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        letters = [json.loads(r.value) for r in read_topic(settings, settings.topics.dlq, read_committed=False)]
        if len(letters) >= count:
            return letters
        time.sleep(1)
    raise AssertionError(f"fewer than {count} dead letters after {timeout_s} s")


def test_a_late_record_is_late_after_a_restore_too(clock_settings: Settings, tmp_path: Path) -> None:
    settings = clock_settings
    topic = settings.topics.clicks
    options = replace(
        bounded_options(), bounded=False, checkpoint_interval_s=1.0, extra_config={"parallelism.default": "1"}
    )
    producer = make_producer(settings)
    rng = random.Random(7)

    def send(values: list[bytes]) -> list[int]:
        futures = [producer.send(topic, value) for value in values]
        return [future.get(timeout=30).offset for future in futures]

    # Run 1: 20 minutes of clicks, then a malformed marker (its dead letter: run 1 read everything).
    send([encode_json(click(n, T0 + n * 60_000)) for n in range(20)] + [b"{marker-1"])
    client = _dead_letter_pipeline(settings, options).execute().get_job_client()
    assert client is not None
    _wait_for_letters(settings, 1)
    savepoint = _stop_with_savepoint(client, tmp_path / "savepoints")

    # Run 2, restored: a click 10 minutes behind its partition, an on-time one, then a marker.
    behind, on_time = click(100, T0 + 9 * 60_000), click(101, T0 + 19 * 60_000 + rng.randrange(1000))
    offsets = send([encode_json(behind), encode_json(on_time), b"{marker-2"])
    restored = replace(options, extra_config={**options.extra_config, "execution.state-recovery.path": savepoint})
    client = _dead_letter_pipeline(settings, restored).execute().get_job_client()
    assert client is not None
    _wait_for_letters(settings, 3)
    _stop_with_savepoint(client, tmp_path / "savepoints")

    letters = [json.loads(r.value) for r in read_topic(settings, settings.topics.dlq)]  # committed only
    assert len(letters) == 3, "a record was dead-lettered twice: the restored job did not resume"
    reasons = {letter["offset"]: letter["reason"].split(":")[0] for letter in letters}
    # Exactly: run 1's marker, and in run 2 the click behind (late) and the marker; not the on-time click.
    assert reasons == {20: "bad_json", offsets[0]: "late", offsets[2]: "bad_json"}, reasons


def test_the_record_skew_is_validated_and_guards_the_rowtime(settings: Settings) -> None:
    from pricewave.errors import ConfigError

    for skew in (0, -1, 86_401):
        with pytest.raises(ConfigError, match="--max-record-skew must be in"):
            JobOptions(max_record_skew_s=skew).validate()
    ddl = source_ddl(settings, "clicks", options=JobOptions(max_record_skew_s=90))
    assert "METADATA FROM 'timestamp'" in ddl
    assert "> `kafka_timestamp` + INTERVAL '0 00:01:30.000' DAY TO SECOND(3)" in ddl
    reason = record_skew_reason(JobOptions(max_record_skew_s=90))
    assert reason == "bad_timestamp: event_time more than 90 s ahead of its Kafka record timestamp"
