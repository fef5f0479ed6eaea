"""``pricewave validate``: check a JSON-lines file of events against a schema.

Each non-empty line is validated exactly as the pricing job validates a Kafka record value
(:func:`pricewave.schemas.check_event`); invalid lines are printed with their reason, then a
summary. Exit code 0 when every line is valid, 1 otherwise.

Example:
    >>> from pricewave.cli import build_parser
    >>> build_parser().parse_args(["validate", "--schema", "review", "reviews.jsonl"]).schema
    'review'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from tqdm import tqdm

from pricewave.config import Settings
from pricewave.errors import DataError
from pricewave.schemas import check_event, load_schema


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="check a JSON-lines file of events against an event schema",
        description=(
            "Validate every line of a JSON-lines file (or stdin with '-') against an event schema from "
            "schemas/, with the same checks the pricing job applies to Kafka records: size, strict UTF-8, "
            "strict JSON (no NaN, no duplicate keys), required fields, types, ranges, enums, patterns and "
            "timestamps. Prints 'line N: REASON' for each invalid line and a summary. "
            "Exit status: 0 all lines valid, 1 some line invalid, 2 usage error (unknown schema, missing file)."
        ),
    )
    parser.add_argument("--schema", required=True, metavar="NAME", help="schema name, e.g. click_event")
    parser.add_argument("--version", type=int, default=None, metavar="N", help="schema version (default: the latest)")
    parser.add_argument("file", metavar="FILE", help="JSON-lines file to check, or '-' for stdin")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    parser.add_argument(
        "--now-ms",
        type=int,
        default=None,
        metavar="MS",
        help="clock for the 'more than 1 day in the future' check, epoch millis (default: now)",
    )
    parser.set_defaults(handler=run)


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise DataError(f"input file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"input {path} is a directory, not a JSON-lines file") from None
    except PermissionError:
        raise DataError(f"input file {path} is not readable (permission denied)") from None
    with handle:
        yield handle


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the file; returns 0 when every line is valid, 1 otherwise."""
    schema = load_schema(args.schema, args.version)  # SchemaError names the known schemas
    valid = invalid = 0
    with _open_input(args.file) as handle:
        lines = tqdm(handle, desc=f"validate {schema.name}", unit=" lines", disable=not sys.stderr.isatty())
        for number, line in enumerate(lines, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            _, reason = check_event(schema.name, raw, now_ms=args.now_ms, version=schema.version)
            if reason is None:
                valid += 1
                continue
            invalid += 1
            if not args.quiet:
                print(f"line {number}: {reason}")
    total = valid + invalid
    print(f"{args.file}: {total} events, {valid} valid, {invalid} invalid (schema {schema.name} v{schema.version})")
    return 0 if invalid == 0 else 1
