"""``pricewave quickstart``: the README's main command, end to end on the embedded defaults."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from pricewave import stack
from pricewave.commands.watch import watch
from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError


def register(subparsers: Any) -> None:
    """Add ``quickstart`` to the CLI."""
    parser = subparsers.add_parser(
        "quickstart",
        help="bring the local stack up, stream the market simulator through Kafka and show prices live",
        description=(
            "Starts the local stack (Kafka, Redis, Flink), runs the market simulator into the local "
            "broker at --rate events/s and shows the topics and per-sku prices live until --duration "
            "elapses or Ctrl-C. The simulator's log goes to <state>/logs/simulator.log."
        ),
    )
    parser.add_argument("--scenario", default="default", help="shipped scenario name or YAML file (default: default)")
    parser.add_argument("--rate", type=float, default=200.0, help="simulator events per second (default 200)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60; 0 = until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave quickstart``."""
    if args.rate <= 0 or args.duration < 0:
        raise ConfigError("--rate must be > 0 and --duration >= 0")
    stack.up(settings)
    log_path = settings.path("logs", "simulator.log")
    command = [sys.executable, "-m", "pricewave", "simulate", "--scenario", args.scenario]
    command += ["--rate", str(args.rate), "--seed", str(args.seed)]
    if args.duration > 0:
        command += ["--duration", str(args.duration)]
    simulator: list[subprocess.Popen[bytes]] = []

    def start_simulator() -> None:
        with log_path.open("ab") as log:
            simulator.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    try:
        tally = watch(settings, duration_s=args.duration, from_beginning=False, max_skus=15, on_start=start_simulator)
    finally:
        for process in simulator:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
    failed = [p.returncode for p in simulator if p.returncode not in (0, -15)]
    if failed:
        raise StackError(f"the simulator failed (exit {failed[0]}); see {log_path}")
    clicks = tally.counts[settings.topics.clicks]
    print(
        f"quickstart: {clicks:,} clicks, {tally.counts[settings.topics.prices]:,} published prices; "
        f"simulator log: {log_path}"
    )
    return 0 if clicks > 0 else 1
