"""``pricewave profile``: a shopper's profile in the online store, shown or deleted on request.

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["profile", "delete", "--user", "alice"])
    >>> args.action, args.user
    ('delete', 'alice')
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pricewave.commands.price import add_store_arguments
from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.privacy import resolve_user_key

USER_VIEWS: tuple[str, ...] = ("shopper_profile", "user_session")
"""The per-user feature views: what a shopper's profile is in the online store."""


def register(subparsers: Any) -> None:
    """Add ``profile`` to the CLI."""
    parser = subparsers.add_parser(
        "profile",
        help="show or delete a shopper's profile in the online store",
        description=(
            "A shopper's profile is what the online store keeps per pseudonymous user: the shopper_profile "
            "view (their revealed price response over days) and the user_session view. 'show' prints it; "
            "'delete' removes it (a deletion on request) and prints what was removed. A raw user id given "
            "with --user is pseudonymized first (keyed hash, PRICEWAVE_USER_KEY_SECRET); it is never sent "
            "to the store. The running job keeps a shopper's clicks in its own state for the profile horizon "
            "(its --shopper-horizon, 7 days by default) and drops them after it: until then the shopper's next "
            "purchase pushes a profile that still counts them, and their offers are priced with them."
        ),
    )
    parser.add_argument("action", choices=("show", "delete"), help="show the profile, or delete it")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="RAW_ID", help="the shopper's raw user id (pseudonymized before use)")
    who.add_argument("--user-key", metavar="KEY", help="the shopper's pseudonymous 32-hex user key")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def show_profile(store: Any, user_key: str) -> dict[str, dict[str, Any] | None]:
    """Per user view, the stored features of ``user_key`` (None where the view has no row)."""
    out: dict[str, dict[str, Any] | None] = {}
    for view in USER_VIEWS:
        names = [field.name for field in store.get_feature_view(view).features]
        values = store.get_online_features(
            features=[f"{view}:{name}" for name in names], entity_rows=[{"user_key": user_key}]
        ).to_dict()
        row = {name: values[name][0] for name in names}
        out[view] = row if any(value is not None for value in row.values()) else None
    return out


def delete_profile(store: Any, user_key: str) -> dict[str, int]:
    """Delete ``user_key``'s rows of every per-user view; per view, 1 where a row existed, else 0."""
    from pricewave.feature_store import FeatureWriter

    writer = FeatureWriter(store)
    try:
        return {view: writer.delete(view, [[user_key]]) for view in USER_VIEWS}
    finally:
        writer.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave profile show|delete``."""
    from pricewave.feature_store.store import open_store

    user_key = resolve_user_key(args.user, args.user_key, settings.user_key_secret, names=("--user", "--user-key"))
    if user_key is None:  # argparse requires one of them
        raise ConfigError("give --user RAW_ID or --user-key KEY")
    store = open_store(settings, repo_path=args.repo, profile=args.profile)
    if args.action == "show":
        profile = show_profile(store, user_key)
        if args.json:
            print(json.dumps({"user_key": user_key, **profile}, default=str))
        else:
            for view, row in profile.items():
                print(f"{view}: " + ("none" if row is None else ", ".join(f"{k} {v}" for k, v in row.items())))
        return 0
    deleted = delete_profile(store, user_key)
    if args.json:
        print(json.dumps({"user_key": user_key, "deleted": deleted}))
    else:
        removed = [view for view, count in deleted.items() if count]
        print(f"user {user_key}: deleted {', '.join(removed)}" if removed else f"user {user_key}: no profile stored")
    return 0
