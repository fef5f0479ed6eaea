"""``pricewave features``: apply the Feast feature repo and push feature rows to the online store.

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["features", "push", "--view", "sku_catalog", "--file", "c.parquet"])
    >>> args.action, args.view, args.batch_size
    ('push', 'sku_catalog', 5000)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pricewave.commands.price import add_store_arguments
from pricewave.config import Settings
from pricewave.errors import DataError


def register(subparsers: Any) -> None:
    """Add ``features`` to the CLI."""
    parser = subparsers.add_parser(
        "features",
        help="apply the Feast feature repo, push feature rows to the online store",
        description=(
            "'apply' runs 'feast apply' in the feature repo with the chosen profile (registers entities, "
            "feature views and channel feature services; creates online tables). 'push' writes a parquet "
            "file to a feature view through pricewave's ordered, batched writer: an older event time never "
            "overwrites a newer one and pushing the same file twice changes nothing. 'serve' runs 'feast serve' "
            "(HTTP: POST /get-online-features) on the chosen profile, with the Redis address and password from "
            "pricewave's settings. Feast does not apply a view's ttl to online reads: a channel reading this way "
            "must check each value's event timestamp itself (pricewave price does)."
        ),
    )
    parser.add_argument("action", choices=["apply", "push", "serve"], help="what to do")
    parser.add_argument("--view", help="push: the feature view to write, e.g. sku_catalog")
    parser.add_argument("--file", metavar="F.parquet", help="push: the parquet file of rows")
    parser.add_argument("--batch-size", type=int, default=5000, help="push: rows per write (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="serve: the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6566, help="serve: the HTTP port (default 6566)")
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def _feast_command(settings: Settings, repo: str | None, profile: str | None) -> tuple[Path, dict[str, str]]:
    """The repo to run ``feast`` in and its environment: the chosen profile, the Redis address and password."""
    from pricewave.feature_store.store import (
        PROFILE_ENV,
        default_repo_path,
        feast_environment,
        load_repo_config,
        profile_path,
    )

    repo_path = Path(repo).expanduser().resolve() if repo else default_repo_path(settings)
    load_repo_config(repo_path, profile, settings)  # a clear error before Feast's traceback
    env = feast_environment(settings)
    env[PROFILE_ENV] = str(profile_path(repo_path, profile or settings.store_profile or None))
    return repo_path, env


def apply(settings: Settings, repo: str | None, profile: str | None) -> int:
    """Run ``feast apply`` for the repo with the profile, its output on the terminal; returns 0."""
    from pricewave.feature_store.store import apply_repo

    repo_path, _ = _feast_command(settings, repo, profile)  # a clear error for a bad repo or profile first
    apply_repo(repo_path, settings, profile, show_output=True)
    return 0


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Become ``feast serve`` on the profile (this process is replaced; it does not return).

    Replaced, not a child: a SIGTERM from a service manager or a test (or Ctrl-C) reaches the
    server itself. As a child it outlived its parent and kept the port (seen in CI: a stopped
    ``pricewave features serve`` left ``feast serve`` running on 6566).
    """
    from pricewave.feature_store.store import feast_executable

    repo_path, env = _feast_command(settings, args.repo, args.profile)
    command = [feast_executable(), "serve", "--host", args.host, "--port", str(args.port)]
    print(f"feast serve on http://{args.host}:{args.port} ({env['FEAST_FS_YAML_FILE_PATH']})", flush=True)
    os.chdir(repo_path)
    os.execve(command[0], command, env)


def push(settings: Settings, args: argparse.Namespace) -> int:
    """Write a parquet file to a feature view in batches, with a progress bar."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from pricewave.feature_store import FeatureWriter, open_store

    if not args.view or not args.file:
        raise DataError("'features push' needs --view VIEW and --file F.parquet")
    if args.batch_size < 1:
        raise DataError("--batch-size must be at least 1")
    path = Path(args.file)
    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid & co for non-parquet files
        raise DataError(f"{path} is not a readable parquet file: {exc}") from None
    writer = FeatureWriter(open_store(settings, repo_path=args.repo, profile=args.profile))
    totals = {"received": 0, "written": 0, "stale": 0, "collapsed": 0}
    with tqdm(total=parquet.metadata.num_rows, unit="row", desc=f"push {args.view}", disable=None) as bar:
        for batch in parquet.iter_batches(batch_size=args.batch_size):
            result = writer.write(args.view, batch)
            for name in totals:
                totals[name] += getattr(result, name)
            bar.update(batch.num_rows)
    print(
        f"{args.view}: {totals['received']} rows read, {totals['written']} written, "
        f"{totals['stale']} not newer than the store, {totals['collapsed']} superseded within a batch"
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave features``."""
    if args.action == "apply":
        return apply(settings, args.repo, args.profile)
    if args.action == "serve":
        return serve(settings, args)
    return push(settings, args)
