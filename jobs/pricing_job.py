"""The streaming pricing job: Kafka in, validated and windowed in Flink SQL, priced by pandas UDFs.

Runs embedded on a MiniCluster (``python jobs/pricing_job.py``) or on a standalone cluster through
``flink run`` (``pricewave submit``); the code is the same and the settings decide.

Plan (Flink SQL unless noted):

1. **Sources**: one raw-bytes Kafka table per input topic, with the record's partition and offset.
   Event time comes from the record's ``event_time``, guarded so that a wild timestamp cannot drag
   the watermark: one before 2000, more than ``--max-clock-skew`` (5 min) ahead of the job's clock
   or more than ``--max-record-skew`` (60 s) ahead of its Kafka record timestamp gets none and is
   dead-lettered as ``bad_timestamp``. Watermarks allow ``--out-of-orderness`` and,
   in live runs, go idle after ``--idle-timeout`` (bounded runs never do).
2. **Validation**: a pandas UDF (:mod:`udfs.validation`), in the source's own task, gives each
   record its rejection reason from ``schemas/``; rejected records, and records behind their
   partition's watermark (reason ``late``, judged against the partition's latest event time kept
   in state, so a restore keeps it), go to the ``dlq`` topic with the raw bytes, source topic,
   partition and offset.
3. **Features**: duplicates removed by ``event_id`` (window deduplication); per-sku demand over a
   HOP window at two horizons; per-sku competition (cheapest in-stock offer, offers, staleness).
4. **Pricing** (pandas UDF, :mod:`udfs.pricing`): a price per sku and window; a personalized offer
   per view / add-to-cart, which meets its sku's price and window features as of the click's
   event time (event-time temporal join on the sku decisions, a versioned view, fed each sku's
   windows in event-time order), so a replay after a failure prices it the same. Then **sinks**:
   the ``prices`` topic (exactly-once, transactional) and the Feast online store (batched,
   event-time guarded).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, PlanReference, StatementSet, TableEnvironment, TableResult

from pricewave.config import Settings, load_settings, mask_secrets
from pricewave.errors import ConfigError, PricewaveError
from pricewave.kafka_io import flink_security_properties
from pricewave.schemas import (
    DEFAULT_INPUT_CLOCK_SKEW_S,
    MAX_FUTURE_SKEW_MS,
    MIN_EVENT_TIME_MS,
    flink_ddl_columns,
    flink_row_type,
    load_schema,
)
from pricewave.stack.jars import flink_connector_jars

# The schema of each input topic's records.
INPUT_SCHEMAS = {"clicks": "click_event", "competitor_prices": "competitor_price", "reviews": "review"}


@dataclass(frozen=True)
class JobOptions:
    """Knobs of the pricing job (the CLI flags of ``jobs/pricing_job.py``)."""

    group_id: str = "pricewave-pricing"
    starting_offsets: str = "group-offsets"  # or earliest-offset / latest-offset
    out_of_orderness_s: float = 5.0
    # An input event time further ahead of the job's clock gets no rowtime (it cannot move the
    # watermark) and is dead-lettered as bad_timestamp: a producer whose clock runs ahead would
    # otherwise make every other record late. The schemas allow a day (their contract for any record).
    max_clock_skew_s: float = DEFAULT_INPUT_CLOCK_SKEW_S
    # An input event time further ahead of its own Kafka record timestamp (the producer's create
    # time, kept in the log, so a replay judges it the same) gets no rowtime either and is
    # dead-lettered as bad_timestamp: one record from a clock running minutes ahead cannot move its
    # partition's watermark and make the on-time traffic after it late.
    max_record_skew_s: float = 60.0
    # Live runs only: a source with no records for this long stops holding the watermark back (an
    # empty partition would stall every window otherwise). Bounded runs ignore it (source_idle_timeout_s).
    idle_timeout_s: float = 5.0
    checkpoint_interval_s: float = 5.0
    window_slide_s: int = 60
    # A session is the user's clicks in the last 30 minutes (user_session TTL in the feature repo).
    session_gap_s: int = 1800
    short_horizon_s: int = 300
    long_horizon_s: int = 3600
    # A replayed duplicate carries its original's event time, so any window catches it (one that
    # arrives after the window fired is behind the watermark: dead-lettered as late). The window is
    # one millisecond: a click leaves it as soon as the watermark reaches its own time, before that
    # watermark goes on. A longer window held clicks back past later clicks' times, and at
    # parallelism > 1 another dedup subtask's watermark could then let the user's session window fire
    # a later click first and silently drop the held one as late (a timing-dependent lost offer).
    dedup_window_s: float = 0.001
    parallelism: int | None = None  # None: the cluster's / `flink run -p` default
    # 'exponential-delay' in production; tests use 'none' so that a failure surfaces at once.
    restart_strategy: str = "exponential-delay"
    # Bounded runs (tests, backfills) stop at the offsets that were latest when the job started.
    bounded: bool = False
    # 'on-periodic' (default) or 'on-event': emit a watermark after every record (exact lateness).
    watermark_emit_strategy: str = "on-periodic"
    # Empty: "<group_id>-prices", so two jobs on one broker never fence each other's transactions.
    transactional_id_prefix: str = ""
    # Above checkpoint interval + restart delay, below the broker's transaction.max.timeout.ms.
    transaction_timeout_s: int = 900
    # Where the decision log's JSON-lines part files go (default: <state>/decision_log).
    decision_log_dir: str = ""
    # A part file rolls over (is committed, on the next checkpoint) at this size or age; JSON part
    # files do not roll on checkpoints. `pricewave audit prune` caps the total size and age.
    decision_log_file_mb: int = 64
    decision_log_rollover_s: float = 60.0
    # Where checkpoints go when the cluster names no place (default: <state>/flink/checkpoints).
    # Give it its own filesystem, apart from the decision log: a full disk then fails checkpoints
    # (tolerated below) instead of the decision log's writes.
    checkpoint_dir: str = ""
    # Consecutive failed checkpoints (a full checkpoint disk, an expired checkpoint) the job keeps
    # running through; one more fails it (restart from the last completed one). Pending prices
    # commit with the next completed checkpoint, so interval x (n + 1) must stay well below the
    # transaction timeout (validate): an older transaction is aborted by the broker and lost.
    tolerable_failed_checkpoints: int = 60
    # Python execution tuned for latency: a bundle is flushed after 1,000 rows or 100 ms, so a
    # record waits at most ~0.1 s for its batch instead of the 1 s default; Arrow batches of up
    # to 1,000 rows keep the vectorized UDFs efficient at the throughput we target.
    bundle_size: int = 1000
    bundle_time_ms: int = 100
    arrow_batch_size: int = 1000
    # Embedded runs only (a cluster always starts worker processes): 'loopback' runs the Python
    # workers as threads of this process, sharing its interpreter and GIL; 'process' starts worker
    # processes that use every core (more throughput, fewer GIL waits; BENCHMARKS.md F8).
    python_workers: str = "loopback"
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def source_idle_timeout_s(self) -> float | None:
        """The idle timeout the sources get: none in a bounded run, which never needs one.

        A bounded source ends at its stopping offsets (an empty partition at once), so nothing can
        stall. Idleness, on the other hand, makes results depend on timing: during a broker outage
        longer than the timeout every source goes idle, and a two-input operator whose other input
        has already ended (at the final watermark) jumps to it. Measured (RELIABILITY.md §1, "Idle sources"):
        clicks that arrived after such a jump waited in the temporal join for a watermark that never
        came, and 5,923 of 12,874 offers were lost without an error.
        """
        return None if self.bounded else self.idle_timeout_s

    def validate(self) -> None:
        """Raise ConfigError for impossible settings."""
        if self.starting_offsets not in ("group-offsets", "earliest-offset", "latest-offset"):
            raise ConfigError(
                f"--starting-offsets must be group-offsets, earliest-offset or latest-offset, "
                f"not {self.starting_offsets!r}"
            )
        if not 0 < self.short_horizon_s <= self.long_horizon_s:
            raise ConfigError("windows: need 0 < short horizon <= long horizon")
        if self.long_horizon_s % self.window_slide_s or self.short_horizon_s % self.window_slide_s:
            raise ConfigError("windows: each horizon must be a whole number of slides")
        if self.out_of_orderness_s < 0 or self.idle_timeout_s <= 0 or self.checkpoint_interval_s <= 0:
            raise ConfigError("out-of-orderness must be >= 0, idle timeout and checkpoint interval > 0")
        if not 0 < self.max_clock_skew_s <= MAX_FUTURE_SKEW_MS / 1000:
            raise ConfigError(f"--max-clock-skew must be in (0, {MAX_FUTURE_SKEW_MS // 1000}] seconds")
        if not 0 < self.max_record_skew_s <= MAX_FUTURE_SKEW_MS / 1000:
            raise ConfigError(f"--max-record-skew must be in (0, {MAX_FUTURE_SKEW_MS // 1000}] seconds")
        if self.python_workers not in PYTHON_WORKER_MODES:
            raise ConfigError(f"--python-workers must be loopback or process, not {self.python_workers!r}")
        if self.tolerable_failed_checkpoints < 0 or self.decision_log_file_mb <= 0 or self.decision_log_rollover_s <= 0:
            raise ConfigError("--tolerable-failed-checkpoints must be >= 0, decision log file size and rollover > 0")
        if self.checkpoint_interval_s * (self.tolerable_failed_checkpoints + 1) >= self.transaction_timeout_s:
            raise ConfigError(
                f"checkpoint interval {self.checkpoint_interval_s:g} s x (tolerable failed checkpoints "
                f"{self.tolerable_failed_checkpoints} + 1) must stay below the transaction timeout "
                f"{self.transaction_timeout_s} s: the broker would abort prices waiting for a checkpoint"
            )


PYTHON_WORKER_MODES = ("loopback", "process")
# PyFlink reads this variable when a TableEnvironment is created (no configuration key exists).
_PYTHON_WORKER_MODE_VARIABLE = "_python_worker_execution_mode"


@contextlib.contextmanager
def _python_worker_mode(mode: str) -> Iterator[None]:
    """Create a TableEnvironment inside this to get ``process`` workers on a MiniCluster."""
    if mode != "process":
        yield  # PyFlink's default: loopback when local, processes on a cluster
        return
    previous = os.environ.get(_PYTHON_WORKER_MODE_VARIABLE)
    os.environ[_PYTHON_WORKER_MODE_VARIABLE] = "process"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PYTHON_WORKER_MODE_VARIABLE, None)
        else:
            os.environ[_PYTHON_WORKER_MODE_VARIABLE] = previous


def _quote(name: str) -> str:
    return f"`{name}`"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _interval(seconds: float) -> str:
    """A SQL interval literal of any length (plain ``SECOND`` literals stop at 99 s)."""
    millis = _ms(seconds)
    days, rest = divmod(millis, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}' DAY TO SECOND(3)"


def kafka_options(settings: Settings, topic: str, *, options: JobOptions, source: bool) -> str:
    """The WITH clause of a Kafka table."""
    pairs = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": settings.kafka.bootstrap_servers,
        # SASL from the settings, credentials from the environment (the job refuses to start without).
        **{f"properties.{key}": value for key, value in flink_security_properties(settings).items()},
    }
    if source:
        pairs.update(
            {
                "properties.group.id": options.group_id,
                "properties.isolation.level": "read_committed",
                "scan.startup.mode": options.starting_offsets,
                "properties.auto.offset.reset": "earliest",
                "format": "raw",
                "scan.watermark.emit.strategy": options.watermark_emit_strategy,
            }
        )
        if options.bounded:
            pairs["scan.bounded.mode"] = "latest-offset"
    return ",\n  ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in pairs.items())


def source_ddl(settings: Settings, role: str, *, options: JobOptions) -> str:
    """A raw-bytes source table for one input topic, with event time and a watermark."""
    topic = getattr(settings.topics, role)
    # NULL ON ERROR: a poison record (event_time "yesterday", 1e400, ...) must not fail the source.
    event_time_ms = "TRY_CAST(JSON_VALUE(CAST(`raw` AS STRING), '$.event_time' NULL ON ERROR) AS BIGINT)"
    # A record whose event_time is missing or outside [2000-01-01, now + max clock skew], or more
    # than max record skew ahead of its Kafka record timestamp, gets no rowtime, so it cannot move
    # the watermark; validation dead-letters it (checked_view). The record timestamp is in the log:
    # a replay after a failure judges the record the same (the job's clock cannot promise that).
    now_plus_skew = f"UNIX_TIMESTAMP() * 1000 + {_ms(options.max_clock_skew_s)}"
    in_range = f"{event_time_ms} BETWEEN {MIN_EVENT_TIME_MS} AND {now_plus_skew}"
    ahead = _ahead_of_record(event_time_ms, options)
    guarded = f"CASE WHEN {in_range} AND NOT ({ahead}) THEN {event_time_ms} END"
    idle_timeout_s = options.source_idle_timeout_s
    idle = "" if idle_timeout_s is None else f",\n  'scan.watermark.idle-timeout' = '{_ms(idle_timeout_s)} ms'"
    return f"""
