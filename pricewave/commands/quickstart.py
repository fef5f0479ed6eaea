"""``pricewave quickstart``: the README's main command, end to end on the embedded defaults.

1. the local stack (Kafka, Redis, Flink) up;
2. the Feast repo applied (SQLite online store) and the scenario's catalog written to it;
3. a demand model trained on simulated history when none exists yet (never a stub);
4. the pricing job started on an embedded MiniCluster, reading from the latest offsets;
5. the market simulator streaming into Kafka in closed loop (it shows shoppers our prices);
6. a live table of prices until ``--duration`` elapses or Ctrl-C; then the job and the simulator
   stop, and the stack keeps running for the monitor and the SDK (``pricewave stack down`` stops it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pricewave import stack
from pricewave.commands.watch import watch
from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.stack.process import child_environment, tail

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: Any) -> None:
    """Add ``quickstart`` to the CLI."""
    parser = subparsers.add_parser(
        "quickstart",
        help="stack up, train if needed, run the pricing job and the simulator, show prices live",
        description=(
            "Starts the local stack, applies the Feast repo, trains a demand model on simulated history "
            "if none exists, starts the pricing job (embedded MiniCluster) and the market simulator in "
            "closed loop, and shows per-sku and personalized prices live until --duration elapses or "
            "Ctrl-C. Logs: <state>/logs/pricing-job.log and <state>/logs/simulator.log."
        ),
    )
    parser.add_argument("--scenario", default="small", help="shipped scenario name or YAML file (default: small)")
    parser.add_argument("--rate", type=float, default=200.0, help="simulator events per second (default 200)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds to show prices (0 = until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--job-start-timeout", type=float, default=240.0, help="seconds to wait for the job")
    parser.set_defaults(handler=run)


def _say(message: str) -> None:
    print(f"[quickstart] {message}", flush=True)


def prepare_store(settings: Settings, scenario: str, seed: int) -> None:
    """Apply the feature repo if needed and write the scenario's catalog (base prices, costs).

    Args:
        settings: Where the feature repo and online store are.
        scenario: The scenario the simulator will stream.
        seed: The simulator's seed: it draws the catalog too (which skus are coffee, which snacks,
            and so their ids), so a catalog of another seed leaves some clicked skus unpriced.
    """
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.feature_store.store import default_repo_path
    from pricewave.simulator.runner import Simulator

    try:
        store = open_store(settings)
    except ConfigError:
        _say(f"applying the Feast feature repo {default_repo_path(settings)} ...")
        result = subprocess.run(
            [str(Path(sys.executable).with_name("feast")), "apply"],
            cwd=default_repo_path(settings),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"feast apply failed: {result.stderr.strip().splitlines()[-1:]}") from None
        store = open_store(settings)
    catalog = Simulator(scenario, settings, seed=seed).catalog_records()
    FeatureWriter(store).write("sku_catalog", catalog)
    _say(f"catalog of {len(catalog)} skus written to the online store")


def ensure_model(settings: Settings) -> None:
    """Train a demand model on simulated history unless the model directory has a fresh one.

    A model older than the guardrails' ``max_model_age_s`` (1 h) trips the kill switch, which
    would price everything at base: the quickstart trains a new one instead.
    """
    from pricewave.pricing.artifact import artifact_age_s
    from pricewave.pricing.guardrails import GuardrailPolicy
    from pricewave.training import default_model_dir

    model_dir = default_model_dir(settings)
    age, limit = artifact_age_s(model_dir), GuardrailPolicy().max_model_age_s
    if age is not None and age <= limit:
        _say(f"using the model in {model_dir} ({age / 60:.0f} min old)")
        return
    if age is None:
        _say("no model yet: training one on simulated history (about a minute) ...")
    else:
        _say(
            f"the model in {model_dir} is {age / 3600:.1f} h old, past the {limit / 3600:.0f} h after which the kill "
            "switch prices at base: training a fresh one (about a minute) ..."
        )
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "train", "--scenario", "small", "--events", "20000", "--epochs", "15"],
        check=False,
    )
    if result.returncode != 0:
        raise StackError("training failed: see the output above")


def start_job(settings: Settings, log_path: Path, timeout_s: float) -> subprocess.Popen[bytes]:
    """Start the pricing job on a MiniCluster and wait until it runs."""
    command = [
        sys.executable,
        str(REPO_ROOT / "jobs" / "pricing_job.py"),
        "--starting-offsets",
        "latest-offset",
        "--group-id",
        f"pricewave-quickstart-{uuid.uuid4().hex[:8]}",
        # Prices reach read_committed readers at each checkpoint: commit often for a live view.
        "--checkpoint-interval",
        "2",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_environment())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if job.poll() is not None:
            raise StackError(f"the pricing job exited (code {job.returncode}); see {log_path}\n{tail(log_path)}")
        if b"running" in log_path.read_bytes():
            # The job id is known; give the sources a moment to take their partitions.
            time.sleep(8)
            return job
        time.sleep(1)
    job.terminate()
    raise StackError(f"the pricing job did not start within {timeout_s:.0f} s; see {log_path}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave quickstart``."""
    if args.rate <= 0 or args.duration < 0:
        raise ConfigError("--rate must be > 0 and --duration >= 0")
    stack.up(settings)
    prepare_store(settings, args.scenario, args.seed)
    ensure_model(settings)
    job_log = settings.path("logs", "pricing-job.log")
    _say(f"starting the pricing job (log: {job_log}) ...")
    job = start_job(settings, job_log, args.job_start_timeout)
    sim_log = settings.path("logs", "simulator.log")
    command = [sys.executable, "-m", "pricewave", "simulate", "--scenario", args.scenario]
    command += ["--rate", str(args.rate), "--seed", str(args.seed), "--no-progress"]
    if args.duration > 0:
        command += ["--duration", str(args.duration)]
    simulator: list[subprocess.Popen[bytes]] = []

    def start_simulator() -> None:
        _say(f"streaming the {args.scenario} market at {args.rate:.0f} events/s (log: {sim_log})")
        with sim_log.open("ab") as log:
            simulator.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    try:
        tally = watch(settings, duration_s=args.duration, from_beginning=False, max_skus=15, on_start=start_simulator)
    finally:
        for process in [*simulator, job]:
            if process.poll() is None:
                process.terminate()
        for process in [*simulator, job]:
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
    return 0 if clicks > 0 and prices > 0 else 1
