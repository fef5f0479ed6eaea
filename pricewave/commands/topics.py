"""``pricewave topics``: create and list pricewave's Kafka topics, and measure how late their input arrives."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from pricewave.commands.arguments import non_negative_float, positive_int, share
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
            "topic keeps its retention. 'list' shows each with its partitions and end offsets. 'lateness' "
            "reads the last --records of every partition of the input topics and reports how far each "
            "record's event time lies behind the newest one before it on its partition (what the job calls "
            "late at --out-of-orderness or more), the share late at the given bound, and the smallest bound "
            "that keeps the late share under --late-share: the job's --out-of-orderness sized on the input."
        ),
    )
    parser.add_argument("action", choices=["create", "list", "lateness"], help="what to do")
    parser.add_argument(
        "--records", type=positive_int, default=10_000, metavar="N", help="lateness: the last N of each partition"
    )
    parser.add_argument(
        "--out-of-orderness",
        type=non_negative_float,
        default=None,
        metavar="S",
        help="lateness: the bound to report the late share at (default: the job's --out-of-orderness, 5)",
    )
    parser.add_argument(
        "--late-share",
        type=share,
        default=0.001,
        metavar="X",
        help="lateness: the late share the recommended bound keeps under (default 0.001)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave topics``."""
    if args.action == "lateness":
        if args.out_of_orderness is None:
            from pricewave.job.options import JobOptions  # the job's default (imported only here: pyflink)

            args.out_of_orderness = JobOptions().out_of_orderness_s
        return lateness(settings, args.records, args.out_of_orderness, args.late_share)
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
    for role, name in zip(settings.topics.ROLES, names, strict=True):
        partitions = len(described[name]["partitions"]) if name in described else "missing"
        table.add_row(role, name, str(partitions))
    Console().print(table)
    return 0 if all(name in described for name in names) else 1


def lateness(settings: Settings, records: int, out_of_orderness_s: float, target_share: float) -> int:
    """``pricewave topics lateness``: measured lateness per input topic and the bound it calls for."""
    import numpy as np

    from pricewave.kafka_io import read_partition_tails
    from pricewave.lateness import late_share, lateness_ms, recommended_out_of_orderness_s

    table = Table(title=f"lateness of the last {records:,} records per partition (event time behind the newest before)")
    for column in ("topic", "records", "p50 ms", "p99 ms", "p99.9 ms", "max ms", f"late at {out_of_orderness_s:g} s",
                   f"bound for <= {target_share:.2%} late"):  # fmt: skip
        table.add_column(column, justify="left" if column == "topic" else "right")
    recommended = []
    for topic in settings.topics.input_names():
        parts = []
        for values in read_partition_tails(settings, topic, records).values():
            times = [t for t in map(_event_time_ms, values) if t is not None]
            parts.append(lateness_ms(times))
        measured = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if measured.size == 0:
            table.add_row(topic, "0", "-", "-", "-", "-", "-", "-")
            continue
        bound = recommended_out_of_orderness_s(measured, target_share)
        recommended.append(bound)
        quantiles = [f"{np.percentile(measured, q):,.0f}" for q in (50, 99, 99.9)]
        table.add_row(topic, f"{measured.size:,}", *quantiles, f"{measured.max():,}",
                      f"{late_share(measured, out_of_orderness_s):.3%}", f"{bound:g} s")  # fmt: skip
    Console().print(table)
    if recommended:
        print(f"recommended: --out-of-orderness {max(recommended):g} (every input topic under {target_share:.2%} late)")
    else:
        print("no records with an event time in the input topics yet")
    return 0


def _event_time_ms(value: bytes | None) -> int | None:
    """A record's ``event_time`` (heartbeats included: they move the watermark too), None if it has none."""
    import json

    try:
        event_time = json.loads(value or b"").get("event_time")
    except (ValueError, AttributeError):
        return None
    return event_time if isinstance(event_time, int) and not isinstance(event_time, bool) else None
