"""The streaming pricing job: Kafka in, validated and windowed in Flink SQL, priced by pandas UDFs.

Runs embedded on a MiniCluster (``python jobs/pricing_job.py``) or on a standalone cluster through
``flink run`` (``pricewave submit``); the code is the same and the settings decide.

The modules follow the data (Flink SQL unless noted), and :func:`build_pipeline` declares them in
this order:

1. **Sources** (:mod:`~pricewave.job.sources`): one raw-bytes Kafka table per input topic, with the
   record's partition and offset. Event time comes from the record's ``event_time``, guarded so that
   a wild timestamp cannot drag the watermark: one before 2000, more than ``--max-clock-skew``
   (5 min) ahead of the job's clock or more than ``--max-record-skew`` (60 s) ahead of its Kafka
   record timestamp gets none and is dead-lettered as ``bad_timestamp``. Watermarks allow
   ``--out-of-orderness`` and, in live runs, go idle after ``--idle-timeout`` (bounded runs never do).
2. **Validation** (same module): a pandas UDF (:mod:`udfs.validation`), in the source's own task,
   gives each record its rejection reason from ``schemas/``; rejected records, and records behind
   their partition's watermark (reason ``late``, judged against the partition's latest event time
   kept in state, so a restore keeps it), go to the ``dlq`` topic with the raw bytes, source topic,
   partition and offset.
3. **Features** (:mod:`~pricewave.job.features`): duplicates removed by ``event_id`` (window
   deduplication); per-sku demand over a HOP window at two horizons; per-sku competition (cheapest
   in-stock offer, offers, staleness); the hourly review summary; each click's user session.
4. **Pricing** (:mod:`~pricewave.job.pricing`, pandas UDFs of :mod:`udfs.pricing`): a price per sku
   and window; a personalized offer per view / add-to-cart, which meets its sku's price and window
   features as of the click's event time (event-time temporal join on the sku decisions, a
   versioned view, fed each sku's windows in event-time order), so a replay after a failure prices
   it the same.
5. **Sinks** (:mod:`~pricewave.job.sinks`): the ``prices`` topic (exactly-once, transactional), the
   Feast online store (batched, event-time guarded) and the decision log.

Around them: :mod:`~pricewave.job.options` (the knobs and the command line),
:mod:`~pricewave.job.environment` (the TableEnvironment and the UDFs the SQL calls),
:mod:`~pricewave.sql` (SQL literals) and :mod:`~pricewave.job.run` (``main``, compiled plans).

Example (a bounded run over what the topics hold, on a MiniCluster)::

    from pricewave.config import load_settings
    from pricewave.job import JobOptions, build_pipeline, create_table_environment

    settings, options = load_settings(), JobOptions(bounded=True, starting_offsets="earliest-offset")
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options).execute().wait()
"""

from pricewave.job.environment import create_table_environment, register_udfs
from pricewave.job.options import JobOptions, parse_args
from pricewave.job.pipeline import build_pipeline
from pricewave.job.run import main, run_statements

__all__ = [
    "JobOptions",
    "build_pipeline",
    "create_table_environment",
    "main",
    "parse_args",
    "register_udfs",
    "run_statements",
]