CREATE TEMPORARY TABLE {_quote("src_" + role)} (
  `raw` BYTES,
  `kafka_partition` INT METADATA FROM 'partition' VIRTUAL,
  `kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `kafka_timestamp` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `event_time_ms` AS {event_time_ms},
  `ahead_of_record` AS COALESCE({in_range} AND {ahead}, FALSE),
  `event_time` AS TO_TIMESTAMP_LTZ({guarded}, 3),
  `arrival` AS PROCTIME(),
  WATERMARK FOR `event_time` AS `event_time` - {_interval(options.out_of_orderness_s)}
) WITH (
  {kafka_options(settings, topic, options=options, source=True)}{idle}
)"""


def _ahead_of_record(event_time_ms: str, options: JobOptions) -> str:
    """SQL: TRUE when an (in-range) event time lies more than max record skew past the record's timestamp."""
    return f"TO_TIMESTAMP_LTZ({event_time_ms}, 3) > `kafka_timestamp` + {_interval(options.max_record_skew_s)}"


def record_skew_reason(options: JobOptions) -> str:
    """The dead-letter reason of a schema-valid record stamped too far ahead of its Kafka record timestamp."""
    return f"bad_timestamp: event_time more than {options.max_record_skew_s:g} s ahead of its Kafka record timestamp"


def checked_view(settings: Settings, role: str, options: JobOptions | None = None) -> str:
    """Each record with its rejection reason: the schema's, else ``bad_timestamp`` or ``late``.

    The schema check (a pandas UDF) runs in the source's own task, before any exchange, so it
    reads, holds and releases records in source order: a Python operator holds the watermark
    until its bundle is done but passes an IDLE status on at once, and where it ran behind an
    exchange (as it did until 2026-12-05), a source that went idle while the operator's task was
    still starting (or behind) marked that channel idle ahead of the records in the bundle, so the
    other channels' watermark ran past them and the dedup window dropped them as late, silently
    (a live job on fresh TaskManagers priced 1 of 60 views; RELIABILITY.md row 5g). In the source's
    task, the source is not read before the operator is open, and the bundle (flushed every
    ``bundle_time_ms``) is done before the idle timeout can pass.

    ``late``: behind its partition's watermark, i.e. more than the out-of-orderness behind the
    latest event time (rowtime) of the records before it in its Kafka partition. That maximum is
    an OVER aggregate per partition, in offset order (one source reader per partition, and the
    exchange keeps each sender's order), held in keyed state: the verdict is a function of the
    partition's records alone, the same in a replay after a failure and right after a restore
    (``CURRENT_WATERMARK`` is NULL then, and is timing-dependent with periodic watermarks). It is
    never milder than the watermark the windows see (the minimum over partitions), so a record
    the windows would drop is dead-lettered, not lost. Every branch of the plan (dead letters,
    windows) sees the same verdict for a record. Reasons, first that applies: the schema's; an
    event time the source refused (ahead of the job's clock, or of the record's timestamp); late.
    """
    options = options or JobOptions()
    schema = INPUT_SCHEMAS[role]
    bound_ms = _ms(options.out_of_orderness_s)
    # A record exactly at the watermark (max - bound) is late too: the watermark already equals its
    # time, and a window ending there (the 1 ms dedup window) has fired. With no bound, "equal to the
    # max" is the record itself, which is on time.
    behind = "<=" if bound_ms > 0 else "<"
    return f"""
CREATE TEMPORARY VIEW {_quote("checked_" + role)} AS
SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`,
  CASE
    WHEN `invalid` IS NOT NULL THEN `invalid`
    WHEN `ahead_of_record` THEN {_sql_string(record_skew_reason(options))}
    WHEN `event_time` IS NOT NULL AND `event_time_ms` {behind} `partition_max_ms` - {bound_ms} THEN 'late'
  END AS `reason`
FROM (
  SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`, `ahead_of_record`, `invalid`,
    MAX(CASE WHEN `event_time` IS NOT NULL THEN `event_time_ms` END) OVER (
      PARTITION BY `kafka_partition` ORDER BY `arrival` ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS `partition_max_ms`
  FROM (
    SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`, `ahead_of_record`, `arrival`,
      {_quote("validate_" + schema)}(`raw`, `event_time` IS NULL AND NOT `ahead_of_record`) AS `invalid`
    FROM {_quote("src_" + role)}
  )
)"""


def dead_letter_ddl(settings: Settings, options: JobOptions | None = None) -> str:
    """The dead-letter topic's sink table, columns from ``schemas/dead_letter``.

    Exactly-once, like ``prices``: a replay after a failure re-reads the records since the last
    checkpoint, and an at-least-once sink wrote their dead letters a second time (the monitor and
    every count over the topic then counted them twice). Its transactional ids get their own prefix,
    which no ``prices`` prefix starts with (a sink aborts the lingering transactions of its prefix).
    """
    options = options or JobOptions()
    prefix = "dead-letters-" + (options.transactional_id_prefix or options.group_id + "-prices")
    return f"""
