"""Stages 1 and 2: Kafka sources with guarded event time, validation, dead letters and typed views.

Per input topic (``INPUT_SCHEMAS``), in data-flow order: ``src_<role>`` (raw bytes, partition,
offset, event time, watermark; :func:`source_ddl`), ``checked_<role>`` (each record with its
rejection reason; :func:`checked_view`) and ``valid_<role>`` (the valid, on-time records as typed
columns; :func:`typed_view`). The rejected and late records of every topic go to one exactly-once
dead-letter sink (:func:`dead_letter_ddl`, :func:`dead_letter_insert`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyflink.table import TableEnvironment

from pricewave.config import Settings
from pricewave.job.options import JobOptions
from pricewave.kafka_io import flink_security_properties
from pricewave.schemas import HEARTBEAT, MIN_EVENT_TIME_MS, flink_ddl_columns, flink_row_type
from pricewave.sql import interval, millis, quote, sql_string

# The schema of each input topic's records.
INPUT_SCHEMAS = {"clicks": "click_event", "competitor_prices": "competitor_price", "reviews": "review"}


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
    return ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in pairs.items())


def source_ddl(settings: Settings, role: str, *, options: JobOptions) -> str:
    """A raw-bytes source table for one input topic, with event time and a watermark."""
    topic = getattr(settings.topics, role)
    # NULL ON ERROR: a poison record (event_time "yesterday", 1e400, ...) must not fail the source.
    event_time_ms = "TRY_CAST(JSON_VALUE(CAST(`raw` AS STRING), '$.event_time' NULL ON ERROR) AS BIGINT)"
    # A record whose event_time is missing or outside [2000-01-01, now + max clock skew], or more
    # than max record skew ahead of its Kafka record timestamp, gets no rowtime, so it cannot move
    # the watermark; validation dead-letters it (checked_view). The record timestamp is in the log:
    # a replay after a failure judges the record the same (the job's clock cannot promise that).
    now_plus_skew = f"UNIX_TIMESTAMP() * 1000 + {millis(options.max_clock_skew_s)}"
    in_range = f"{event_time_ms} BETWEEN {MIN_EVENT_TIME_MS} AND {now_plus_skew}"
    ahead = _ahead_of_record(event_time_ms, options)
    guarded = f"CASE WHEN {in_range} AND NOT ({ahead}) THEN {event_time_ms} END"
    idle_timeout_s = options.source_idle_timeout_s
    idle = "" if idle_timeout_s is None else f",\n  'scan.watermark.idle-timeout' = '{millis(idle_timeout_s)} ms'"
    return f"""
CREATE TEMPORARY TABLE {quote("src_" + role)} (
  `raw` BYTES,
  `kafka_partition` INT METADATA FROM 'partition' VIRTUAL,
  `kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `kafka_timestamp` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `event_time_ms` AS {event_time_ms},
  `ahead_of_record` AS COALESCE({in_range} AND {ahead}, FALSE),
  `event_time` AS TO_TIMESTAMP_LTZ({guarded}, 3),
  `arrival` AS PROCTIME(),
  WATERMARK FOR `event_time` AS `event_time` - {interval(options.out_of_orderness_s)}
) WITH (
  {kafka_options(settings, topic, options=options, source=True)}{idle}
)"""


def _ahead_of_record(event_time_ms: str, options: JobOptions) -> str:
    """SQL: TRUE when an (in-range) event time lies more than max record skew past the record's timestamp."""
    return f"TO_TIMESTAMP_LTZ({event_time_ms}, 3) > `kafka_timestamp` + {interval(options.max_record_skew_s)}"


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
    A heartbeat (``schemas/heartbeat``) has reason ``heartbeat`` (unless its time was refused): its
    event time moved the watermark and the partition's maximum, and neither the typed view nor the
    dead letters take it.
    """
    options = options or JobOptions()
    schema = INPUT_SCHEMAS[role]
    bound_ms = millis(options.out_of_orderness_s)
    # A record exactly at the watermark (max - bound) is late too: the watermark already equals its
    # time, and a window ending there (the 1 ms dedup window) has fired. With no bound, "equal to the
    # max" is the record itself, which is on time.
    behind = "<=" if bound_ms > 0 else "<"
    return f"""
CREATE TEMPORARY VIEW {quote("checked_" + role)} AS
SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`,
  CASE
    WHEN `invalid` IS NOT NULL THEN `invalid`
    WHEN `ahead_of_record` THEN {sql_string(record_skew_reason(options))}
    WHEN `event_time` IS NOT NULL AND `event_time_ms` {behind} `partition_max_ms` - {bound_ms} THEN 'late'
  END AS `reason`
FROM (
  SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`, `ahead_of_record`, `invalid`,
    MAX(CASE WHEN `event_time` IS NOT NULL THEN `event_time_ms` END) OVER (
      PARTITION BY `kafka_partition` ORDER BY `arrival` ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS `partition_max_ms`
  FROM (
    SELECT `raw`, `kafka_partition`, `kafka_offset`, `event_time`, `event_time_ms`, `ahead_of_record`, `arrival`,
      {quote("validate_" + schema)}(`raw`, `event_time` IS NULL AND NOT `ahead_of_record`) AS `invalid`
    FROM {quote("src_" + role)}
  )
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
        f"{_json_column(name, flink_type)} AS {quote(name)}"
        for name, flink_type in flink_row_type(schema)
        if name != "event_time"
    ]
    return f"""
CREATE TEMPORARY VIEW {quote("valid_" + role)} AS
SELECT {", ".join(columns)}, `event_time`
FROM (SELECT CAST(`raw` AS STRING) AS `json`, `event_time` FROM {quote("checked_" + role)}
      WHERE `reason` IS NULL)"""


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
  'sink.transactional-id-prefix' = {sql_string(prefix)},
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
SELECT `reason`, {sql_string(topic)}, `kafka_partition`, `kafka_offset`,
  -- Whole up to 1 MiB of raw bytes (the topic's record limit allows no more); raw_size is exact.
  SUBSTRING(`kept_b64` FROM 1 FOR {MAX_DEAD_LETTER_B64_CHARS}),
  -- the byte size from the base64 text (4 characters per 3 bytes, less the padding)
  CAST(CHAR_LENGTH(`raw_b64`) / 4 * 3 - (CHAR_LENGTH(`raw_b64`) - CHAR_LENGTH(TRIM(TRAILING '=' FROM `raw_b64`)))
    AS BIGINT),
  {sql_string(INPUT_SCHEMAS[role])},
  CAST(UNIX_TIMESTAMP() * 1000 AS BIGINT),
  `event_time_ms`,
  `pseudonymized`
FROM (
  SELECT *, COALESCE(TO_BASE64(`raw`), '') AS `raw_b64`, COALESCE(TO_BASE64(`kept`.`raw`), '') AS `kept_b64`,
    `kept`.`pseudonymized` AS `pseudonymized`
  FROM (SELECT *, `pseudonymize_dead_letter`(`raw`, `reason`) AS `kept` FROM {quote("checked_" + role)}
        WHERE `reason` IS NOT NULL AND `reason` <> {sql_string(HEARTBEAT)})
)"""


def declare_sources(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> None:
    """Stages 1 and 2: every input topic's source, checked and typed views, and the dead-letter sink."""
    for role in INPUT_SCHEMAS:
        t_env.execute_sql(source_ddl(settings, role, options=options))
        t_env.execute_sql(checked_view(settings, role, options))
        t_env.execute_sql(typed_view(role))
    t_env.execute_sql(dead_letter_ddl(settings, options))
