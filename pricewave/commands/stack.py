"""``pricewave stack up | down | status``: the local Kafka, Redis and Flink stack."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from pricewave import stack
from pricewave.config import Settings


def register(subparsers: Any) -> None:
    """Add ``stack`` to the CLI."""
    parser = subparsers.add_parser(
        "stack",
        help="start, stop or inspect the local Kafka + Redis + Flink stack",
        description=(
            "Run the local stack on loopback: an Apache Kafka 4 broker (KRaft, jars from Maven Central), "
            "redis-server (from apt) and a standalone Flink cluster (JobManager + N TaskManagers from the "
            "PyFlink package). Logs, data and pid files live under the state directory "
            "(settings.state_dir, default ./.pricewave). Ports come from the settings "
            "(e.g. PRICEWAVE_KAFKA__PORT, PRICEWAVE_REDIS__PORT, PRICEWAVE_FLINK__REST_PORT)."
        ),
    )
    parser.add_argument("action", choices=["up", "down", "status"], help="what to do")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(stack.SERVICE_NAMES)} (default: all)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave stack``."""
    names = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    if args.action == "up":
        statuses = stack.up(settings, names)
    elif args.action == "down":
        stopped = stack.down(settings, names)
        print(f"[stack] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    else:
        statuses = stack.status(settings, names)
    print_status(statuses)
    return 0 if all(s.state in ("running", "external") for s in statuses) or args.action == "status" else 1


def print_status(statuses: list[stack.ServiceStatus]) -> None:
    """Print the status table."""
    table = Table(title="pricewave stack")
    for column in ("service", "state", "pids", "address", "log"):
        table.add_column(column)
    colors = {"running": "green", "external": "cyan", "starting": "yellow", "degraded": "yellow", "stopped": "red"}
    for row in statuses:
        table.add_row(
            row.name,
            f"[{colors.get(row.state, 'white')}]{row.state}[/]",
            " ".join(str(pid) for pid in row.pids) or "-",
            row.address,
            str(row.log),
        )
    Console(width=160).print(table)
