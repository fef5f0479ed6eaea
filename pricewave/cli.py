"""The ``pricewave`` command line.

Each subcommand lives in its own module under :mod:`pricewave.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function taking
``(args, settings)`` and returning an exit code.

Example:
    >>> from pricewave.cli import build_parser
    >>> build_parser().parse_args(["stack", "status"]).command
    'stack'
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pricewave.config import load_settings, mask_secrets
from pricewave.errors import PricewaveError

# Subcommand modules, in the order `pricewave --help` lists them.
COMMAND_MODULES = [
    "stack",
    "topics",
    "kafka",
    "simulate",
    "heartbeat",
    "replay",
    "validate",
    "watch",
    "quickstart",
    "reviews",
    "features",
    "catalog",
    "price",
    "profile",
    "serve",
    "jobs",
    "monitor",
    "train",
    "evaluate",
    "evaluate_real",
    "audit",
]


def version() -> str:
    """The installed pricewave version (from the package metadata; ``unknown`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("pricewave")
    except PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one readable line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"pricewave: error: {mask_secrets(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = _Parser(
        prog="pricewave",
        description=(
            "Real-time, personalized e-commerce pricing on Kafka, PyFlink and Feast. "
            "Settings come from --config FILE (or PRICEWAVE_CONFIG) and PRICEWAVE_<SECTION>__<FIELD> "
            "environment variables."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (default: $PRICEWAVE_CONFIG)")
    parser.add_argument("--version", action="version", version=f"pricewave {version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what pricewave does to stderr: -v info, -vv debug (also the libraries'); default: warnings",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"pricewave.commands.{name}")
        module.register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Log to stderr: pricewave's own loggers at WARNING, INFO (``-v``) or DEBUG (``-vv``).

    Other libraries (Kafka client, Feast, uvicorn) stay at WARNING unless ``-vv``. A root logger that
    already has handlers (a test runner's) is left as it is; only the levels are set.
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 2 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pricewave").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = load_settings(args.config)
        return int(args.handler(args, settings) or 0)
    except PricewaveError as exc:
        print(f"pricewave: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pricewave: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
