"""``pricewave price``: the price a sales channel shows for a sku (and a shopper).

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["price", "--sku", "SKU-1", "--user", "alice", "--json"])
    >>> args.sku, args.user, args.json
    ('SKU-1', 'alice', True)
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pricewave.config import Settings
from pricewave.privacy import resolve_user_key


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--repo`` and ``--profile``, shared by the feature-store subcommands."""
    parser.add_argument(
        "--repo", metavar="DIR", help="the Feast feature repo (default: feature_repo/ of the pricewave checkout)"
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help=(
            "online store profile: 'sqlite' (default), 'redis', or a feature_store yaml path; default the "
            "store_profile setting (PRICEWAVE_STORE_PROFILE), else $FEAST_FS_YAML_FILE_PATH. Redis reads "
            "PRICEWAVE_REDIS__HOST/PORT and PRICEWAVE_REDIS_PASSWORD"
        ),
    )


def register(subparsers: Any) -> None:
    """Add ``price`` to the CLI."""
    from pricewave.feature_store.reader import CHANNELS

    parser = subparsers.add_parser(
        "price",
        help="show the price a channel would show for a sku (and shopper)",
        description=(
            "Look up the price for a sku the way a sales channel does: the shopper's personalized offer "
            "when fresh, else the sku's dynamic price, else the catalog base price. Prints the price, where "
            "it came from, the disclosure flag (personalized or not), its age and the model version. "
            "A raw user id given with --user is pseudonymized (keyed hash, PRICEWAVE_USER_KEY_SECRET) "
            "before any lookup; it is never sent to the store. Exit code 1 when no price is available."
        ),
    )
    parser.add_argument("--sku", required=True, help="the sku to price")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="RAW_ID", help="the shopper's raw user id (pseudonymized before lookup)")
    who.add_argument("--user-key", metavar="KEY", help="the shopper's pseudonymous 32-hex user key")
    parser.add_argument(
        "--channel", choices=CHANNELS, help="the sales channel (a Feast feature service); default: all price views"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def _describe(quote: Any) -> str:
    if quote.source == "unavailable":
        return f"sku {quote.sku}: no fresh price available (no offer, sku price or base price in the online store)"
    disclosure = "yes (disclose: personalized price)" if quote.personalized else "no"
    return "\n".join(
        [
            f"sku           {quote.sku}",
            f"price         {quote.price:.2f}",
            f"source        {quote.source}",
            f"personalized  {disclosure}",
            f"age           {quote.age_s:.1f} s",
            f"model         {quote.model_version or '-'}",
        ]
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave price``."""
    from pricewave.feature_store import get_price, open_store

    user_key = resolve_user_key(args.user, args.user_key, settings.user_key_secret, names=("--user", "--user-key"))
    store = open_store(settings, repo_path=args.repo, profile=args.profile)
    quote = get_price(store, args.sku, user_key=user_key, channel=args.channel)
    if args.json:
        print(json.dumps(quote.to_dict()))
    else:
        print(_describe(quote))
    return 0 if quote.source != "unavailable" else 1