CREATE TEMPORARY TABLE `dead_letters` (
{flink_ddl_columns("dead_letter")}
) WITH (
  {kafka_options(settings, settings.topics.dlq, options=options, source=False)},
  'format' = 'json',
  'json.encode.ignore-null-fields' = 'false',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = {_sql_string(prefix)},
  'properties.transaction.timeout.ms' = '{options.transaction_timeout_s * 1000}',
  -- A dead letter carries its record base64-encoded (4/3 the size): allow up to the broker's limit.
  'properties.max.request.size' = '2097152'
)"""


MAX_DEAD_LETTER_B64_CHARS = 1_398_104  # base64 of 1 MiB (+ padding)


def dead_letter_insert(settings: Settings, roles: str | Sequence[str]) -> str:
    """Route the rejected and late records of one topic (or several) to the dead-letter topic.

    Several roles make one INSERT of a UNION ALL, so one sink writes every dead letter: an
    exactly-once sink per role would share one transactional id prefix, which the Kafka sink refuses.
    The bytes kept are the record's with every raw user id replaced by its keyed pseudonym
    (``pseudonymize_dead_letter``, :class:`udfs.validation.DeadLetterPseudonymizer`; the replaced
    fields in ``pseudonymized``); ``raw_size`` is the size as received.
    """
    roles = [roles] if isinstance(roles, str) else list(roles)
    return "\nINSERT INTO `dead_letters`" + "\nUNION ALL".join(_dead_letter_select(settings, role) for role in roles)


def _dead_letter_select(settings: Settings, role: str) -> str:
    """The dead letters of one input topic (see :func:`dead_letter_insert`)."""
    topic = getattr(settings.topics, role)
    return f"""
