"""``pricewave kafka TOOL [ARGS...]``: Apache Kafka's console tools against the configured brokers.

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["kafka", "topics", "--describe", "--topic", "prices"])
    >>> args.tool, args.tool_args
    ('topics', ['--describe', '--topic', 'prices'])
"""

from __future__ import annotations

import argparse
from typing import Any

from pricewave.config import Settings
from pricewave.stack.kafka_tools import TOOLS, run_tool


def register(subparsers: Any) -> None:
    """Add ``kafka`` to the CLI."""
    tools = "; ".join(f"'{name}' ({tool.summary})" for name, tool in TOOLS.items())
    parser = subparsers.add_parser(
        "kafka",
        help="Kafka's console tools (topics, console-consumer, consumer-groups, ...) against the configured brokers",
        description=(
            f"Run one of Apache Kafka's own console tools from the stack's jars (resolved by Maven like the "
            f"local broker's): {tools}. Everything after TOOL goes to the tool unchanged (its own --help "
            f"lists its options). --bootstrap-server is added from the settings (kafka.bootstrap, else the "
            f"local broker) unless given; TLS and SASL settings (kafka.security_protocol, kafka.ssl_ca_location, "
            f"PRICEWAVE_KAFKA_USERNAME / PRICEWAVE_KAFKA_PASSWORD) go to the tool in a private properties file. "
            f"Examples: 'pricewave kafka topics --describe --topic prices'; "
            f"'pricewave kafka console-consumer --topic prices --from-beginning --max-messages 5'; "
            f"'pricewave kafka consumer-groups --describe --group pricewave-pricing'."
        ),
    )
    parser.add_argument("tool", choices=list(TOOLS), help="which tool")
    parser.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARGS", help="the tool's own arguments")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave kafka``: the tool's exit code."""
    return run_tool(settings, args.tool, args.tool_args)
