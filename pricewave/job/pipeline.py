"""The job's dataflow: each stage's tables and views, declared in the order the data flows (DESIGN §1)."""

from __future__ import annotations

from pyflink.table import StatementSet, TableEnvironment

from pricewave.config import Settings
from pricewave.feature_store.store import open_store, pinned_settings
from pricewave.job.environment import PricingStatements, register_udfs
from pricewave.job.features import declare_features
from pricewave.job.options import JobOptions
from pricewave.job.pricing import declare_pricing
from pricewave.job.sinks import declare_sinks, sink_inserts
from pricewave.job.sources import INPUT_SCHEMAS, dead_letter_insert, declare_sources


def build_pipeline(t_env: TableEnvironment, settings: Settings, options: JobOptions) -> StatementSet:
    """Declare every table and view and return the statement set that runs the job.

    Args:
        t_env: from :func:`pricewave.job.environment.create_table_environment`.
        settings: the pricewave settings (topics, store, model directory).
        options: the job's knobs.

    Returns:
        The job's INSERTs; ``execute()`` submits it (:func:`pricewave.job.run.run_statements`).
    """
    options.validate()
    # The repo, profile and model dir as this driver resolved them, for every worker wherever it runs.
    settings = pinned_settings(settings)
    open_store(settings)  # an unreachable store fails here, in one readable line, not in every worker
    register_udfs(t_env, settings, options)
    declare_sources(t_env, settings, options)
    declare_features(t_env, options)
    declare_pricing(t_env)
    declare_sinks(t_env, settings, options)
    statements = t_env.create_statement_set()
    for insert in (dead_letter_insert(settings, tuple(INPUT_SCHEMAS)), *sink_inserts()):
        statements.add_insert_sql(insert)
    return PricingStatements(statements, t_env)
