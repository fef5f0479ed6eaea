"""``pricewave heartbeat``: keep the quiet input topics' watermarks moving, for producers that cannot.

A shop's competitor-price crawler or review service may go minutes without a record. The pricing
job's watermark is the minimum over every partition of every input, so such a partition holds every
sku window back until its next record, or until the job's idle timeout declares it idle (and an
idle timeout makes prices depend on timing: a replay does not see the same watermarks). A heartbeat
(``schemas/heartbeat``) on each partition moves it deterministically: it is in the log, so a replay
sees it too. Producers that can should send their own (:func:`pricewave.kafka_io.send_heartbeats`
after their records); this command sends them on the wall clock for those that cannot.

Example:
    pricewave heartbeat                                  # competitor prices and reviews, every second
    pricewave heartbeat --topics reviews --every 5 --lag 2
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pricewave.commands.arguments import non_negative_float, positive_float
from pricewave.config import Settings, TopicSettings
from pricewave.errors import ConfigError, StackError

ROLES = TopicSettings.INPUT_ROLES


def register(subparsers: Any) -> None:
    """Add ``heartbeat`` to the CLI."""
    parser = subparsers.add_parser(
        "heartbeat",
        help="send heartbeats on quiet input topics so the pricing job's windows close on time",
        description=(
            "Every S seconds, a heartbeat record (schemas/heartbeat) stamped with the wall clock minus --lag to "
            "every partition of the named input topics, until Ctrl-C or --duration. The job's watermark moves "
            "with it like with any record, and the job drops it (no feature, no dead letter). Run it beside "
            "producers that send few records and no heartbeats of their own. --lag must cover how long such a "
            "producer takes from stamping a record to sending it, beyond the job's out-of-orderness (5 s): a "
            "record older than a heartbeat minus the out-of-orderness is late (dead-lettered)."
        ),
    )
    parser.add_argument(
        "--topics",
        default="competitor_prices,reviews",
        metavar="ROLES",
        help=f"comma list of input roles ({', '.join(ROLES)}; default competitor_prices,reviews)",
    )
    parser.add_argument("--every", type=positive_float, default=1.0, metavar="S", help="seconds between rounds (1)")
    parser.add_argument(
        "--lag", type=non_negative_float, default=0.0, metavar="S", help="stamp the wall clock minus S seconds (0)"
    )
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    parser.set_defaults(handler=run)


def topics_of(settings: Settings, roles: str) -> list[str]:
    """The topic names of a comma list of input roles.

    Raises:
        ConfigError: A role that is not an input topic's.

    Example:
        >>> from pricewave.config import load_settings
        >>> topics_of(load_settings(env={}), "reviews")
        ['reviews']
    """
    names = [role.strip() for role in roles.split(",") if role.strip()]
    unknown = [role for role in names if role not in ROLES]
    if unknown or not names:
        raise ConfigError(f"--topics: {', '.join(unknown) or 'none given'}; choose from {', '.join(ROLES)}")
    return [getattr(settings.topics, role) for role in names]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave heartbeat``."""
    from kafka.errors import KafkaTimeoutError

    from pricewave.kafka_io import make_admin, make_producer, send_heartbeats

    topics = topics_of(settings, args.topics)
    # Never a topic auto-created by a heartbeat (one partition, the broker's defaults).
    admin = make_admin(settings)
    try:
        missing = sorted(set(topics) - set(admin.list_topics()))
    finally:
        admin.close()
    if missing:
        raise StackError(
            f"topic {', '.join(missing)} does not exist on {settings.kafka.bootstrap_servers}: create the topics "
            "first ('pricewave topics create')"
        )
    producer = make_producer(settings, max_block_ms=15_000)  # a broker gone: an error in 15 s, not 60
    started = time.monotonic()
    rounds = sent = 0
    print(
        f"heartbeats every {args.every:g} s to {', '.join(topics)} on {settings.kafka.bootstrap_servers} "
        f"(stamped {args.lag:g} s behind the wall clock); Ctrl-C stops",
        flush=True,
    )
    try:
        while args.duration is None or time.monotonic() - started < args.duration:
            stamp_ms = int((time.time() - args.lag) * 1000)
            for topic in topics:
                try:
                    sent += send_heartbeats(producer, topic, stamp_ms, "pricewave-heartbeat")
                except KafkaTimeoutError:
                    raise StackError(
                        f"no partitions of topic {topic} from {settings.kafka.bootstrap_servers} within 15 s: "
                        "check the broker ('pricewave stack status')"
                    ) from None
            producer.flush(timeout=10)
            rounds += 1
            time.sleep(max(0.0, started + rounds * args.every - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        producer.close(timeout=10)
    print(f"sent {sent:,} heartbeats in {rounds:,} rounds")
    return 0
