"""``pricewave train``: train the demand model from a simulator history, or from the job's decision log.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> args = parser.parse_args(["train", "--scenario", "small", "--events", "20000", "--epochs", "5"])
    >>> args.history, args.scenario, args.events, args.epochs
    (None, 'small', 20000, 5)
    >>> args = parser.parse_args(["train", "--from-log", "--every", "3600"])
    >>> args.from_log, args.every, args.rounds
    ('', 3600.0, None)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from pricewave.commands.arguments import positive_float, positive_int
from pricewave.config import Settings
from pricewave.errors import ConfigError, DataError


def register(subparsers: Any) -> None:
    """Add ``train`` to the CLI."""
    parser = subparsers.add_parser(
        "train",
        help="train the demand model from a simulator history",
        description=(
            "Computes the streaming job's features offline from a simulator history, writes them as the "
            "Feast views' batch sources in a copy of the feature repo, joins them point-in-time onto every "
            "view (no feature from after the decision), fits the demand model with early stopping and saves "
            "a versioned artifact (metrics, card.md, calibration.png) into the model directory. Without "
            "--history it first simulates one at explored prices."
        ),
    )
    parser.add_argument("--history", metavar="DIR", help="a history from 'pricewave simulate --history-out DIR'")
    parser.add_argument(
        "--scenario", default="small", metavar="NAME|FILE.yaml", help="scenario to simulate without --history"
    )
    parser.add_argument(
        "--events", type=positive_int, default=100_000, metavar="N", help="events to simulate (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the simulation and the fit")
    parser.add_argument(
        "--recent",
        action="store_true",
        help="without --history: date the simulated history so it ends now (its hour-of-day and weekday "
        "features are those of a market streaming on the live clock, as the quickstart's does)",
    )
    parser.add_argument("--out", metavar="DIR", help="model directory (default: <state>/<models.model_dir>)")
    parser.add_argument("--epochs", type=positive_int, default=40, metavar="N", help="most epochs (default 40)")
    parser.add_argument(
        "--patience", type=positive_int, default=5, metavar="N", help="epochs without improvement (default 5)"
    )
    loop = parser.add_argument_group(
        "the feedback loop",
        "With --from-log, the model learns from the prices the job really showed: the decision log's sku "
        "decisions joined to the clicks that saw them. The last --gate-share of the log's time range is held "
        "out; a promotion gate judges the candidate there against the model LATEST names, off-policy from "
        "the logged propensities (inverse propensity and doubly robust estimates with intervals), and refuses "
        "non-finite weights, a calibration error above --max-calibration-error, or a worse estimate. LATEST "
        "moves only when it passes (running jobs reload it); gate.json in the candidate's directory says why. "
        "Exit status: 0 promoted, 3 refused (LATEST unchanged), 2 when the log is too short to judge or an input "
        "is missing.",
    )
    loop.add_argument(
        "--from-log",
        nargs="?",
        const="",
        metavar="DIR",
        help="train from a decision log (default DIR: <state>/decision_log)",
    )
    loop.add_argument(
        "--clicks-from",
        metavar="HISTORY",
        help="take the clicks and catalog from a history directory instead of the clickstream topic and "
        "the online store",
    )
    loop.add_argument(
        "--gate-share",
        type=positive_float,
        default=0.3,
        metavar="F",
        help="share of the log held out for the gate (0.3)",
    )
    loop.add_argument(
        "--max-calibration-error",
        type=positive_float,
        default=0.05,
        metavar="X",
        help="highest expected calibration error on the held-out views (0.05)",
    )
    loop.add_argument(
        "--min-decisions", type=positive_int, default=200, metavar="N", help="fewest held-out decisions (200)"
    )
    loop.add_argument(
        "--every",
        type=positive_float,
        metavar="S",
        help="continuous mode: a round every S seconds (re-reading the log and the clicks) until interrupted",
    )
    loop.add_argument("--rounds", type=positive_int, metavar="N", help="with --every: stop after N rounds")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave train``."""
    from pricewave.training import default_model_dir, generate_history, torch_threads_from_env, train

    torch_threads_from_env()
    out = Path(args.out).expanduser() if args.out else default_model_dir(settings)
    if args.from_log is not None:
        return run_from_log(args, settings, out)
    if args.every is not None or args.rounds is not None or args.clicks_from is not None:
        raise ConfigError("--every, --rounds and --clicks-from go with --from-log")
    with tempfile.TemporaryDirectory(prefix="pricewave-history-") as scratch:
        history = args.history
        if history is None:
            history = generate_history(
                args.scenario, settings, Path(scratch) / "history", events=args.events, seed=args.seed,
                progress=args.progress, ending_now=args.recent,
            )  # fmt: skip
        result = train(
            history, out, settings, epochs=args.epochs, patience=args.patience, seed=args.seed,
            progress=args.progress,
        )  # fmt: skip
    summary = {
        "version": result.version,
        "path": str(result.path),
        "metrics": result.metrics,
        "data_range": result.data_range,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=float))
        return 0
    m = result.metrics
    print(f"model         {result.version} in {result.path}")
    print(
        f"validation    log loss {m['val_log_loss']:.4f} (constant {m['val_constant_log_loss']:.4f}), "
        f"AUC {m['val_auc']:.3f}, calibration error {m['val_calibration_error']:.4f}"
    )
    print(f"data          {result.data_range['start_iso']} to {result.data_range['end_iso']}, {m['train_rows']:,} "
          f"training and {m['val_rows']:,} validation views")  # fmt: skip
    print(f"card          {result.path / 'card.md'}")
    return 0


