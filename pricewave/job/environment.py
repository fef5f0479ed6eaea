"""The job's TableEnvironment: its configuration, the UDFs the SQL calls, and a planner workaround."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pyflink.common import Configuration
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, StatementSet, TableEnvironment, TableResult

from pricewave.config import Settings
from pricewave.feature_views import shopper_profile, sku_competition, sku_demand, sku_review_summary
from pricewave.job.options import JobOptions
from pricewave.job.sources import INPUT_SCHEMAS
from pricewave.sql import millis
from pricewave.stack.jars import flink_connector_jars, java_udf_jar
from udfs.pricing import feature_push_udf, offer_pricer_udf, sku_pricer_udf
from udfs.review_embedding import review_sentiment_udf
from udfs.validation import dead_letter_pseudonymizer_udf, validator_udf

logger = logging.getLogger(__name__)

# PyFlink reads this variable when a TableEnvironment is created (no configuration key exists).
PYTHON_WORKER_MODE_VARIABLE = "_python_worker_execution_mode"


@contextlib.contextmanager
def python_worker_mode(mode: str) -> Iterator[None]:
    """Create a TableEnvironment inside this to get ``process`` workers on a MiniCluster."""
    if mode != "process":
        yield  # PyFlink's default: loopback when local, processes on a cluster
        return
    previous = os.environ.get(PYTHON_WORKER_MODE_VARIABLE)
    os.environ[PYTHON_WORKER_MODE_VARIABLE] = "process"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PYTHON_WORKER_MODE_VARIABLE, None)
        else:
            os.environ[PYTHON_WORKER_MODE_VARIABLE] = previous


def create_table_environment(settings: Settings, options: JobOptions) -> TableEnvironment:
    """A streaming TableEnvironment configured for the job.

    Embedded (``python jobs/pricing_job.py``) it runs on a MiniCluster; under ``flink run`` the
    client's configuration (cluster address, detached mode, ``-p``) is the base and this adds to it.
    """
    config = Configuration()
    config.set_string("pipeline.name", "pricewave-pricing")
    config.set_string("execution.checkpointing.interval", f"{millis(options.checkpoint_interval_s)} ms")
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
    config.set_string("pipeline.auto-watermark-interval", f"{options.watermark_interval_ms} ms")
    config.set_string("execution.buffer-timeout.interval", f"{options.buffer_timeout_ms} ms")
    config.set_string("python.fn-execution.bundle.size", str(options.bundle_size))
    config.set_string("python.fn-execution.bundle.time", str(options.bundle_time_ms))
    config.set_string("python.fn-execution.arrow.batch.size", str(options.arrow_batch_size))
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    if options.source_idle_timeout_s is not None:
        config.set_string("table.exec.source.idle-timeout", f"{millis(options.source_idle_timeout_s)} ms")
    config.set_string("table.local-time-zone", "UTC")
    # A view read by several inserts (sku_demand feeds pricing and its store push) is planned once
    # with every column any reader needs, instead of once per reader with its own pruned columns.
    config.set_string("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
    for key, value in options.extra_config.items():
        config.set_string(key, value)
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    with python_worker_mode(options.python_workers):
        t_env = TableEnvironment.create(environment)
    ship_jars(t_env, flink_connector_jars(settings))
    table_config = t_env.get_config()
    # Checkpoints on the filesystem unless the cluster names a place: kept in JobManager memory they
    # are capped at 5 MiB and the job fails once its window state outgrows that.
    if options.checkpoint_dir:
        table_config.set("execution.checkpointing.dir", Path(options.checkpoint_dir).resolve().as_uri())
    if not table_config.get("execution.checkpointing.dir", ""):
        table_config.set("execution.checkpointing.dir", settings.path("flink", "checkpoints").as_uri())
    return t_env


JAVA_FUNCTIONS: dict[str, str] = {
    "mean_vector": "pricewave.udfs.MeanVector",  # the element-wise mean of float arrays
    "previous_time": "pricewave.udfs.PreviousTime",  # the latest time before the latest one
}
"""The job's Java aggregates (``udfs/java``): SQL name → class."""


def ship_jars(t_env: TableEnvironment, jars: Iterable[Path]) -> None:
    """Add ``jars`` to the job's ``pipeline.jars``: the one way a jar of ours reaches Flink (never also lib/).

    Appends: under ``flink run -py`` the list already holds PyFlink's runtime jar. They also go on the
    table environment's own user class loader, so the planner finds their classes whatever Java
    thread plans the job: PyFlink puts them only on the context class loader of the gateway thread
    that set the list, and a planning call served by another thread failed with
    ``ClassNotFoundException: pricewave.udfs.MeanVector`` (seen in a test process, about one run in two).
    """
    table_config = t_env.get_config()
    # The client may hand the list over in YAML form ("[file:/a.jar]"): parse it as PyFlink does.
    existing = [str(jar) for jar in Configuration.parse_list_value(table_config.get("pipeline.jars", "") or "")]
    ours = [path.as_uri() for path in jars]
    table_config.set("pipeline.jars", ";".join(existing + [jar for jar in ours if jar not in existing]))
    jvm = get_gateway().jvm
    implementation = jvm.java.lang.Class.forName("org.apache.flink.table.api.internal.TableEnvironmentImpl")
    field = implementation.getDeclaredField("resourceManager")  # no public accessor in Flink 2.2
    field.setAccessible(True)
    loader = field.get(t_env._j_tenv).getUserClassLoader()
    known = {url.toString() for url in loader.getURLs()}
    for uri in ours:
        if uri not in known:
            loader.addURL(jvm.java.net.URL(uri))


