"""``pricewave train``: train the demand model from a simulator history (Feast point-in-time join).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> args = parser.parse_args(["train", "--scenario", "small", "--events", "20000", "--epochs", "5"])
    >>> args.history, args.scenario, args.events, args.epochs
    (None, 'small', 20000, 5)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from pricewave.commands.arguments import positive_int
from pricewave.config import Settings


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
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave train``."""
    from pricewave.training import default_model_dir, generate_history, torch_threads_from_env, train

    torch_threads_from_env()
    out = Path(args.out).expanduser() if args.out else default_model_dir(settings)
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
