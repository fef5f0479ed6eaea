"""Running the job: ``main`` (the command line of ``jobs/pricing_job.py``) and compiled plans."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pyflink.table import PlanReference, StatementSet, TableEnvironment, TableResult

from pricewave.config import mask_secrets
from pricewave.errors import ConfigError, PricewaveError
from pricewave.job.environment import create_table_environment
from pricewave.job.options import parse_args
from pricewave.job.pipeline import build_pipeline
from pricewave.kafka_io import flink_security_properties


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
        time.sleep(duration_s)
        client.cancel().result()
        return 0
    # Detached submission (`flink run --detached`, `pricewave submit`): the cluster runs the job.
    if str(t_env.get_config().get("execution.attached", "true")).lower() == "false":
        return 0
    result.wait()
    return 0