def run_from_log(args: argparse.Namespace, settings: Settings, out: Path) -> int:
    """``pricewave train --from-log``: one gated round, or one every ``--every`` seconds."""
    from pricewave.pricing.guardrails import job_guardrails
    from pricewave.training.feedback import (
        catalog_from_store,
        clicks_from_history,
        clicks_from_topic,
        decision_log_frame,
        decisions_with_outcomes,
        run_continuously,
        train_from_log,
    )
    from pricewave.training.promotion import GateLimits

    if args.history is not None:
        raise ConfigError("--history and --from-log are two sources: pass one")
    if args.rounds is not None and args.every is None:
        raise ConfigError("--rounds needs --every (one round is the default)")
    log_dir = Path(args.from_log).expanduser() if args.from_log else settings.path("decision_log")
    limits = GateLimits(max_calibration_error=args.max_calibration_error, min_decisions=args.min_decisions)

    def one_round() -> Any:
        decisions = decision_log_frame(log_dir)
        if args.clicks_from:
            clicks, catalog = clicks_from_history(args.clicks_from)
        else:
            clicks, catalog = clicks_from_topic(settings), catalog_from_store(settings, decisions["sku"].unique())
        logged = decisions_with_outcomes(decisions, clicks, catalog, settings.holidays)
        result = train_from_log(
            logged, out, guardrails=job_guardrails(settings), gate_share=args.gate_share, limits=limits,
            epochs=args.epochs, patience=args.patience, seed=args.seed, progress=args.progress,
        )  # fmt: skip
        _print_round(result, args.json, out)
        return result

    if args.every is None:
        return 0 if one_round().promoted else 3

    def round_or_skip() -> Any:
        try:
            return one_round()
        except DataError as exc:  # e.g. too little logged yet: the next round may have enough
            print(f"round skipped: {exc}", flush=True)
            return None

    try:
        rounds = run_continuously(round_or_skip, every_s=args.every, rounds=args.rounds)
    except KeyboardInterrupt:
        return 0
    return 0 if rounds and rounds[-1] is not None and rounds[-1].promoted else 3


def _print_round(result: Any, as_json: bool, out: Path) -> None:
    if as_json:
        summary = {
            "version": result.version,
            "path": str(result.path),
            "promoted": result.promoted,
            "train_decisions": result.train_decisions,
            "gate_decisions": result.gate_decisions,
            "metrics": result.metrics,
            "gate": result.gate.to_json(),
        }
        print(json.dumps(summary, sort_keys=True, default=float), flush=True)
        return
    print(f"candidate     {result.version} in {result.path}")
    print(f"data          {result.train_decisions:,} logged decisions to train, {result.gate_decisions:,} held out")
    print(result.gate.summary())
    latest = (out / "LATEST").read_text().strip() if (out / "LATEST").is_file() else "(none)"
    verdict = "promoted: LATEST" if result.promoted else "refused: LATEST still"
    print(f"result        {verdict} names {latest} (running jobs reload it)", flush=True)
