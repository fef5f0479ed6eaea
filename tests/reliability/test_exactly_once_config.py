"""The exactly-once ``prices`` sink: a transaction timeout that fits, and transactional ids that do not collide.

1. The Kafka sink's transaction timeout (``JobOptions.transaction_timeout_s``, as it appears in the
   job's own sink DDL) must be above checkpoint timeout + restart delay (a transaction must outlive
   the checkpoint that commits it and a restart that recovers it, or the broker aborts it and the
   data is lost) and at most the broker's ``transaction.max.timeout.ms`` (read from the running
   broker with kafka-python's admin ``describe_configs``; above it the sink cannot start). The
   checkpoint timeout and restart delay are the job's effective values: its own configuration, else
   Flink's defaults read from the Flink jars.
2. Two jobs run side by side the way production runs blue/green (two group ids, the transactional
   id prefix derived from each, ``<group_id>-prices``, and one shared online store) on the same
   input and the same ``prices`` topic without fencing each other: both finish and each decision is
   committed once by each job.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidTransactionTimeoutError, KafkaError

from pricewave.config import Settings
from pricewave.job import JobOptions, build_pipeline, create_table_environment
from pricewave.job.sinks import prices_sink_ddl
from pricewave.kafka_io import encode_json, make_admin, make_producer
from pricewave.privacy import pseudonymize_user
from tests.reliability.harness import T0, bounded_options, decision_log_rows, fresh_topics, read_topic

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TransactionBudget:
    """The numbers that decide whether an exactly-once Kafka sink is safe, in milliseconds."""

    transaction_timeout_ms: int
    checkpoint_timeout_ms: int
    restart_delay_ms: int
    broker_max_ms: int

    def problems(self) -> list[str]:
        found = []
        floor = self.checkpoint_timeout_ms + self.restart_delay_ms
        if self.transaction_timeout_ms <= floor:
            found.append(
                f"transaction timeout {self.transaction_timeout_ms} ms is not above checkpoint timeout "
                f"{self.checkpoint_timeout_ms} ms + restart delay {self.restart_delay_ms} ms: a slow checkpoint or "
                "a restart lets the broker abort committed-to-be data"
            )
        if self.transaction_timeout_ms > self.broker_max_ms:
            found.append(
                f"transaction timeout {self.transaction_timeout_ms} ms is above the broker's "
                f"transaction.max.timeout.ms {self.broker_max_ms} ms: the sink cannot start"
            )
        return found


def broker_transaction_max_ms(settings: Settings) -> int:
    """``transaction.max.timeout.ms`` of the running broker (node 1), from describe_configs."""
    admin = make_admin(settings)
    try:
        resource = ConfigResource(ConfigResourceType.BROKER, "1", configs={"transaction.max.timeout.ms": None})
        response = admin.describe_configs([resource])
    finally:
        admin.close()
    for _error, _message, _type, _name, entries in response[0].resources:
        for entry in entries:
            if entry[0] == "transaction.max.timeout.ms":
                return int(entry[1])
    raise AssertionError("the broker did not report transaction.max.timeout.ms")


def _duration_ms(text: str) -> int:
    from pyflink.java_gateway import get_gateway

    return int(get_gateway().jvm.org.apache.flink.util.TimeUtils.parseDuration(text).toMillis())


def job_budget(settings: Settings, options: JobOptions, broker_max_ms: int) -> TransactionBudget:
    """The job's effective transaction budget: its DDL, its configuration, Flink's defaults."""
    from pyflink.java_gateway import get_gateway

    ddl = prices_sink_ddl(settings, options)
    match = re.search(r"'properties\.transaction\.timeout\.ms' = '(\d+)'", ddl)
    assert match, "the prices sink sets no transaction timeout: Flink's default (1 h) applies"
    config = create_table_environment(settings, options).get_config()
    jvm = get_gateway().jvm.org.apache.flink.configuration
    checkpoint_default = jvm.CheckpointingOptions.CHECKPOINTING_TIMEOUT.defaultValue().toMillis()
    checkpoint_ms = _duration_ms(config.get("execution.checkpointing.timeout", f"{checkpoint_default} ms"))
    strategy = options.restart_strategy
    restart = jvm.RestartStrategyOptions
    if strategy in ("exponential-delay", "exponentialdelay"):
        key, default = (
            "restart-strategy.exponential-delay.max-backoff",
            restart.RESTART_STRATEGY_EXPONENTIAL_DELAY_MAX_BACKOFF,
        )
    elif strategy in ("fixed-delay", "fixeddelay"):
        key, default = "restart-strategy.fixed-delay.delay", restart.RESTART_STRATEGY_FIXED_DELAY_DELAY
    elif strategy in ("failure-rate", "failurerate"):
        key, default = "restart-strategy.failure-rate.delay", restart.RESTART_STRATEGY_FAILURE_RATE_DELAY
    else:
        key, default = "", None
    restart_ms = _duration_ms(config.get(key, f"{default.defaultValue().toMillis()} ms")) if default else 0
    return TransactionBudget(int(match.group(1)), int(checkpoint_ms), int(restart_ms), broker_max_ms)


def test_transaction_timeout_fits_checkpoints_restarts_and_the_broker(kafka_stack: Settings) -> None:
    broker_max = broker_transaction_max_ms(kafka_stack)
    assert broker_max == kafka_stack.kafka.transaction_max_timeout_ms  # what the stack configured
    budget = job_budget(kafka_stack, JobOptions(), broker_max)
    print(f"\n[reliability] exactly-once budget: {budget}")
    assert budget.problems() == []


def test_the_budget_check_catches_both_mistakes(kafka_stack: Settings) -> None:
    broker_max = broker_transaction_max_ms(kafka_stack)
    too_long = job_budget(kafka_stack, JobOptions(transaction_timeout_s=broker_max // 1000 + 1), broker_max)
    assert any("transaction.max.timeout.ms" in problem for problem in too_long.problems())
    too_short = job_budget(
        kafka_stack,
        JobOptions(transaction_timeout_s=600, extra_config={"execution.checkpointing.timeout": "10 min"}),
        broker_max,
    )
    assert any("checkpoint timeout" in problem for problem in too_short.problems())
    # And the broker really refuses a transaction timeout above its maximum.
    producer = make_producer(
        kafka_stack, transactional_id=f"rel-{uuid.uuid4().hex}", transaction_timeout_ms=broker_max + 1
    )
    try:
        # The broker's own refusal, error 50 (INVALID_TRANSACTION_TIMEOUT), not a connection timeout:
        # kafka-python 2.3 wraps it in a plain KafkaError naming the error class.
        refused = rf"\[Error {InvalidTransactionTimeoutError.errno}\] InvalidTransactionTimeoutError"
        with pytest.raises(KafkaError, match=refused):
            producer.init_transactions()
    finally:
        producer.close(timeout=5)


def test_two_jobs_with_different_transactional_prefixes_do_not_fence_each_other(
    kafka_stack: Settings, applied_feature_repo: Path, redis_env: Settings, tmp_path: Path
) -> None:
    """Blue/green as production runs it: two group ids, the default prefix, one shared store.

    Neither job is given a transactional id prefix: each derives ``<group_id>-prices`` (and its
    dead-letter sink ``dead-letters-<group_id>-prices``) as in production, where green's group id
    is blue's with a suffix. Both write the same online store (one Redis profile, one feature repo).
    """
    from pricewave.feature_store import FeatureWriter, open_store

    repo = tmp_path / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    settings = fresh_topics(kafka_stack).model_copy(
        update={"feature_repo": str(repo), "store_profile": "redis", "redis": redis_env.redis}
    )
    skus = [f"eo-{n}" for n in range(4)]
    catalog = [
        {"sku": sku, "base_price": 15.0, "cost": 6.0, "map_price": None, "ceiling_price": 30.0, "category": "coffee",
         "event_time": T0 - 86_400_000}
        for sku in skus
    ]  # fmt: skip
    FeatureWriter(open_store(settings)).write("sku_catalog", catalog)
    producer = make_producer(settings)
    # 333 minutes, one click a second. The second job starts pricing well after the first (its own
    # MiniCluster and workers start once the first job is submitted): with 3,000 clicks the first
    # had finished by then and the two never wrote at the same time; with 15,000 (alone, 2026-12-07)
    # the first priced for 34 s, the second from 20 s after it, overlapping 13.7 s. 36,000 until
    # 2026-12-07 (143 s of CI).
    for n in range(20_000):
        producer.send(
            settings.topics.clicks,
            encode_json(
                {
                    "event_id": f"eo{n}",
                    "event_type": ("view", "click", "add_to_cart", "purchase")[n % 4],
                    "user_key": pseudonymize_user(f"eo-user-{n % 9}", b"reliability"),
                    "session_id": f"s{n % 9}",
                    "sku": skus[n % len(skus)],
                    "price_seen": 15.0,
                    "channel": "app",
                    "event_time": T0 + n * 1000,
                    **({"quantity": 1} if n % 4 >= 2 else {}),
                }
            ),
            key=b"k",
        )
    producer.flush()
    producer.close()

    statements = {}
    blue_group = f"pricewave-pricing-{uuid.uuid4().hex[:6]}"
    groups = {"blue": blue_group, "green": f"{blue_group}-green"}
    for name, group_id in groups.items():  # the same settings; own group id and decision log
        options = bounded_options(
            group_id=group_id,
            transactional_id_prefix="",  # production's: derived from the group id
            checkpoint_interval_s=1.0,
            decision_log_dir=str(tmp_path / name / "decisions"),
        )
        assert f"'sink.transactional-id-prefix' = '{group_id}-prices'" in prices_sink_ddl(settings, options)
        t_env = create_table_environment(settings, options)
        statements[name] = build_pipeline(t_env, settings, options)
    results = {name: statement_set.execute() for name, statement_set in statements.items()}  # back to back
    # Side by side: blue still runs once green has been submitted (and its sink has started).
    blue_client = results["blue"].get_job_client()
    assert blue_client is not None
    try:
        blue_state_at_green_start = str(blue_client.get_job_status().result()).rsplit(".", 1)[-1]
    except Exception:  # a finished job's MiniCluster is gone: asking it raises
        blue_state_at_green_start = "ENDED (its MiniCluster had shut down)"

    for result in results.values():
        result.wait()  # raises when the job failed (restart strategy 'none'): e.g. ProducerFencedException
    # They ran at the same time: the wall-clock spans in which each priced (its decision log) overlap.
    spans = {}
    for name in results:
        times = [int(row["decision_time"]) for row in decision_log_rows(tmp_path / name / "decisions")]
        assert times, f"{name} logged no decision"
        spans[name] = (min(times), max(times))
    (blue_start, blue_end), (green_start, green_end) = spans["blue"], spans["green"]
    overlap_s = (min(blue_end, green_end) - max(blue_start, green_start)) / 1000
    print(f"\n[reliability] blue/green pricing spans overlap by {overlap_s:.1f} s: {spans}")
    assert blue_state_at_green_start in ("CREATED", "INITIALIZING", "RUNNING"), blue_state_at_green_start
    assert overlap_s > 0, "the two jobs did not price at the same time: nothing was tested"

    prices = [json.loads(r.value) for r in read_topic(settings, settings.topics.prices)]
    sku_ids = Counter(d["decision_id"] for d in prices if d["kind"] == "sku")
    assert sku_ids, "no committed price"
    assert set(sku_ids.values()) == {2}, "each job must commit each of its decisions exactly once"
