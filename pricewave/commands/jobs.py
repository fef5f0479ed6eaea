"""``pricewave submit | jobs | stop | upgrade``: the pricing job on a Flink cluster.

``submit`` runs Flink's own ``flink run --detached`` (see :mod:`pricewave.flink`); the others use
the JobManager's REST API. Every command defaults to the local stack's cluster (``--cluster URL``
for another one).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from pricewave import flink as flink_jobs
from pricewave.config import Settings
from pricewave.errors import ConfigError

STATE_COLORS = {"RUNNING": "green", "FINISHED": "cyan", "CANCELED": "yellow", "FAILED": "red", "RESTARTING": "red"}


def _cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        metavar="URL",
        help="REST URL of the JobManager, e.g. http://flink-jm:8081 (default: the local stack's, settings.flink)",
    )


def _submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parallelism", "-p", type=int, metavar="N", help="the job's parallelism")
    parser.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="skip savepoint state of operators the new code no longer has",
    )
    parser.add_argument(
        "job_args",
        nargs=argparse.REMAINDER,
        metavar="JOB_ARGS",
        help="after '--': flags of jobs/pricing_job.py (e.g. -- --group-id G --starting-offsets earliest-offset)",
    )


def _upgrade_options(parser: argparse.ArgumentParser) -> None:
    _cluster_option(parser)
    parser.add_argument("--savepoint", metavar="DIR", help="where the savepoint goes (default: the cluster's)")
    parser.add_argument("--parallelism", "-p", type=int, metavar="N", help="the new job's parallelism")
    parser.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="skip savepoint state of operators the new code no longer has",
    )


def _split_upgrade_args(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """JOB_ID and JOB_ARGS of ``upgrade``, with options also accepted after JOB_ID.

    argparse cannot mix an optional positional with a ``--`` tail, so what follows the first
    positional is parsed here (into ``args``) up to ``--``.
    """
    rest = list(args.rest)
    job_args: list[str] = []
    if "--" in rest:
        cut = rest.index("--")
        rest, job_args = rest[:cut], rest[cut + 1 :]
    tail = argparse.ArgumentParser(prog="pricewave upgrade", add_help=False)
    _upgrade_options(tail)
    tail.add_argument("job_id", nargs="?")
    defaults = {action.dest: action.default for action in tail._actions}
    parsed, unknown = tail.parse_known_args(rest)
    if unknown:
        raise ConfigError(f"upgrade: unexpected {' '.join(unknown)} (put job flags after '--')")
    for name, value in vars(parsed).items():
        if name != "job_id" and value != defaults.get(name):
            setattr(args, name, value)
    return parsed.job_id, job_args


def register(subparsers: Any) -> None:
    """Add ``submit``, ``jobs``, ``stop`` and ``upgrade`` to the CLI."""
    submit = subparsers.add_parser(
        "submit",
        help="submit the pricing job to a Flink cluster (flink run, detached)",
        description=(
            "Run Flink's own 'flink run --detached' on the pricing job (jobs/pricing_job.py) with the current "
            "code shipped as one zip (jobs/, udfs/, pricewave/, schemas/). The settings (--config, PRICEWAVE_*, "
            "--profile) travel with the job: the feature repo, store profile and model directory as absolute "
            "paths, to the driver and every Python worker. A store the job cannot open stops the submission "
            "with one line. Prints the job id and its Web UI link."
        ),
    )
    _cluster_option(submit)
    restore = submit.add_mutually_exclusive_group()
    restore.add_argument("--from-savepoint", metavar="PATH", help="restore the job's state from this savepoint")
    restore.add_argument(
        "--from-checkpoint",
        metavar="PATH|latest",
        help="resume from a retained checkpoint, e.g. after the JobManager was lost: 'latest' (the newest "
        "completed one under <state>/flink/checkpoints), a checkpoint folder (chk-N), or a job's or a "
        "checkpoint root's folder (its newest completed checkpoint)",
    )
    submit.add_argument("--dry-run", action="store_true", help="print the exact command instead of running it")
    submit.add_argument(
        "--profile",
        metavar="NAME",
        help="the online store the job writes: 'sqlite', 'redis' or a feature_store yaml (default: the "
        "store_profile setting, PRICEWAVE_STORE_PROFILE). It travels with the job to every TaskManager",
    )
    _submit_options(submit)
    submit.set_defaults(handler=run_submit)

    jobs = subparsers.add_parser(
        "jobs",
        help="list the jobs on a Flink cluster",
        description="List the cluster's jobs (REST /jobs/overview): id, name, state, start time and duration.",
    )
    _cluster_option(jobs)
    jobs.add_argument("--active", action="store_true", help="only jobs that are not finished, failed or cancelled")
    jobs.set_defaults(handler=run_jobs)

    stop = subparsers.add_parser(
        "stop",
        help="stop a job with a savepoint",
        description=(
            "Stop the job with a savepoint (REST POST /jobs/:id/stop) and print the savepoint's path. "
            "Without JOB_ID, the one active pricing job."
        ),
    )
    _cluster_option(stop)
    stop.add_argument("job_id", nargs="?", metavar="JOB_ID", help="the job (default: the one active pricing job)")
    stop.add_argument(
        "--savepoint",
        metavar="DIR",
        help="where the savepoint goes (default: the cluster's execution.checkpointing.savepoint-dir)",
    )
    stop.add_argument(
        "--drain",
        action="store_true",
        help="emit the final watermark first (ends event-time windows), for a job that will not be resumed; "
        "Flink 2.2 drops it at a source that is idle at that moment (FLINK-40499), so a job that has read "
        "nothing for --idle-timeout keeps its last windows unfired",
    )
    stop.set_defaults(handler=run_stop)

    upgrade = subparsers.add_parser(
        "upgrade",
        help="stop a job with a savepoint and submit the current code from it",
        usage="pricewave upgrade [-h] [JOB_ID] [--cluster URL] [--savepoint DIR] [--parallelism N] "
        "[--allow-non-restored-state] [-- JOB_ARGS ...]",
        description=(
            "Stop the job with a savepoint, then submit the current code restored from that savepoint "
            "(same as 'pricewave stop' followed by 'pricewave submit --from-savepoint'). Without JOB_ID, the "
            "one active pricing job."
        ),
    )
    _upgrade_options(upgrade)
    upgrade.add_argument("rest", nargs=argparse.REMAINDER, metavar="[JOB_ID] [-- JOB_ARGS]", help=argparse.SUPPRESS)
    upgrade.set_defaults(handler=run_upgrade)


def _job_args(args: argparse.Namespace) -> list[str]:
    """The flags after ``--`` (argparse keeps the separator itself in a REMAINDER)."""
    job_args = list(args.job_args)
    return job_args[1:] if job_args[:1] == ["--"] else job_args


def _print_submitted(result: flink_jobs.SubmitResult) -> None:
    print(f"submitted job {result.job_id}")
    print(f"Web UI: {result.web_url}")


def run_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave submit``."""
    if args.profile:
        settings = settings.model_copy(update={"store_profile": args.profile})
    savepoint = args.from_savepoint
    if args.from_checkpoint:
        savepoint = flink_jobs.resolve_checkpoint(settings, args.from_checkpoint)
        print(f"resuming from checkpoint {savepoint}", flush=True)
    options = {
        "cluster_url": args.cluster,
        "parallelism": args.parallelism,
        "savepoint": savepoint,
        "allow_non_restored": args.allow_non_restored_state,
        "job_args": _job_args(args),
        "config_file": args.config,
    }
    if args.dry_run:
        print(flink_jobs.dry_run_command(settings, **options))
        return 0
    _print_submitted(flink_jobs.submit(settings, **options))
    return 0


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave jobs``."""
    cluster = flink_jobs.cluster_for(settings, args.cluster)
    jobs = flink_jobs.list_jobs(cluster)
    if args.active:
        jobs = [job for job in jobs if job.state in flink_jobs.ACTIVE_STATES]
    table = Table(title=f"jobs on {cluster.rest_url}")
    for column in ("id", "name", "state", "started", "duration"):
        table.add_column(column, justify="right" if column == "duration" else "left", no_wrap=column == "id")
    for job in jobs:
        color = STATE_COLORS.get(job.state, "white")
        table.add_row(job.job_id, job.name, f"[{color}]{job.state}[/]", job.started, job.duration)
    Console(width=140).print(table)
    if not jobs:
        print("no jobs")
    return 0


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave stop``."""
    cluster = flink_jobs.cluster_for(settings, args.cluster)
    job_id = flink_jobs.resolve_job_id(cluster, args.job_id)
    print(f"stopping job {job_id} with a savepoint ...", flush=True)
    savepoint = flink_jobs.stop_with_savepoint(cluster, job_id, args.savepoint, drain=args.drain)
    print(f"savepoint: {savepoint}")
    return 0


def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave upgrade``."""
    job_id, job_args = _split_upgrade_args(args)
    savepoint, result = flink_jobs.upgrade(
        settings,
        job_id=job_id,
        savepoint_dir=args.savepoint,
        cluster_url=args.cluster,
        parallelism=args.parallelism,
        allow_non_restored=args.allow_non_restored_state,
        job_args=job_args,
        config_file=args.config,
    )
    print(f"savepoint: {savepoint}")
    _print_submitted(result)
    return 0
