"""``pricewave catalog``: load a shop's catalog into the online store; export a scenario's catalog.

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["catalog", "load", "my_catalog.csv", "--profile", "redis"])
    >>> args.action, args.file, args.profile
    ('load', 'my_catalog.csv', 'redis')
    >>> args = build_parser().parse_args(["catalog", "export", "--scenario", "small", "--out", "c.csv"])
    >>> args.action, args.scenario, args.seed, args.out
    ('export', 'small', 7, 'c.csv')
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pricewave.commands.price import add_store_arguments
from pricewave.config import Settings

DEFAULT_SEED = 7
"""The seed ``pricewave quickstart`` streams the simulator with."""

_FORMAT = (
    "A catalog file has one row per sku and the columns of the sku_catalog schema (schemas/sku_catalog/): "
    "sku, base_price, cost, map_price (an empty cell: no minimum advertised price), ceiling_price, category "
    "and, optionally, event_time (epoch milliseconds or ISO 8601; without it a row becomes valid when it is "
    "loaded). CSV (.csv, header on line 1) or parquet (.parquet, .pq), by the file's suffix."
)


def register(subparsers: Any) -> None:
    """Add ``catalog`` to the CLI."""
    parser = subparsers.add_parser(
        "catalog",
        help="load a shop's catalog (CSV or parquet) into the online store, export a scenario's catalog",
        description=(
            "'load' checks a catalog file and writes it to the sku_catalog feature view of the online store; "
            "'export' writes a simulator scenario's catalog in the same format. " + _FORMAT
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    load = actions.add_parser(
        "load",
        help="check a catalog file and write it to the online store",
        description=(
            "Check every row of FILE against the sku_catalog schema, then write the catalog to the sku_catalog "
            "feature view of the configured online store (SQLite by default, Redis with --profile redis), where "
            "channels read the base price and the pricing job reads cost, MAP and ceiling. One bad row (a "
            "value the schema refuses, a missing value, a sku that repeats) stops the load before anything "
            "is written; the error lists the bad rows by line (CSV) or row (parquet) number. A row whose "
            "event_time is not newer than the stored one is left as it is. "
            + _FORMAT
            + " The feature repo must have been applied ('pricewave features apply')."
        ),
    )
    load.add_argument("file", metavar="FILE", help="the catalog: FILE.csv, FILE.parquet or FILE.pq")
    add_store_arguments(load)
    load.set_defaults(handler=run)

    export = actions.add_parser(
        "export",
        help="write a simulator scenario's catalog as a catalog file",
        description=(
            "Write the catalog of a simulator scenario (its skus, base prices, costs, MAP and ceilings) in "
            "the format 'pricewave catalog load' reads, e.g. as a template for your own. The seed draws the "
            "catalog, sku ids included: export with the seed the simulator streams with (pricewave simulate "
            f"--seed, default 0; pricewave quickstart streams with {DEFAULT_SEED}), or some clicked skus will "
            "have no catalog row. The file has no event_time column: the rows become valid when they are "
            "loaded. " + _FORMAT
        ),
    )
    export.add_argument(
        "--scenario", required=True, metavar="NAME|FILE.yaml", help="a shipped scenario name or a scenario file"
    )
    export.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        metavar="N",
        help=(
            f"the simulator seed; it draws the sku ids, so use the seed the simulator streams with "
            f"(default {DEFAULT_SEED}, the quickstart's)"
        ),
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write: FILE.csv or FILE.parquet")
    export.set_defaults(handler=run)


def load(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave catalog load``."""
    from pricewave.feature_store.catalog import VIEW, read_catalog, store_catalog
    from pricewave.feature_store.store import online_store_type, open_store

    records = read_catalog(args.file)  # every row checked before the store is even opened
    store = open_store(settings, repo_path=args.repo, profile=args.profile)
    result = store_catalog(store, records)
    message = (
        f"{VIEW}: {result.written} skus loaded into the {online_store_type(store)} online store ({store.repo_path})"
    )
    if result.stale:
        message += f"; {result.stale} not newer than the stored rows, left as they are"
    print(message)
    return 0


def export(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave catalog export``."""
    from pricewave.feature_store.catalog import VIEW, export_scenario_catalog

    count, name = export_scenario_catalog(settings, args.scenario, args.seed, Path(args.out))
    print(f"{VIEW}: {count} skus of scenario {name} (seed {args.seed}) written to {args.out}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave catalog``."""
    if args.action == "load":
        return load(args, settings)
    return export(args, settings)
