"""``pricewave monitor``: the stream monitoring dashboard on localhost (see :mod:`pricewave.monitor`)."""

from __future__ import annotations

import argparse
from typing import Any

from pricewave.config import Settings
from pricewave.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``monitor`` to the CLI."""
    parser = subparsers.add_parser(
        "monitor",
        help="web dashboard: pipeline health, consumer lag, dead letters, prices, feature freshness",
        description=(
            "Serve a live dashboard (server-sent events, charts drawn by the vendored uPlot, no internet needed): "
            "the pricing job's health from Flink's REST API (state, restarts, checkpoints, backpressure, records "
            "per operator, watermark lag), the job's consumer lag per topic and partition, dead letters by reason, "
            "price figures (updates per minute, event->price latency p50/p99, guardrail hits, fallback, "
            "exploration and personalized shares, model version, our price vs competitors per sku) and the "
            "online store's feature freshness. Prometheus metrics at /metrics."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    parser.add_argument("--group", default="pricewave-pricing", help="the job's consumer group (for the lag)")
    parser.add_argument("--job", metavar="JOB_ID", help="the Flink job to follow (default: the active pricing job)")
    parser.add_argument("--refresh", type=float, default=2.0, metavar="S", help="seconds between updates (default 2)")
    parser.add_argument(
        "--backfill",
        type=int,
        default=1000,
        metavar="N",
        help="records per partition read back at start (default 1000)",
    )
    parser.add_argument("--from-beginning", action="store_true", help="read the topics from their first record")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave monitor``: serve until Ctrl-C."""
    from pricewave.monitor import Monitor, make_server

    if args.refresh <= 0 or args.backfill < 0 or not 0 <= args.port <= 65535:
        raise ConfigError("--refresh must be > 0, --backfill >= 0 and --port in 0..65535")
    monitor = Monitor(
        settings,
        group_id=args.group,
        job_id=args.job,
        backfill=None if args.from_beginning else args.backfill,
        refresh_s=args.refresh,
    )
    try:
        server = make_server(monitor, host=args.host, port=args.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port") from None
    monitor.start()
    print(f"pricewave monitor on {server.url}  (Flink Web UI: {settings.flink.rest_url}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop()
        server.server_close()
    return 0
