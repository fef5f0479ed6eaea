"""The sinks: the ``prices`` topic, the Feast online store and the decision log.

Tables: ``prices_sink`` (exactly-once Kafka), ``store_writes`` (a blackhole for the counts of the
feature views' online-store pushes, which the push UDFs of :mod:`udfs.pricing` write in batches;
the pricers write their decisions into the store themselves) and
``decision_log`` (JSON lines, committed on checkpoints). :func:`sink_inserts` are the job's INSERTs
into them.
"""

from __future__ import annotations

from pathlib import Path

from pyflink.table import TableEnvironment

from pricewave.config import Settings
from pricewave.feature_views import shopper_profile, sku_competition, sku_demand, sku_review_summary
from pricewave.job.options import JobOptions
from pricewave.job.sources import kafka_options
from pricewave.sql import millis, quote, sql_string
from udfs.pricing import DECISION_COLUMN_TYPES

# What the decision log keeps of a decision: all but the price record itself (``decision_json``).
DECISION_LOG_COLUMNS = tuple(name for name, _ in DECISION_COLUMN_TYPES if name != "decision_json")


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
  'sink.transactional-id-prefix' = {sql_string(options.transactional_id_prefix or options.group_id + "-prices")},
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
    path = options.decision_log_dir or str(settings.path("decision_log"))
    columns = ",\n  ".join(
        f"{quote(name)} {sql_type}" for name, sql_type in DECISION_COLUMN_TYPES if name in DECISION_LOG_COLUMNS
    )
    return f"""
CREATE TEMPORARY TABLE `decision_log` (
  {columns}
) WITH (
  'connector' = 'filesystem',
  'path' = {sql_string(Path(path).as_uri())},
  'format' = 'json',
  'sink.rolling-policy.rollover-interval' = '{millis(options.decision_log_rollover_s)} ms',
  'sink.rolling-policy.check-interval' = '{millis(min(options.decision_log_rollover_s, 60.0))} ms',
  'sink.rolling-policy.file-size' = '{options.decision_log_file_mb}MB'
)"""


def sink_inserts() -> list[str]:
    """The INSERTs into the sinks: the prices topic, the online store's feature views and the decision log."""
    # What the job pushes to each online-store view (each view's module says which of its columns).
    demand_args = ", ".join(quote(c) for c in sku_demand.PUSHED_COLUMNS)
    competition_args = ", ".join(quote(c) for c in sku_competition.PUSHED_COLUMNS)
    review_args = ", ".join(quote(c) for c in sku_review_summary.PUSHED_COLUMNS)
    profile_args = ", ".join(quote(c) for c in shopper_profile.PUSHED_COLUMNS)
    log_columns = ", ".join(quote(name) for name in DECISION_LOG_COLUMNS)
    return [
        "INSERT INTO `prices_sink` SELECT `sku`, `decision_json` FROM `all_decisions` "
        "WHERE `decision_json` IS NOT NULL",
        f"INSERT INTO `store_writes` SELECT `push_sku_review_summary`({review_args}) FROM `sku_review_summary`",
        f"INSERT INTO `store_writes` SELECT `push_sku_demand`({demand_args}, `window_time`) FROM `sku_demand`",
        f"INSERT INTO `store_writes` SELECT `push_sku_competition`({competition_args}, `window_time`) "
        "FROM `sku_competition`",
        f"INSERT INTO `store_writes` SELECT `push_shopper_profile`({profile_args}) FROM `shopper_profiles` "
        f"WHERE {shopper_profile.push_filter()}",
        f"INSERT INTO `decision_log` SELECT {log_columns} FROM `all_decisions`",
    ]


def declare_sinks(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> None:
    """The sink tables (the dead-letter sink is the sources' own: :func:`pricewave.job.sources.dead_letter_ddl`)."""
    for statement in (prices_sink_ddl(settings, options), store_writes_ddl(), decision_log_ddl(settings, options)):
        t_env.execute_sql(statement)
