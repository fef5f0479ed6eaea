"""``pricewave simulate``: run the market simulator into Kafka, or write its history to parquet.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> args = parser.parse_args(["simulate", "--scenario", "small", "--max-events", "300"])
    >>> args.scenario, args.max_events, args.closed_loop
    ('small', 300, True)
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pricewave.commands.arguments import non_negative_float, positive_float, positive_int, share
from pricewave.config import Settings
from pricewave.errors import ConfigError

_SHARES = ("out_of_order_share", "late_share", "duplicate_share", "malformed_share")


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the CLI."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the market simulator into Kafka (or write its history to parquet)",
        description=(
            "Simulates shoppers, competitors and reviews for a scenario and produces click, "
            "competitor-price and review events into the topics named in the settings, keyed by sku, "
            "with the scenario's share of late, out-of-order, duplicated and malformed events. In the "
            "closed loop (the default) shoppers see the prices the pipeline publishes on the prices "
            "topic and buy by the hidden demand model. Into Kafka the market runs live by default: its clock "
            "starts now and events are sent at their event time (--speedup F compresses time, --rate N paces "
            "by messages instead). Without --duration or --max-events it runs "
            "until Ctrl-C. Prints a summary (counts, purchases, revenue, margin, events/s) at the end."
        ),
    )
    parser.add_argument(
        "--scenario",
        default="default",
        metavar="NAME|FILE.yaml",
        help="shipped scenario (small, default, holiday_rush) or a scenario YAML file (default: default)",
    )
    parser.add_argument(
        "--clock",
        choices=["live", "scenario"],
        default="live",
        help="into Kafka: 'live' (default) starts the simulated clock at the wall clock, so channels and the "
        "monitor see fresh prices; 'scenario' keeps the scenario's clock.start (reproducible dates). "
        "--history-out always uses the scenario's clock",
    )
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument(
        "--speedup",
        type=positive_float,
        metavar="F",
        help="pace by the simulated clock, F times faster than the wall clock (default 1: wall speed, the "
        "scenario's own traffic). Above 1 event times run ahead of the wall clock: the job dead-letters "
        "records more than its --max-record-skew (60 s) ahead of the time they were sent",
    )
    pacing.add_argument(
        "--rate",
        type=positive_float,
        metavar="N",
        help="pace by messages instead: N per second (token bucket), the simulated clock running as fast as that "
        "makes it (load tests, backfills)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help="stop after S seconds: wall-clock seconds into Kafka, simulated seconds with --history-out",
    )
    parser.add_argument(
        "--max-events",
        type=positive_int,
        metavar="N",
        help="stop after N messages (with --history-out: N clean events)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="K", help="random seed: same seed and prices, same events (default 0)"
    )
    parser.add_argument(
        "--heartbeat",
        type=non_negative_float,
        default=1.0,
        metavar="S",
        help="into Kafka: every S simulated seconds a heartbeat (schemas/heartbeat) to every partition of the "
        "competitor-price and review topics, so their few records do not hold the job's windows back until its "
        "idle timeout (default 1; 0: none)",
    )
    parser.add_argument(
        "--no-closed-loop",
        dest="closed_loop",
        action="store_false",
        help="do not read published prices: shoppers always see list prices",
    )
    parser.add_argument(
        "--history-out",
        metavar="DIR",
        help="write parquet history (events, shown prices, outcomes, catalog) to DIR instead of producing to Kafka",
    )
    for fault in _SHARES:
        flag = "--" + fault.replace("_", "-")
        parser.add_argument(flag, type=share, metavar="X", help=f"override the scenario's faults.{fault} (0..1)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.set_defaults(handler=run)


def _print_summary(summary: dict[str, Any], as_json: bool, history: bool = False) -> None:
    if as_json:
        print(json.dumps(summary, sort_keys=True))
        return
    if not history:
        rate, elapsed = summary["events_per_s"], summary["elapsed_s"]
        beats = f"; heartbeats {summary['heartbeats']:,}" if summary["heartbeats"] else ""
        print(f"messages      {summary['messages']:,} ({rate:,.0f}/s over {elapsed:.1f} s){beats}")
    counts = ", ".join(f"{name} {count:,}" for name, count in summary["source_events"].items())
    types = ", ".join(f"{name} {count:,}" for name, count in summary["event_types"].items())
    print(f"events        {counts or 'none'}")
    print(f"click types   {types or 'none'}")
    print(
        f"faults        duplicates {summary['duplicates']:,}, late {summary['late']:,}, "
        f"out-of-order {summary['out_of_order']:,}, malformed {summary['malformed']:,}"
    )
    print(
        f"market        sessions {summary['sessions']:,}, views {summary['views']:,}, "
        f"purchases {summary['purchases']:,} (conversion {summary['conversion']:.2%}), units {summary['units']:,}"
    )
    print(
        f"money         revenue {summary['revenue']:,.2f}, margin {summary['margin']:,.2f}, "
        f"regret vs oracle {summary['regret']:.1%} (vs best sku price {summary['sku_regret']:.1%})"
    )
    sources = ", ".join(f"{name} {count:,}" for name, count in summary["price_sources"].items())
    read = "" if history else f"; published prices read {summary['prices_received']:,}"
    print(f"prices shown  {sources or 'none'}{read}")
    if summary["delivery_errors"]:
        print(f"warning       {summary['delivery_errors']:,} messages were not delivered")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave simulate``."""
    from pricewave.simulator.runner import Simulator, live_clock_start
    from pricewave.simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    overrides = {fault: getattr(args, fault) for fault in _SHARES if getattr(args, fault) is not None}
    faults = None
    if overrides:
        merged = {**scenario.faults.model_dump(), **overrides}
        if merged["out_of_order_share"] + merged["late_share"] + merged["malformed_share"] > 1:
            raise ConfigError("--out-of-order-share + --late-share + --malformed-share must not exceed 1")
        faults = scenario.faults.model_validate(merged)
    live = args.clock == "live" and not args.history_out
    simulator = Simulator(
        scenario, settings, seed=args.seed, faults=faults, clock_start_ms=live_clock_start() if live else None
    )
    if args.history_out:
        if args.duration is None and args.max_events is None:
            raise ConfigError("--history-out needs --max-events N or --duration S (simulated seconds)")
        paths = simulator.write_history(
            args.history_out, n_events=args.max_events, duration_s=args.duration, progress=args.progress
        )
        _print_summary(simulator.summary.to_dict(), args.json, history=True)
        if not args.json:
            print(f"history       {', '.join(str(path) for path in paths.values())}")
        return 0
    from pricewave.kafka_io import ensure_topics

    ensure_topics(settings, settings.topics.input_names())
    summary = simulator.run_to_kafka(
        rate=args.rate,
        speedup=None if args.rate else (args.speedup or 1.0),
        duration_s=args.duration,
        max_events=args.max_events,
        closed_loop=args.closed_loop,
        progress=args.progress,
        heartbeat_s=args.heartbeat or None,
    )
    _print_summary(summary.to_dict(), args.json)
    return 0 if summary.delivery_errors == 0 else 1
