"""``pricewave audit``: find lost decisions, and keep the decision log bounded.

``pricewave audit reconcile`` compares the decision log with the committed ``prices`` topic and
exits 1, with one line naming the count, when a logged decision is not committed (a Kafka
transaction aborted after its checkpoint: Flink's committer only logs "most likely signals data
loss"). ``pricewave audit prune`` deletes the decision log's oldest committed part files beyond a
size and an age cap (run it from cron or a sidecar beside the job).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="pricewave")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["audit", "prune", "--max-mb", "512", "--max-age-h", "48"])
    >>> args.action, args.max_mb, args.max_age_h
    ('prune', 512.0, 48.0)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pricewave.commands.arguments import non_negative_float
from pricewave.config import Settings
from pricewave.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``audit`` and its actions to the CLI."""
    parser = subparsers.add_parser(
        "audit",
        help="find decisions lost between the decision log and the prices topic; prune the decision log",
        description=(
            "reconcile: every publishable decision in the decision log must be committed in the prices "
            "topic (read_committed); exits 1 naming the count when some are missing. prune: delete the "
            "decision log's oldest committed part files beyond --max-mb / --max-age-h."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    reconcile = actions.add_parser(
        "reconcile", help="decision log vs committed prices topic; exit 1 when decisions are missing"
    )
    reconcile.add_argument("--decision-log-dir", metavar="DIR", help="default: <state>/decision_log")
    reconcile.add_argument("--topic", help="default: the settings' prices topic")
    reconcile.add_argument(
        "--grace",
        type=non_negative_float,
        default=60.0,
        metavar="S",
        help="skip decisions made in the last S seconds: their checkpoint may not have committed yet "
        "(default 60; 0 after the job has stopped)",
    )
    reconcile.add_argument("--show", type=int, default=0, metavar="N", help="also print N missing ids")
    reconcile.set_defaults(handler=run_reconcile)
    prune = actions.add_parser("prune", help="enforce a size and an age cap on the decision log")
    prune.add_argument("--decision-log-dir", metavar="DIR", help="default: <state>/decision_log")
    prune.add_argument("--max-mb", type=non_negative_float, metavar="MB", help="keep at most MB of part files")
    prune.add_argument("--max-age-h", type=non_negative_float, metavar="H", help="delete part files older than H hours")
    prune.set_defaults(handler=run_prune)


def _log_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.decision_log_dir) if args.decision_log_dir else settings.path("decision_log")


def run_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave audit reconcile``: 0 when nothing is missing, 1 when decisions were lost."""
    from pricewave.audit import committed_decision_ids, read_decision_log, reconcile

    directory = _log_dir(args, settings)
    if not directory.is_dir():
        raise ConfigError(f"no decision log at {directory}: pass --decision-log-dir")
    topic = args.topic or settings.topics.prices
    log = read_decision_log(directory)
    published = committed_decision_ids(settings, topic)
    before_ms = int((time.time() - args.grace) * 1000) if args.grace > 0 else None
    result = reconcile(log.rows, published, before_ms=before_ms)
    note = f" ({log.bad_lines} unreadable lines skipped)" if log.bad_lines else ""
    print(f"audit: {result.summary(topic)}; {log.files} part files in {directory}{note}", flush=True)
    for decision_id in result.missing[: max(args.show, 0)]:
        print(f"missing {decision_id}")
    return 0 if result.ok else 1


def run_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave audit prune``."""
    from pricewave.audit import prune_decision_log

    if args.max_mb is None and args.max_age_h is None:
        raise ConfigError("prune needs --max-mb and/or --max-age-h")
    directory = _log_dir(args, settings)
    result = prune_decision_log(
        directory,
        max_bytes=None if args.max_mb is None else int(args.max_mb * 1024 * 1024),
        max_age_s=None if args.max_age_h is None else args.max_age_h * 3600,
    )
    print(f"audit: {result.summary()} in {directory}", flush=True)
    return 0
