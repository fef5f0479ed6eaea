"""``pricewave watch``: a live terminal table of the topics and the prices in them."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.kafka_io import make_consumer
from pricewave.monitor_view import TopicTally, render


def register(subparsers: Any) -> None:
    """Add ``watch`` to the CLI."""
    parser = subparsers.add_parser(
        "watch",
        help="live table of clicks, competitor prices, reviews, published prices and dead letters",
        description=(
            "Consume pricewave's topics (committed records only) and show, live, the records per topic "
            "and per sku: demand, the price shown, the cheapest competitor, our published price and the "
            "guardrail that shaped it. Stops after --duration seconds or on Ctrl-C."
        ),
    )
    parser.add_argument("--duration", type=float, default=0, help="seconds to watch (default 0: until Ctrl-C)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest records")
    parser.add_argument("--skus", type=int, default=15, help="how many skus to show (default 15)")
    parser.set_defaults(handler=run)


def watch(
    settings: Settings,
    *,
    duration_s: float,
    from_beginning: bool,
    max_skus: int,
    on_start: Callable[[], None] | None = None,
) -> TopicTally:
    """Consume and display until ``duration_s`` elapses (0: forever); returns the final tally.

    ``on_start`` runs once the consumer holds its partitions, so a producer started there loses
    nothing even when reading from the latest offsets.
    """
    tally = TopicTally(settings.topics)
    consumer = make_consumer(settings, settings.topics.all_names(), read_committed=True, from_beginning=from_beginning)
    while not consumer.assignment():
        for partition, records in consumer.poll(timeout_ms=250).items():
            for record in records:
                tally.add(partition.topic, record.value)
    for partition in consumer.assignment():
        consumer.position(partition)  # pin the starting offset before anything is produced
    if on_start is not None:
        on_start()
    # Wide enough for the price table when the output is not a terminal (logs, CI).
    console = Console() if Console().is_terminal else Console(width=170)
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    try:
        with Live(render(tally, max_skus=max_skus), console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                for partition, records in consumer.poll(timeout_ms=250).items():
                    for record in records:
                        tally.add(partition.topic, record.value)
                live.update(render(tally, max_skus=max_skus))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return tally


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave watch``."""
    if args.duration < 0:
        raise ConfigError("--duration must be >= 0")
    watch(settings, duration_s=args.duration, from_beginning=args.from_beginning, max_skus=args.skus)
    return 0