SELECT `reason`, {_sql_string(topic)}, `kafka_partition`, `kafka_offset`,
  -- Whole up to 1 MiB of raw bytes (the topic's record limit allows no more); raw_size is exact.
  SUBSTRING(`kept_b64` FROM 1 FOR {MAX_DEAD_LETTER_B64_CHARS}),
  -- the byte size from the base64 text (4 characters per 3 bytes, less the padding)
  CAST(CHAR_LENGTH(`raw_b64`) / 4 * 3 - (CHAR_LENGTH(`raw_b64`) - CHAR_LENGTH(TRIM(TRAILING '=' FROM `raw_b64`)))
    AS BIGINT),
  {_sql_string(INPUT_SCHEMAS[role])},
  CAST(UNIX_TIMESTAMP() * 1000 AS BIGINT),
  `event_time_ms`,
  `pseudonymized`
FROM (
  SELECT *, COALESCE(TO_BASE64(`raw`), '') AS `raw_b64`, COALESCE(TO_BASE64(`kept`.`raw`), '') AS `kept_b64`,
    `kept`.`pseudonymized` AS `pseudonymized`
  FROM (SELECT *, `pseudonymize_dead_letter`(`raw`, `reason`) AS `kept` FROM {_quote("checked_" + role)}
        WHERE `reason` IS NOT NULL)
)"""


def _json_column(name: str, flink_type: str) -> str:
    if flink_type.startswith("ARRAY"):
        return f"JSON_QUERY(`json`, '$.{name}')"
    if flink_type == "BIGINT":  # JSON_VALUE cannot return BIGINT
        return f"TRY_CAST(JSON_VALUE(`json`, '$.{name}') AS BIGINT)"
    returning = {"STRING": "STRING", "INT": "INT", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN"}
    return f"JSON_VALUE(`json`, '$.{name}' RETURNING {returning.get(flink_type, 'STRING')})"


def typed_view(role: str) -> str:
    """The valid, on-time records of one topic as typed columns (parsed on the Java side)."""
    schema = INPUT_SCHEMAS[role]
    columns = [
        f"{_json_column(name, flink_type)} AS {_quote(name)}"
        for name, flink_type in flink_row_type(schema)
        if name != "event_time"
    ]
    return f"""
CREATE TEMPORARY VIEW {_quote("valid_" + role)} AS
SELECT {", ".join(columns)}, `event_time`
FROM (SELECT CAST(`raw` AS STRING) AS `json`, `event_time` FROM {_quote("checked_" + role)}
      WHERE `reason` IS NULL)"""


def deduplicated_clicks(options: JobOptions) -> str:
    """Clicks with replayed duplicates (same event_id) removed, keeping event time.

    Window deduplication: a duplicate carries the same event_time as its original, so both fall in
    the same tumbling window and only the first survives; state is freed when the window closes.
    The window is one millisecond (``dedup_window_s``): each click leaves when the watermark reaches
    its own event time, ahead of that watermark, so no event-time operator downstream (the per-user
    session OVER window above all) can see it behind its watermark, at any parallelism.
    """
    return f"""
CREATE TEMPORARY VIEW `unique_clicks` AS
SELECT `event_id`, `event_type`, `user_key`, `session_id`, `sku`, `price_seen`, `quantity`, `channel`,
  `event_time`
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY `window_start`, `window_end`, `event_id` ORDER BY `event_time`) AS `occurrence`
  FROM TABLE(TUMBLE(TABLE `valid_clicks`, DESCRIPTOR(`event_time`), {_interval(options.dedup_window_s)}))
) WHERE `occurrence` = 1"""


DEMAND_EVENT_TYPES = {"view": "views", "click": "clicks", "add_to_cart": "carts", "purchase": "purchases"}


def _demand_horizon_view(name: str, suffix: str, size_s: int, options: JobOptions, *, mean_price: bool) -> str:
    """Per-sku counts over one horizon: a HOP window whose aggregates never mention the window.

    Nothing window-dependent inside the aggregate arguments lets Flink slice the window: each click
    updates one slice, and a firing window merges its slices, instead of the click being copied
    into every window (size / slide times) it belongs to.
    """
    counts = ",\n  ".join(
        f"SUM(CASE WHEN `event_type` = '{kind}' THEN 1 ELSE 0 END) AS `{column}_{suffix}`"
        for kind, column in DEMAND_EVENT_TYPES.items()
    )
    price = ",\n  AVG(`price_seen`) AS `mean_price_seen_1h`" if mean_price else ""
    return f"""
CREATE TEMPORARY VIEW {_quote(name)} AS
SELECT `sku`, `window_start`, `window_end`, `window_time`,
  {counts},
  COUNT(DISTINCT `user_key`) AS `unique_users_{suffix}`{price}
FROM TABLE(HOP(TABLE `unique_clicks`, DESCRIPTOR(`event_time`),
  {_interval(options.window_slide_s)}, {_interval(size_s)}))
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_demand_views(options: JobOptions) -> list[str]:
    """Per-sku demand at two horizons: one sliced HOP window per horizon, joined on window time.

    Both windows slide together, so each long-horizon window meets the short-horizon window that
    ends with it; a sku without clicks in the short horizon gets zeros there.
    """
    short = [f"COALESCE(s.`{column}_5m`, 0) AS `{column}_5m`" for column in DEMAND_EVENT_TYPES.values()]
    long = [f"l.`{column}_1h`" for column in DEMAND_EVENT_TYPES.values()]
    conversion = "CAST({p} AS DOUBLE) / GREATEST({v}, 1)"
    columns = ",\n  ".join(
        [
            *short,
            *long,
            "COALESCE(s.`unique_users_5m`, 0) AS `unique_users_5m`",
            "l.`unique_users_1h`",
            conversion.format(p="COALESCE(s.`purchases_5m`, 0)", v="COALESCE(s.`views_5m`, 0)") + " AS `conversion_5m`",
            conversion.format(p="l.`purchases_1h`", v="l.`views_1h`") + " AS `conversion_1h`",
            "l.`mean_price_seen_1h`",
        ]
    )
    return [
        _demand_horizon_view("sku_demand_long", "1h", options.long_horizon_s, options, mean_price=True),
        _demand_horizon_view("sku_demand_short", "5m", options.short_horizon_s, options, mean_price=False),
        f"""
CREATE TEMPORARY VIEW `sku_demand` AS
SELECT l.`sku`, l.`window_start`, l.`window_end`, l.`window_time`,
  {columns}
FROM `sku_demand_long` AS l
LEFT JOIN `sku_demand_short` AS s
  ON l.`sku` = s.`sku`
  AND s.`window_time` BETWEEN l.`window_time` AND l.`window_time`""",
    ]


def sku_competition_view(options: JobOptions) -> str:
    """Per-sku competition over the short horizon: latest price per competitor, then min/median.

    A window Top-1 keeps the latest quote of each (sku, competitor) in the window; a window
    aggregation then takes, across the competitors in stock, the cheapest, the median and how
    many are live.
    """
    return f"""
CREATE TEMPORARY VIEW `sku_competition` AS
SELECT `sku`, `window_start`, `window_end`, `window_time`,
  MIN(`latest_price`) AS `competitor_min_price`,
  PERCENTILE(`latest_price`, 0.5) AS `competitor_median_price`,
  COUNT(*) AS `competitor_offers`,
  TIMESTAMPDIFF(SECOND, MAX(`latest_time`), `window_time`) AS `competitor_staleness_s`
FROM (
  SELECT `sku`, `window_start`, `window_end`, `window_time`, `price` AS `latest_price`, `in_stock`,
    `event_time` AS `latest_time`,
    ROW_NUMBER() OVER (
      PARTITION BY `window_start`, `window_end`, `sku`, `competitor` ORDER BY `event_time` DESC) AS `recency`
  FROM TABLE(HOP(TABLE `valid_competitor_prices`, DESCRIPTOR(`event_time`),
    {_interval(options.window_slide_s)}, {_interval(options.short_horizon_s)}))
) WHERE `recency` = 1 AND `in_stock`
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_features_view() -> str:
    """Demand joined with the competition of the same window (an interval join on window time)."""
    return """
CREATE TEMPORARY VIEW `sku_features` AS
SELECT d.*, c.`competitor_min_price`, c.`competitor_median_price`, c.`competitor_offers`,
  c.`competitor_staleness_s`
