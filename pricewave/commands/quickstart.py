"""``pricewave quickstart``: the README's main command, end to end on the local defaults.

1. the local stack (Kafka, Redis, a standalone Flink cluster) up;
2. the Feast repo applied (SQLite online store by default) and the scenario's catalog exported and
   loaded with the same code as ``pricewave catalog export`` / ``catalog load``;
3. a demand model trained on simulated history when none is fresh (``models.max_age_h``);
4. the pricing job submitted to the stack's Flink cluster with ``pricewave submit``'s code path,
   consumer group ``pricewave-pricing`` (an earlier quickstart job is cancelled first), with the
   live market's holiday calendar (:func:`live_market_holidays`);
5. the market simulator streaming into Kafka on the live clock, in closed loop (shoppers see our
   prices);
6. a live table of prices until ``--duration`` elapses or Ctrl-C; then the simulator stops, and the
   job and the stack keep running for the channels, the monitor and the Web UI (the closing lines
   say how to stop them).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricewave import stack
from pricewave.commands.watch import watch
from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.monitor_view import TopicTally
from pricewave.stack.process import foreground_terminal

GROUP_ID = "pricewave-pricing"
"""The quickstart job's consumer group: fixed, so the monitor's lag and ``pricewave jobs`` find it."""


def register(subparsers: Any) -> None:
    """Add ``quickstart`` to the CLI."""
    parser = subparsers.add_parser(
        "quickstart",
        help="stack up, train if needed, submit the pricing job, stream a live market, show prices",
        description=(
            "Starts the local stack, applies the Feast repo, loads the scenario's catalog, trains a demand "
            "model on simulated history if none is fresh, submits the pricing job to the stack's Flink cluster "
            f"(consumer group {GROUP_ID}; Web UI on the stack's Flink port), streams the market simulator on "
            "the live clock in closed loop, and shows per-sku and personalized prices live until --duration "
            "elapses or Ctrl-C. The job and the stack keep running afterwards: read prices with "
            "'pricewave price', watch with 'pricewave monitor', stop with 'pricewave stack down'. "
            "Logs: <state>/logs/."
        ),
    )
    parser.add_argument("--scenario", default="small", help="shipped scenario name or YAML file (default: small)")
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="simulated time per wall-clock second (default 1: live). Above 1 event times run ahead of the "
        "wall clock, and the job dead-letters those more than 60 s ahead of the time they were sent",
    )
    parser.add_argument("--duration", type=float, default=90.0, help="seconds to show prices (0 = until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--parallelism", type=int, default=1, help="the pricing job's parallelism (default 1)")
    parser.add_argument("--job-start-timeout", type=float, default=240.0, help="seconds to wait for the job")
    parser.set_defaults(handler=run)


def _say(message: str) -> None:
    print(f"[quickstart] {message}", flush=True)


def prepare_store(settings: Settings, scenario: str, seed: int) -> Path:
    """Apply the feature repo if needed, then export the scenario's catalog and load it.

    The catalog goes through the same file format and loader a shop uses for its own
    (``pricewave catalog export`` / ``pricewave catalog load``).

    Args:
        settings: Where the feature repo and online store are.
        scenario: The scenario the simulator will stream.
        seed: The simulator's seed: it draws the catalog too (which skus are coffee, which snacks,
            and so their ids), so a catalog of another seed leaves some clicked skus unpriced.

    Returns:
        The catalog file that was loaded.
    """
    from pricewave.commands.features import apply
    from pricewave.feature_store import open_store
    from pricewave.feature_store.catalog import export_scenario_catalog, load_catalog

    try:
        open_store(settings)
    except ConfigError:
        _say("applying the Feast feature repo ...")
        apply(settings, None, None)
    name = Path(scenario).stem if scenario.endswith((".yaml", ".yml")) else scenario
    catalog = settings.path("catalog", f"{name}-seed{seed}.csv")
    catalog.parent.mkdir(parents=True, exist_ok=True)
    export_scenario_catalog(settings, scenario, seed, catalog)
    count = load_catalog(settings, catalog)
    _say(f"catalog of {count} skus ({catalog}) loaded into the online store")
    return catalog


def ensure_model(settings: Settings, scenario: str) -> None:
    """Train a demand model on simulated history of ``scenario`` unless the model directory has a fresh one
    of this code's feature spec.

    A model older than ``models.max_age_h`` trips the kill switch, which would price everything at
    base: the quickstart trains a new one instead.
    """
    from pricewave.pricing.artifact import artifact_age_s, artifact_spec_version
    from pricewave.pricing.features import FEATURE_SPEC_VERSION

    model_dir = settings.model_dir
    age, limit = artifact_age_s(model_dir), settings.models.max_age_s
    spec = artifact_spec_version(model_dir)
    if age is not None and age <= limit and spec == FEATURE_SPEC_VERSION:
        _say(f"using the model in {model_dir} ({age / 60:.0f} min old)")
        return
    if age is not None and spec != FEATURE_SPEC_VERSION:
        _say(
            f"the model in {model_dir} reads feature spec v{spec}, this pricewave builds v{FEATURE_SPEC_VERSION} "
            "inputs and would refuse it: training a fresh one (about a minute) ..."
        )
    elif age is None:
        _say(f"no model yet: training one on simulated {scenario} history (about a minute) ...")
    else:
        _say(
            f"the model in {model_dir} is {age / 3600:.1f} h old, past models.max_age_h = {limit / 3600:.0f} h "
            "after which the kill switch prices at base: training a fresh one (about a minute) ..."
        )
    command = [sys.executable, "-m", "pricewave", "train", "--scenario", scenario, "--events", "20000"]
    # --recent: the history ends now, so its time-of-day features are the live market's.
    result = subprocess.run([*command, "--epochs", "15", "--recent"], check=False)
    if result.returncode != 0:
        raise StackError("training failed: see the output above")


def live_market_holidays(settings: Settings, scenario: str) -> Settings:
    """``settings`` with the holiday calendar of ``scenario``'s market on the live clock starting now.

    A scenario dates its holidays in days after its clock start, and the simulator streams on the
    live clock: the job (whose model reads ``is_holiday``) gets them dated from now, when it is
    submitted. The simulator starts once the job runs, so its holidays begin that much later
    (seconds; a holiday lasts days).
    """
    from pricewave.simulator.runner import live_clock_start
    from pricewave.simulator.scenario import load_scenario

    market = load_scenario(scenario)
    live = market.model_copy(update={"clock": market.clock.model_copy(update={"start": _utc(live_clock_start())})})
    return settings.model_copy(update={"holidays": live.holiday_calendar()})


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def start_job(settings: Settings, parallelism: int, timeout_s: float) -> str:
    """Submit the pricing job to the stack's cluster (as ``pricewave submit`` does) and wait until it runs.

    An active job of the same name is cancelled first: two jobs with one consumer group and one
    transactional id prefix would fence each other's transactions.

    Returns:
        The job id.
    """
    from pricewave import flink as flink_jobs

    cluster = flink_jobs.cluster_for(settings)
    for job in flink_jobs.list_jobs(cluster):
        if job.name == flink_jobs.JOB_NAME and job.state in flink_jobs.ACTIVE_STATES:
            _say(f"cancelling the pricing job {job.job_id} of an earlier run ...")
            flink_jobs.cancel_job(cluster, job.job_id)
    job_args = ["--group-id", GROUP_ID, "--starting-offsets", "latest-offset"]
    # Prices reach read_committed readers at each checkpoint: commit often for a live view.
    job_args += ["--checkpoint-interval", "2"]
    result = flink_jobs.submit(settings, parallelism=parallelism, job_args=job_args)
    _say(f"pricing job {result.job_id} submitted (consumer group {GROUP_ID}); Web UI: {result.web_url}")
    flink_jobs.wait_for_state(cluster, result.job_id, ["RUNNING"], timeout_s=timeout_s)
    return result.job_id


def _offer_example(settings: Settings, scenario: str, seed: int, tally: TopicTally) -> tuple[str, str] | None:
    """A (sku, raw user id) that got an offer in this run, for the closing hint.

    The prices topic carries pseudonymous keys only; the simulator's own users (same scenario
    and seed) map a key back to the raw id a channel would pass to ``pricewave price --user``.
    """
    from pricewave.simulator.market import Market
    from pricewave.simulator.scenario import load_scenario

    offers = [(figures.last_offer_time, figures.last_offer_user, sku) for sku, figures in tally.skus.items()]
    newest = max((offer for offer in offers if offer[1]), default=None)  # the freshest offer of the run
    if newest is None:
        return None
    market = Market(load_scenario(scenario), seed, settings.user_key_secret)
    for index in range(market.scenario.users.n_users):
        user = market.user(index)
        if user.user_key == newest[1]:
            return newest[2], user.raw_id
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave quickstart``."""
    if args.speedup <= 0 or args.duration < 0 or args.parallelism < 1:
        raise ConfigError("--speedup must be > 0, --duration >= 0 and --parallelism >= 1")
    stack.up(settings)
    prepare_store(settings, args.scenario, args.seed)
    ensure_model(settings, args.scenario)
    _say(f"submitting the pricing job to the Flink cluster at {settings.flink.rest_url} ...")
    job_id = start_job(live_market_holidays(settings, args.scenario), args.parallelism, args.job_start_timeout)
    sim_log = settings.path("logs", "simulator.log")
    command = [sys.executable, "-m", "pricewave", "simulate", "--scenario", args.scenario, "--seed", str(args.seed)]
    command += ["--speedup", str(args.speedup), "--no-progress"]
    if args.duration > 0:
        command += ["--duration", str(args.duration)]
    simulator: list[subprocess.Popen[bytes]] = []

    def start_simulator() -> None:
        _say(f"streaming the {args.scenario} market on the live clock (log: {sim_log})")
        with sim_log.open("ab") as log:
            # Its own process group: Ctrl-C reaches this command, which stops the simulator itself.
            simulator.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        with foreground_terminal():
            tally = watch(
                settings, duration_s=args.duration, from_beginning=False, max_skus=15, on_start=start_simulator
            )
    finally:
        for process in simulator:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    failed = [p.returncode for p in simulator if p.returncode not in (0, -15)]
    if failed:
        raise StackError(f"the simulator failed (exit {failed[0]}); see {sim_log}")
    clicks = tally.counts[settings.topics.clicks]
    prices = tally.counts[settings.topics.prices]
    print(
        f"\nquickstart: {clicks:,} clicks in, {prices:,} prices published "
        f"({tally.offers_seen:,} personalized offers); logs in {settings.path('logs')}"
    )
    _print_next_steps(settings, args, job_id, tally)
    return 0 if clicks > 0 and prices > 0 else 1


def _print_next_steps(settings: Settings, args: argparse.Namespace, job_id: str, tally: TopicTally) -> None:
    """What is still running, how to read prices from it and how to stop it."""
    priced = [(figures.published_time, sku) for sku, figures in tally.skus.items() if figures.published_price]
    sku = max(priced)[1] if priced else next(iter(sorted(tally.skus)), "SKU")  # the freshest sku price
    example = None
    with contextlib.suppress(Exception):  # a hint only: never fail the run over it
        example = _offer_example(settings, args.scenario, args.seed, tally)
    print(f"still running: the pricing job {job_id} on Flink ({settings.flink.rest_url}), and the local stack")
    print("read prices as a channel does:")
    print(f"  .venv/bin/pricewave price --sku {sku}")
    if example is not None:
        print(f"  .venv/bin/pricewave price --sku {example[0]} --user {example[1]}")
    print("watch it: .venv/bin/pricewave monitor   (dashboard on http://127.0.0.1:8050)")
    print(f"stop the job with a savepoint: .venv/bin/pricewave stop --savepoint {settings.path('savepoints')}")
    print("stop everything (job, Flink, Kafka, Redis): .venv/bin/pricewave stack down")
