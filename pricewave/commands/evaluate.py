"""``pricewave evaluate``: every pricing policy closed loop in the simulator, with one seed.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> args = parser.parse_args(["evaluate", "--scenario", "small", "--out", "/tmp/eval", "--seed", "3"])
    >>> args.scenario, args.out, args.seed, args.model, args.through_pipeline
    ('small', '/tmp/eval', 3, None, False)
    >>> args = parser.parse_args(["evaluate", "--scenario", "small", "--out", "/tmp/e", "--through-pipeline"])
    >>> args.through_pipeline, args.pipeline_events, args.pipeline_rate
    (True, 6000, 100.0)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pricewave.commands.arguments import positive_int
from pricewave.config import Settings


def register(subparsers: Any) -> None:
    """Add ``evaluate`` to the CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare pricing policies closed loop in the market simulator",
        description=(
            "Runs the simulator in process once per policy (static list price, competitor match, "
            "least-squares linear model, the pricing network) with the same seed, re-pricing every sku "
            "each interval from the streaming features of the recent events, and writes report.json, "
            "report.md and plots (margin over time, price trajectories) to --out. Without --model the "
            "network is trained first on the warm-up history."
        ),
    )
    parser.add_argument("--scenario", required=True, metavar="NAME|FILE.yaml", help="shipped scenario or YAML file")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the report goes")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="the seed every run shares (default 0)")
    parser.add_argument(
        "--events", type=positive_int, default=30_000, metavar="N",
        help="length of the policy phase in events of the static run (default 30000)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup-events", type=positive_int, default=60_000, metavar="N",
        help="events at explored prices before the policy phase; the training history (default 60000)",
    )  # fmt: skip
    parser.add_argument("--model", metavar="PATH", help="model directory or version (default: train one)")
    parser.add_argument(
        "--interval", type=positive_int, default=300, metavar="S", help="simulated seconds between re-pricings"
    )
    parser.add_argument("--epochs", type=positive_int, default=40, metavar="N", help="training epochs at most")
    parser.add_argument("--patience", type=positive_int, default=5, metavar="N", help="early-stopping patience")
    parser.add_argument("--price-points", action="store_true", help="snap prices to x.99 (default: whole cents)")
    parser.add_argument(
        "--through-pipeline", action="store_true",
        help="also run the network through the real Kafka + Flink pipeline (fresh topics, private feature "
        "repo, the same model) for a shorter horizon and check that its margin agrees with the in-process run",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-events", type=positive_int, default=6000, metavar="N",
        help="messages the simulator sends through the pipeline (default 6000)",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-rate", type=float, default=100.0, metavar="R",
        help="simulator messages per second through the pipeline (default 100)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave evaluate``."""
    from pricewave.evaluation import evaluate
    from pricewave.training import torch_threads_from_env

    torch_threads_from_env()
    model_out = Path(args.out) / "model" if args.through_pipeline and not args.model else None
    report = evaluate(
        args.scenario, args.out, settings, seed=args.seed, events=args.events, warmup_events=args.warmup_events,
        model=args.model, interval_s=args.interval, epochs=args.epochs, patience=args.patience,
        price_points=args.price_points, progress=args.progress, model_out=model_out,
    )  # fmt: skip
    if args.through_pipeline:
        from pricewave import stack
        from pricewave.evaluation.pipeline import add_to_report, evaluate_through_pipeline

        stack.up(settings, ["kafka"])
        check = evaluate_through_pipeline(
            args.scenario, settings, model=args.model or str(model_out), seed=args.seed,
            events=args.pipeline_events, rate=args.pipeline_rate, progress=args.progress,
        )  # fmt: skip
        report = add_to_report(args.out, check)
    if args.json:
        print(json.dumps(report, sort_keys=True, default=float))
        return 0
    print(f"{'policy':<18}{'margin':>12}{'vs static':>11}{'paired':>9}{'conversion':>12}{'regret':>9}{'price err':>11}")
    for name, p in report["policies"].items():
        print(
            f"{name:<18}{p['margin']:>12,.2f}{p.get('margin_vs_static', 0):>+11.1%}"
            f"{p.get('paired_margin_vs_static', 0):>+9.1%}{p['conversion']:>12.2%}{p['regret']:>9.2%}"
            f"{p['price_error']:>11.4f}"
        )
    elasticity = report.get("elasticity") or {}
    print(f"elasticity    Pearson {elasticity.get('pearson')} (network vs simulator, n={elasticity.get('n')})")
    summary = report.get("through_pipeline")
    if summary:
        pipe, local = summary["pipeline"], summary["in_process"]
        print(
            f"pipeline      paired margin vs list {pipe['paired_margin_vs_list']:+.2%} through Kafka + Flink, "
            f"{local['paired_margin_vs_list']:+.2%} in process ({summary['window']['minutes']} simulated minutes); "
            f"difference {summary['signed_difference']:+.2%} "
            f"({'within' if summary['agrees'] else 'OUTSIDE'} "
            f"−{summary['tolerance']:.1%}..+{summary['allowed_above']:.0%}); "
            f"price sources {pipe['price_sources']}"
        )
    print(f"report        {args.out}/report.json, {args.out}/report.md")
    return 0