FROM `sku_demand` AS d
LEFT JOIN `sku_competition` AS c
  ON d.`sku` = c.`sku`
  AND c.`window_time` BETWEEN d.`window_time` AND d.`window_time`"""


# The online-store views' columns come from their schemas (event_time is the window time).
SKU_DEMAND_COLUMNS = tuple(name for name in load_schema("sku_demand").field_names if name != "event_time")
USER_SESSION_COLUMNS = ("user_key", "recent_views", "recent_carts", "mean_price_seen", "dwell_s", "event_time")
REVIEW_SUMMARY_COLUMNS = ("sku", "review_count", "mean_rating", "sentiment", "review_embedding", "event_time")
SKU_COMPETITION_COLUMNS = (
    "sku",
    "competitor_min_price",
    "competitor_median_price",
    "competitor_offers",
    "competitor_staleness_s",
)


def sku_review_versions_view() -> str:
    """Per sku, its hourly review summary as of any event time (a versioned view).

    A deduplication that keeps each sku's latest summary window on event time, read by Flink as a
    versioned table keyed by sku: a temporal join finds the summary that was complete at a given
    event time, the same in every run (the store's latest summary would depend on timing).
    """
    return """
CREATE TEMPORARY VIEW `sku_review_versions` AS
SELECT `sku`, `review_count`, `mean_rating`, `sentiment`, `review_embedding`, `window_time`
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY `sku` ORDER BY `window_time` DESC) AS `recency`
  FROM `sku_review_summary`
) WHERE `recency` = 1"""


def sku_pricing_inputs_view() -> str:
    """What the sku pricer sees: window features and the review summary as of the window, in order.

    First an event-time OVER window per sku hands each sku's windows on in event-time order once
    the watermark passes them (its aggregate, ``ordered_rows``, is not used: the order is the
    point). The order matters twice downstream: the pricer's rate limit compares each window with
    the sku's previous one (:class:`udfs.pricing.SkuPricer`), and the deduplication behind
    :func:`sku_price_versions_view` drops a window that arrives after a later one. The feature
    joins upstream can emit them that way round: a window that found its competition row leaves
    the interval join at once, one that did not waits for the watermark.

    Then the review summary comes through an event-time temporal join on
    :func:`sku_review_versions_view`: a window waits until the reviews' watermark passes it, and
    the join emits waiting rows in their arrival order, so the order holds.
    """
    from udfs.pricing import SKU_COMPETITION_FEATURES, SKU_DEMAND_FEATURES, SKU_REVIEW_FEATURES

    reviews = ", ".join(f"r.{_quote(name)}" for name in SKU_REVIEW_FEATURES)
    window_columns = ("sku", "window_time", *SKU_DEMAND_FEATURES, *SKU_COMPETITION_FEATURES)
    window = ", ".join(f"f.{_quote(name)}" for name in window_columns)
    return f"""
