"""``pricewave evaluate-real``: price response on real transactions (Ta Feng), vs a naive baseline.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> args = parser.parse_args(["evaluate-real", "ta-feng", "--out", "/tmp/real", "--limit", "100"])
    >>> args.dataset, args.out, args.limit
    ('ta-feng', '/tmp/real', 100)
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pricewave.commands.arguments import positive_int
from pricewave.config import Settings


def register(subparsers: Any) -> None:
    """Add ``evaluate-real`` to the CLI."""
    parser = subparsers.add_parser(
        "evaluate-real",
        help="fit per-product price response on real transactions and score a held-out month",
        description=(
            "Ta Feng grocery transactions: per-product log-log regression of daily quantity on daily mean "
            "unit price with a pooled prior, fitted on the first three months, predicting the last month's "
            "daily quantities; MAE/RMSE vs a per-product-mean baseline and the share of negative "
            "elasticities go to DIR/report.json. Age group and pin code are never used."
        ),
    )
    parser.add_argument("dataset", choices=["ta-feng"], help="the data set")
    parser.add_argument("--out", required=True, metavar="DIR", help="where report.json goes")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the N products with most sales days")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave evaluate-real``."""
    from pricewave.evaluation import evaluate_ta_feng

    report = evaluate_ta_feng(settings, args.out, limit=args.limit, progress=args.progress)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    model, baseline = report["model"], report["baseline"]
    print(
        f"products      {report['products']:,} (held-out days {report['held_out_days']:,}, {report['held_out_month']})"
    )
    print(f"model         MAE {model['mae']:.3f}, RMSE {model['rmse']:.3f}")
    print(f"baseline      MAE {baseline['mae']:.3f}, RMSE {baseline['rmse']:.3f} (per-product mean)")
    print(f"elasticity    {report['negative_elasticity_share']:.1%} negative, pooled {report['pooled_elasticity']:.2f}")
    print(f"report        {args.out}/report.json")
    return 0