def register_java_functions(t_env: TableEnvironment, settings: Settings) -> None:
    """Ship the jar of the job's Java functions (``udfs/java``) and register them (:data:`JAVA_FUNCTIONS`)."""
    ship_jars(t_env, [java_udf_jar(settings)])
    for name, class_name in JAVA_FUNCTIONS.items():
        t_env.create_java_temporary_function(name, class_name)


def register_udfs(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> None:
    """Register the pandas UDFs the SQL calls."""
    for schema in INPUT_SCHEMAS.values():
        t_env.create_temporary_function(f"validate_{schema}", validator_udf(schema, options.max_clock_skew_s))
    t_env.create_temporary_function("pseudonymize_dead_letter", dead_letter_pseudonymizer_udf(settings.user_key_secret))
    t_env.create_temporary_function("price_sku", sku_pricer_udf(settings))
    t_env.create_temporary_function("price_offer", offer_pricer_udf(settings))
    t_env.create_temporary_function("review_sentiment", review_sentiment_udf(settings))
    register_java_functions(t_env, settings)
    t_env.create_temporary_function(
        "push_sku_review_summary", feature_push_udf(settings, "sku_review_summary", sku_review_summary.PUSHED_COLUMNS)
    )
    t_env.create_temporary_function(
        "push_sku_demand", feature_push_udf(settings, "sku_demand", (*sku_demand.PUSHED_COLUMNS, "event_time"))
    )
    t_env.create_temporary_function(
        "push_sku_competition",
        feature_push_udf(settings, "sku_competition", (*sku_competition.PUSHED_COLUMNS, "event_time")),
    )
    t_env.create_temporary_function(
        "push_shopper_profile", feature_push_udf(settings, "shopper_profile", shopper_profile.PUSHED_COLUMNS)
    )


def prepare_planner_thread(t_env: TableEnvironment) -> None:
    """Give the Java thread that serves this Python thread's next gateway call the planner's metadata provider.

    Calcite keeps the provider in a thread-local, which Flink sets on the thread that builds a query
    (FLINK-23020, unfixed). The Python gateway hands calls to whichever of its connections is free: after
    another Python thread's call (a garbage-collected Java object is released from any thread) the next
    ``execute()`` can land on a Java thread that never built a query, and planning fails with
    ``NullPointerException: metadataHandlerProvider`` (seen in CI). Setting it here, one call before the
    planning call from the same thread, puts it on that connection's thread.
    """
    gateway = get_gateway()
    jvm = gateway.jvm
    planner = t_env._j_tenv.getPlanner()
    loader = planner.getClass().getClassLoader()  # the planner's own class loader

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
    # A planning call that failed this way left the planner's cluster a cached metadata query without a
    # provider, which every later call would reuse: drop it, so the next one is made on this thread.
    planner.createRelBuilder().getCluster().invalidateMetadataQuery()


T = TypeVar("T")

PLANNING_ATTEMPTS = 5
"""Planning calls tried before a gateway thread without Calcite's provider fails the job's submission."""


class PricingStatements(StatementSet):
    """The job's INSERTs: a StatementSet whose planning does not depend on which gateway thread runs it."""

    def __init__(self, statements: StatementSet, t_env: TableEnvironment) -> None:
        super().__init__(statements._j_statement_set, t_env)

    def execute(self) -> TableResult:
        """Plan and submit the job (see :func:`prepare_planner_thread`)."""
        return self._planned(super().execute)

    def compile_plan(self) -> Any:
        """Plan the job into a CompiledPlan (see :func:`prepare_planner_thread`)."""
        return self._planned(super().compile_plan)

    def _planned(self, plan: Callable[[], T]) -> T:
        """Run a planning call on a gateway thread that has the metadata provider.

        Another Python thread's gateway call between :func:`prepare_planner_thread` and the planning
        call can still take that connection, and the planning call lands on another Java thread
        (seen in a test process whose earlier in-process job left Python worker threads behind).
        Planning fails before anything is submitted, so the call is prepared and made again.
        """
        from py4j.java_gateway import get_method
        from py4j.protocol import Py4JJavaError

        operations = self._j_statement_set.getOperations()
        # execute() empties the set even when planning fails, so each retry puts the INSERTs back
        inserts = get_gateway().jvm.java.util.ArrayList(operations)
        for attempt in range(1, PLANNING_ATTEMPTS):
            prepare_planner_thread(self._t_env)
            try:
                return plan()
            except Py4JJavaError as error:
                if "metadataHandlerProvider" not in str(error):
                    raise
                logger.debug("planning landed on a gateway thread without Calcite's provider; attempt %d", attempt)
                get_method(operations, "clear")()  # Java's clear: py4j's list clear() fails on an empty list
                operations.addAll(inserts)
        prepare_planner_thread(self._t_env)  # the last attempt: its error, whatever it is, goes to the caller
        return plan()