CREATE TEMPORARY VIEW `sku_pricing_inputs` AS
SELECT {window}, {reviews}
FROM (
  SELECT *,
    COUNT(*) OVER (PARTITION BY `sku` ORDER BY `window_time` ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
      AS `ordered_rows`
  FROM `sku_features`
) AS f
LEFT JOIN `sku_review_versions` FOR SYSTEM_TIME AS OF f.`window_time` AS r
  ON f.`sku` = r.`sku`"""


def sku_decisions_query() -> str:
    """One dynamic price per sku and window, priced by the vectorized sku pricer.

    Besides the decision columns, each row keeps its window time (an event-time attribute) and
    what the pricer saw of the window, for :func:`sku_price_versions_view`. The job registers it
    as a Table, not a SQL view (:func:`build_pipeline`): every consumer then shares one node and
    the planner calls ``price_sku`` once per window; from a SQL view it planned the call twice
    (once for the sinks, once for the versioned view), pricing every window twice.
    """
    from udfs.pricing import DECISION_FIELDS, SKU_WINDOW_FEATURES, SkuPricer

    arguments = ", ".join(_quote(name) for name in SkuPricer.COLUMNS)
    fields = ", ".join(f"`d`.{_quote(name)} AS {_quote(name)}" for name, _ in DECISION_FIELDS)
    features = ", ".join(_quote(name) for name in SKU_WINDOW_FEATURES)
    return f"""
SELECT {fields}, `window_time`, {features}
FROM (SELECT `price_sku`({arguments}) AS `d`, `window_time`, {features} FROM `sku_pricing_inputs`)"""


def sku_price_versions_view() -> str:
    """Per sku, its published price and what it was priced on, as of any event time (a versioned view).

    A deduplication that keeps each sku's latest window on event time: Flink reads it as a
    versioned table keyed by sku, so an event-time temporal join finds the version that was
    current at a click's event time, the same in every run, whatever the timing. The windows
    arrive in event-time order per sku (:func:`sku_pricing_inputs_view`), so none is dropped.
    """
    from udfs.pricing import SKU_WINDOW_FEATURES

    features = ", ".join(_quote(name) for name in SKU_WINDOW_FEATURES)
    return f"""
CREATE TEMPORARY VIEW `sku_price_versions` AS
SELECT `sku`, `window_time`, `price` AS `sku_price`, {features}
FROM (
  SELECT `sku`, `window_time`, `price`, {features},
    ROW_NUMBER() OVER (PARTITION BY `sku` ORDER BY `window_time` DESC) AS `recency`
  FROM `sku_decisions` WHERE `decision_json` IS NOT NULL
) WHERE `recency` = 1"""


def user_session_view(options: JobOptions) -> str:
    """Per click, the user's session so far (OVER window on event time, per pseudonymous user)."""
    session = _interval(options.session_gap_s)
    return f"""
CREATE TEMPORARY VIEW `user_sessions` AS
SELECT `user_key`, `sku`, `event_type`, `event_time`,
  SUM(CASE WHEN `event_type` = 'view' THEN 1 ELSE 0 END) OVER w AS `recent_views`,
  SUM(CASE WHEN `event_type` = 'add_to_cart' THEN 1 ELSE 0 END) OVER w AS `recent_carts`,
  AVG(`price_seen`) OVER w AS `mean_price_seen`,
  CAST(TIMESTAMPDIFF(SECOND, MIN(`event_time`) OVER w, `event_time`) AS DOUBLE) AS `dwell_s`,
  COUNT(*) OVER w AS `session_events`
FROM `unique_clicks`
WINDOW w AS (PARTITION BY `user_key` ORDER BY `event_time` RANGE BETWEEN {session} PRECEDING AND CURRENT ROW)"""


def offer_decisions_view() -> str:
    """A personalized offer for each view or add-to-cart, priced by the vectorized offer pricer.

    Each click meets its sku's price, window features and review summary as of the click's event
    time (an event-time temporal join on :func:`sku_price_versions_view`): the offer waits until
    the sku side's watermark passes the click, and is then a function of the input alone, so a replay after
    a failure prices it exactly as before. A sku not priced yet gets no version (NULLs): the pricer
    then caps at the base price and, without demand features, the kill switch prices it.
    """
    from udfs.pricing import DECISION_FIELDS, SKU_WINDOW_FEATURES, OfferPricer

    fields = ", ".join(f"`d`.{_quote(name)} AS {_quote(name)}" for name, _ in DECISION_FIELDS)
    versioned = {"sku_price", *SKU_WINDOW_FEATURES}
    arguments = ", ".join(f"{'v' if name in versioned else 'u'}.{_quote(name)}" for name in OfferPricer.COLUMNS)
    return f"""
CREATE TEMPORARY VIEW `offer_decisions` AS
SELECT {fields}
FROM (
  SELECT `price_offer`({arguments}) AS `d`
  FROM (SELECT * FROM `user_sessions` WHERE `event_type` IN ('view', 'add_to_cart')) AS u
  LEFT JOIN `sku_price_versions` FOR SYSTEM_TIME AS OF u.`event_time` AS v
    ON u.`sku` = v.`sku`
)"""


def sku_review_summary_view(options: JobOptions) -> str:
    """Per-sku review summary over the long horizon: count, mean rating, sentiment, mean embedding."""
    return f"""
CREATE TEMPORARY VIEW `sku_review_summary` AS
SELECT `sku`, `s`.`review_count`, `s`.`mean_rating`, `s`.`sentiment`, `s`.`review_embedding`, `window_time`
FROM (
  SELECT `sku`,
    `review_summary`(`rating`, `scored`.`sentiment`, `scored`.`embedding`) AS `s`,
    TUMBLE_ROWTIME(`event_time`, {_interval(options.long_horizon_s)}) AS `window_time`
  FROM (SELECT `sku`, `rating`, `event_time`, `review_sentiment`(`text`) AS `scored` FROM `valid_reviews`)
  GROUP BY `sku`, TUMBLE(`event_time`, {_interval(options.long_horizon_s)})
)"""


def prices_sink_ddl(settings: Settings, options: JobOptions) -> str:
    """The ``prices`` topic, exactly-once: records are visible to read_committed readers only
    once the checkpoint that covers them completes."""
    return f"""
CREATE TEMPORARY TABLE `prices_sink` (
  `sku` STRING,
  `decision_json` STRING
) WITH (
  {kafka_options(settings, settings.topics.prices, options=options, source=False)},
  'key.format' = 'raw',
  'key.fields' = 'sku',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = {_sql_string(options.transactional_id_prefix or options.group_id + "-prices")},
  'properties.transaction.timeout.ms' = '{options.transaction_timeout_s * 1000}'
)"""


def store_writes_ddl() -> str:
    """A sink for the online-store writers' counts (the writes themselves happen in the UDFs)."""
    return "CREATE TEMPORARY TABLE `store_writes` (`written` BIGINT) WITH ('connector' = 'blackhole')"


def decision_log_ddl(settings: Settings, options: JobOptions) -> str:
    """The decision log: JSON lines under the state directory, committed on checkpoints.

    JSON rather than Parquet because no flink-sql-parquet jar for Flink 2.x is on Maven Central;
    :func:`pricewave.training` reads these files for training and audit.
    """
    from udfs.pricing import DECISION_FIELDS

    path = options.decision_log_dir or str(settings.path("decision_log"))
    flink_types = {"VARCHAR": "STRING", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN", "BIGINT": "BIGINT"}
    columns = ",\n  ".join(
        f"{_quote(name)} {flink_types[str(kind).split('(')[0].upper()]}"
        for name, kind in DECISION_FIELDS
        if name != "decision_json"
    )
    return f"""
CREATE TEMPORARY TABLE `decision_log` (
  {columns}
) WITH (
  'connector' = 'filesystem',
  'path' = {_sql_string(Path(path).as_uri())},
  'format' = 'json',
  'sink.rolling-policy.rollover-interval' = '{_ms(options.decision_log_rollover_s)} ms',
  'sink.rolling-policy.check-interval' = '{_ms(min(options.decision_log_rollover_s, 60.0))} ms',
  'sink.rolling-policy.file-size' = '{options.decision_log_file_mb}MB'
)"""


DECISION_LOG_COLUMNS = (
    "decision_id",
    "kind",
    "sku",
    "user_key",
    "price",
    "base_price",
    "guardrail",
    "model_version",
    "propensity",
    "personalized",
    "expected_conversion",
    "decision_time",
    "event_time",
    "features_json",
)


def create_table_environment(settings: Settings, options: JobOptions) -> TableEnvironment:
    """A streaming TableEnvironment configured for the job.

    Embedded (``python jobs/pricing_job.py``) it runs on a MiniCluster; under ``flink run`` the
    client's configuration (cluster address, detached mode, ``-p``) is the base and this adds to it.
    """
    config = Configuration()
    config.set_string("pipeline.name", "pricewave-pricing")
    config.set_string("execution.checkpointing.interval", f"{_ms(options.checkpoint_interval_s)} ms")
    config.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    # Aligned checkpoints: unaligned ones hung this job at the end of a bounded input, the tasks of
    # the sku -> versions -> offers -> sinks diamond idle or backpressured and a checkpoint never
    # completing (the sinks' forward inputs are always aligned, the hash edges before them were
    # not; RELIABILITY.md §1).
    config.set_string("execution.checkpointing.unaligned.enabled", "false")
    # Checkpoint failures (full disk, expiry) are reported (REST checkpoint stats, the monitor)
    # and tolerated up to a bound, instead of failing the job into a restart loop.
    config.set_string("execution.checkpointing.tolerable-failed-checkpoints", str(options.tolerable_failed_checkpoints))
    # Keep the latest checkpoint when the job is cancelled or fails for good (Flink's default,
    # NO_EXTERNALIZED_CHECKPOINTS, deletes it then): `pricewave submit --from-checkpoint latest`
    # resumes from it, e.g. after the JobManager of a cluster without HA was lost.
    config.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    config.set_string("restart-strategy.type", options.restart_strategy)
    if options.parallelism is not None:
        config.set_string("parallelism.default", str(options.parallelism))
    config.set_string("python.fn-execution.bundle.size", str(options.bundle_size))
    config.set_string("python.fn-execution.bundle.time", str(options.bundle_time_ms))
    config.set_string("python.fn-execution.arrow.batch.size", str(options.arrow_batch_size))
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    if options.source_idle_timeout_s is not None:
        config.set_string("table.exec.source.idle-timeout", f"{_ms(options.source_idle_timeout_s)} ms")
    config.set_string("table.local-time-zone", "UTC")
    # A view read by several inserts (sku_demand feeds pricing and its store push) is planned once
    # with every column any reader needs, instead of once per reader with its own pruned columns.
    config.set_string("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
    for key, value in options.extra_config.items():
        config.set_string(key, value)
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    with _python_worker_mode(options.python_workers):
        t_env = TableEnvironment.create(environment)
    # Connector jars ship with the job through pipeline.jars, one way only (never also in lib/).
    # Append: under `flink run -py` the list already holds PyFlink's runtime jar.
    table_config = t_env.get_config()
    # The client may hand the list over in YAML form ("[file:/a.jar]"): parse it as PyFlink does.
    existing = [str(jar) for jar in Configuration.parse_list_value(table_config.get("pipeline.jars", "") or "")]
    ours = [path.as_uri() for path in flink_connector_jars(settings)]
    table_config.set("pipeline.jars", ";".join(existing + [jar for jar in ours if jar not in existing]))
    # Checkpoints on the filesystem unless the cluster names a place: kept in JobManager memory they
    # are capped at 5 MiB and the job fails once its window state outgrows that.
    if options.checkpoint_dir:
        table_config.set("execution.checkpointing.dir", Path(options.checkpoint_dir).resolve().as_uri())
    if not table_config.get("execution.checkpointing.dir", ""):
        table_config.set("execution.checkpointing.dir", settings.path("flink", "checkpoints").as_uri())
    return t_env


def register_udfs(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> None:
    """Register the pandas UDFs the SQL calls."""
    from udfs.pricing import decision_push_udf, feature_push_udf, offer_pricer_udf, sku_pricer_udf
    from udfs.review_embedding import review_sentiment_udf, review_summary_udaf
    from udfs.validation import dead_letter_pseudonymizer_udf, validator_udf

    for schema in INPUT_SCHEMAS.values():
        t_env.create_temporary_function(f"validate_{schema}", validator_udf(schema, options.max_clock_skew_s))
    t_env.create_temporary_function("pseudonymize_dead_letter", dead_letter_pseudonymizer_udf(settings.user_key_secret))
    t_env.create_temporary_function("price_sku", sku_pricer_udf(settings))
    t_env.create_temporary_function("price_offer", offer_pricer_udf(settings))
    t_env.create_temporary_function("review_sentiment", review_sentiment_udf(settings))
    t_env.create_temporary_function("review_summary", review_summary_udaf())
    t_env.create_temporary_function(
        "push_user_session", feature_push_udf(settings, "user_session", USER_SESSION_COLUMNS)
    )
    t_env.create_temporary_function(
        "push_sku_review_summary", feature_push_udf(settings, "sku_review_summary", REVIEW_SUMMARY_COLUMNS)
    )
    t_env.create_temporary_function("push_decisions", decision_push_udf(settings))
    t_env.create_temporary_function(
        "push_sku_demand", feature_push_udf(settings, "sku_demand", (*SKU_DEMAND_COLUMNS, "event_time"))
    )
    t_env.create_temporary_function(
        "push_sku_competition", feature_push_udf(settings, "sku_competition", (*SKU_COMPETITION_COLUMNS, "event_time"))
    )


def _prepare_planner_thread(t_env: TableEnvironment) -> None:
    """Give the Java thread that serves this Python thread's next gateway call the planner's metadata provider.

    Calcite keeps the provider in a thread-local, which Flink sets on the thread that builds a query
    (FLINK-23020, unfixed). The Python gateway hands calls to whichever of its connections is free: after
    another Python thread's call (a garbage-collected Java object is released from any thread) the next
    ``execute()`` can land on a Java thread that never built a query, and planning fails with
    ``NullPointerException: metadataHandlerProvider`` (seen in CI). Setting it here, one call before the
    planning call from the same thread, puts it on that connection's thread.
    """
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    jvm = gateway.jvm
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()  # the planner's own class loader

    def load(name: str) -> Any:
        return jvm.java.lang.Class.forName(name, True, loader)

    def static_call(class_name: str, method: str, *typed_args: tuple[str, Any]) -> Any:
        types = gateway.new_array(jvm.java.lang.Class, len(typed_args))
        values = gateway.new_array(jvm.java.lang.Object, len(typed_args))
        for n, (type_name, value) in enumerate(typed_args):
            types[n], values[n] = load(type_name), value
        return load(class_name).getMethod(method, types).invoke(None, values)

    calcite, flink = "org.apache.calcite.rel.metadata", "org.apache.flink.table.planner.plan.metadata"
    provider = static_call(f"{flink}.FlinkDefaultRelMetadataProvider", "INSTANCE")
    janino = static_call(f"{calcite}.JaninoRelMetadataProvider", "of", (f"{calcite}.RelMetadataProvider", provider))
    load(f"{calcite}.RelMetadataQueryBase").getField("THREAD_PROVIDERS").get(None).set(janino)


class PricingStatements(StatementSet):
    """The job's INSERTs: a StatementSet whose planning does not depend on which gateway thread runs it."""

    def __init__(self, statements: StatementSet, t_env: TableEnvironment) -> None:
        super().__init__(statements._j_statement_set, t_env)

    def execute(self) -> TableResult:
        """Plan and submit the job (see :func:`_prepare_planner_thread`)."""
        _prepare_planner_thread(self._t_env)
        return super().execute()

    def compile_plan(self) -> Any:
        """Plan the job into a CompiledPlan (see :func:`_prepare_planner_thread`)."""
        _prepare_planner_thread(self._t_env)
        return super().compile_plan()


def build_pipeline(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> StatementSet:
    """Declare every table and view and return the statement set that runs the job."""
    options.validate()
    # Fail here, in one readable line, rather than in every Python worker.
    from pricewave.feature_store.store import open_store, pinned_settings
    from udfs.pricing import DECISION_FIELDS

    # The repo, profile and model dir as this driver resolved them, for every worker wherever it runs.
    settings = pinned_settings(settings)
    open_store(settings)
    register_udfs(t_env, settings, options)
    for role in INPUT_SCHEMAS:
        t_env.execute_sql(source_ddl(settings, role, options=options))
        t_env.execute_sql(checked_view(settings, role, options))
        t_env.execute_sql(typed_view(role))
    t_env.execute_sql(dead_letter_ddl(settings, options))
    for statement in (
        deduplicated_clicks(options),
        *sku_demand_views(options),
        sku_competition_view(options),
        sku_features_view(),
        sku_review_summary_view(options),
        sku_review_versions_view(),
        sku_pricing_inputs_view(),
    ):
        t_env.execute_sql(statement)
    t_env.create_temporary_view("sku_decisions", t_env.sql_query(sku_decisions_query()))
    for statement in (
        sku_price_versions_view(),
        user_session_view(options),
        offer_decisions_view(),
        prices_sink_ddl(settings, options),
        store_writes_ddl(),
        decision_log_ddl(settings, options),
    ):
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(dead_letter_insert(settings, tuple(INPUT_SCHEMAS)))
    demand_args = ", ".join(_quote(c) for c in SKU_DEMAND_COLUMNS)
    competition_args = ", ".join(_quote(c) for c in SKU_COMPETITION_COLUMNS)
    log_columns = ", ".join(_quote(name) for name in DECISION_LOG_COLUMNS)
    decision_columns = ", ".join(_quote(name) for name, _ in DECISION_FIELDS)
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW `all_decisions` AS "
        f"SELECT {decision_columns} FROM `sku_decisions` UNION ALL SELECT * FROM `offer_decisions`"
    )
    session_args = ", ".join(_quote(c) for c in USER_SESSION_COLUMNS)
    for insert in (
        "INSERT INTO `prices_sink` SELECT `sku`, `decision_json` FROM `all_decisions` "
        "WHERE `decision_json` IS NOT NULL",
        "INSERT INTO `store_writes` SELECT `push_decisions`(`decision_json`) FROM `all_decisions` "
        "WHERE `decision_json` IS NOT NULL",
        f"INSERT INTO `store_writes` SELECT `push_user_session`({session_args}) FROM `user_sessions` "
        "WHERE `event_type` IN ('view', 'add_to_cart')",
        "INSERT INTO `store_writes` SELECT `push_sku_review_summary`(`sku`, `review_count`, `mean_rating`, "
        "`sentiment`, `review_embedding`, `window_time`) FROM `sku_review_summary`",
        f"INSERT INTO `store_writes` SELECT `push_sku_demand`({demand_args}, `window_time`) FROM `sku_demand`",
        f"INSERT INTO `store_writes` SELECT `push_sku_competition`({competition_args}, `window_time`) "
        "FROM `sku_competition`",
        f"INSERT INTO `decision_log` SELECT {log_columns} FROM `all_decisions`",
    ):
        statements.add_insert_sql(insert)
    return PricingStatements(statements, t_env)


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, JobOptions, float, str | None]:
    """Settings, options and the run duration (0 = until cancelled) from the command line."""
    defaults = JobOptions()
    parser = argparse.ArgumentParser(
        prog="pricing_job.py",
        description="The pricewave streaming pricing job (PyFlink). Settings come from --config / "
        "PRICEWAVE_* like every pricewave command.",
    )
    parser.add_argument("--config", metavar="FILE", help="pricewave settings YAML")
    parser.add_argument("--group-id", default=defaults.group_id)
    parser.add_argument(
        "--starting-offsets",
        default=defaults.starting_offsets,
        choices=["group-offsets", "earliest-offset", "latest-offset"],
    )
    parser.add_argument("--out-of-orderness", type=float, default=defaults.out_of_orderness_s, metavar="S")
    parser.add_argument(
        "--max-clock-skew",
        type=float,
        default=defaults.max_clock_skew_s,
        metavar="S",
        help="input event times more than S seconds ahead of the job's clock are dead-lettered as "
        "bad_timestamp instead of moving the watermark (default 300)",
    )
    parser.add_argument(
        "--max-record-skew",
        type=float,
        default=defaults.max_record_skew_s,
        metavar="S",
        help="input event times more than S seconds ahead of their Kafka record timestamp are "
        "dead-lettered as bad_timestamp instead of moving the watermark (default 60)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout_s,
        metavar="S",
        help="live runs: a source without records for S seconds stops holding the watermark back "
        "(default 5). Prices after an outage longer than S can differ from a run without one; "
        "raise it above the longest broker outage you need reproducible prices through. "
        "--bounded runs never mark a source idle",
    )
    parser.add_argument("--checkpoint-interval", type=float, default=defaults.checkpoint_interval_s, metavar="S")
    parser.add_argument("--checkpoint-dir", metavar="DIR", default="", help="default: <state>/flink/checkpoints")
    parser.add_argument(
        "--tolerable-failed-checkpoints",
        type=int,
        default=defaults.tolerable_failed_checkpoints,
        metavar="N",
        help="consecutive checkpoint failures (e.g. a full checkpoint disk) the job runs through (default 60)",
    )
    parser.add_argument("--parallelism", type=int, default=None, help="default: flink run -p, else 1")
    parser.add_argument("--bounded", action="store_true", help="stop at the offsets that are latest at start")
    parser.add_argument("--decision-log-dir", metavar="DIR", default="", help="default: <state>/decision_log")
    parser.add_argument("--duration", type=float, default=0.0, help="cancel after S seconds (embedded runs)")
    parser.add_argument(
        "--python-workers",
        choices=PYTHON_WORKER_MODES,
        default=defaults.python_workers,
        help="embedded runs: Python UDF workers as threads of this process (loopback, default) or as "
        "separate processes that use every core (process); a cluster always uses processes",
    )
    parser.add_argument(
        "--compiled-plan",
        metavar="FILE",
        help="run the SQL as a compiled plan: written to FILE on the first run and executed from FILE "
        "afterwards, so operator identities (and the state in savepoints) survive upgrades of the code",
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    options = JobOptions(
        group_id=args.group_id,
        starting_offsets=args.starting_offsets,
        out_of_orderness_s=args.out_of_orderness,
        max_clock_skew_s=args.max_clock_skew,
        max_record_skew_s=args.max_record_skew,
        idle_timeout_s=args.idle_timeout,
        checkpoint_interval_s=args.checkpoint_interval,
        parallelism=args.parallelism,
        bounded=args.bounded,
        decision_log_dir=args.decision_log_dir,
        checkpoint_dir=args.checkpoint_dir,
        tolerable_failed_checkpoints=args.tolerable_failed_checkpoints,
        python_workers=args.python_workers,
    )
    options.validate()
    return settings, options, args.duration, args.compiled_plan


def run_statements(t_env: TableEnvironment, statements: StatementSet, compiled_plan: str | None) -> TableResult:
    """Execute the job, through a compiled plan file when one is given (written on first use)."""
    if not compiled_plan:
        return statements.execute()
    path = Path(compiled_plan)
    if path.exists():
        plan = t_env.load_plan(PlanReference.from_file(str(path)))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        plan = statements.compile_plan()
        plan.write_to_file(str(path))
    # PyFlink 2.2's CompiledPlan.execute() calls _before_execute() on the Java environment and
    # fails; do what it means: ship the pipeline jars, then execute the Java plan.
    t_env._before_execute()
    return TableResult(plan._j_compiled_plan.execute())


def main(argv: Sequence[str] | None = None) -> int:
    """Build and run the job; blocks until it ends (bounded) or ``--duration`` elapses.

    A configuration the job cannot run with ends it with one line on stderr and exit code 2.
    """
    try:
        return _run(argv)
    except PricewaveError as exc:
        print(f"pricing_job: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return exc.exit_code


def _run(argv: Sequence[str] | None) -> int:
    settings, options, duration_s, compiled_plan = parse_args(argv)
    flink_security_properties(settings)  # missing credentials: say so now, before a JVM starts
    if compiled_plan and settings.kafka.uses_sasl:
        # A compiled plan stores every table's options, the Kafka credentials among them, in the file.
        raise ConfigError("--compiled-plan would write the Kafka SASL credentials into the plan file: not with SASL")
    t_env = create_table_environment(settings, options)
    result = run_statements(t_env, build_pipeline(t_env, settings, options), compiled_plan)
    client = result.get_job_client()
    job_id = client.get_job_id() if client is not None else "?"
    print(f"pricing job {job_id} running", flush=True)
    if duration_s > 0 and client is not None:
        import time

        time.sleep(duration_s)
        client.cancel().result()
        return 0
    # Detached submission (`flink run --detached`, `pricewave submit`): the cluster runs the job.
    if str(t_env.get_config().get("execution.attached", "true")).lower() == "false":
        return 0
    result.wait()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
