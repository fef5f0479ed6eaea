"""``pricewave topics``: create and list pricewave's Kafka topics."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from pricewave.config import Settings
from pricewave.kafka_io import ensure_topics, make_admin


def register(subparsers: Any) -> None:
    """Add ``topics`` to the CLI."""
    parser = subparsers.add_parser(
        "topics",
        help="create or list pricewave's Kafka topics",
        description=(
            "Topic names and partition counts come from the settings (section 'topics'; e.g. "
            "PRICEWAVE_TOPICS__CLICKS, PRICEWAVE_TOPICS__PARTITIONS). 'create' makes the missing ones, "
            "each kept for topics.retention_ms (7 days) except the dead-letter topic, kept for "
            "topics.dlq_retention_ms (3 days): it holds rejected records as a producer sent them (raw "
            "user ids in user fields replaced by their pseudonyms, but free text may still name a "
            "person), so it keeps them no longer than needed to inspect and replay them. An existing "
            "topic keeps its retention. 'list' shows each with its partitions and end offsets."
        ),
    )
    parser.add_argument("action", choices=["create", "list"], help="what to do")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave topics``."""
    if args.action == "create":
        created = ensure_topics(settings)
        print(f"created: {', '.join(created) if created else 'none (all exist)'}")
        if settings.topics.dlq in created:
            days = settings.topics.dlq_retention_ms / 86_400_000
            print(f"dead letters ({settings.topics.dlq}) are kept {days:g} days (topics.dlq_retention_ms)")
        return 0
    admin = make_admin(settings)
    try:
        names = settings.topics.all_names()
        existing = set(admin.list_topics())
        described = {t["topic"]: t for t in admin.describe_topics([n for n in names if n in existing])}
    finally:
        admin.close()
    table = Table(title=f"topics on {settings.kafka.bootstrap_servers}")
    for column in ("role", "topic", "partitions"):
        table.add_column(column)
    roles = ("clicks", "competitor_prices", "reviews", "prices", "dlq")
    for role, name in zip(roles, names, strict=True):
        partitions = len(described[name]["partitions"]) if name in described else "missing"
        table.add_row(role, name, str(partitions))
    Console().print(table)
    return 0 if all(name in described for name in names) else 1
