"""``pricewave serve``: the price API for sales channels (see :mod:`pricewave.serving`).

Example:
    >>> from pricewave.cli import build_parser
    >>> args = build_parser().parse_args(["serve", "--port", "0", "--channel", "app_pricing"])
    >>> args.port, args.channel
    (0, 'app_pricing')
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from pricewave.commands.price import add_store_arguments
from pricewave.config import Settings
from pricewave.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``serve`` to the CLI."""
    from pricewave.feature_store.reader import CHANNELS
    from pricewave.serving import DEFAULT_PORT

    parser = subparsers.add_parser(
        "serve",
        help="HTTP price API for sales channels (GET /price, POST /prices, /health, /metrics, /docs)",
        description=(
            "Serve the prices channels show over HTTP: GET /price?sku=&user=&channel= answers with the shopper's "
            "fresh personalized offer, else the sku's fresh dynamic price, else the catalog base price, else "
            "'unavailable' (the same as 'pricewave price', without its start-up per read). POST /prices takes a "
            "batch of up to 1,000 items. A raw id given as 'user' is pseudonymized here (keyed hash, "
            "PRICEWAVE_USER_KEY_SECRET) and never reaches the store; personalized prices carry a disclosure flag. "
            "GET /health is 503 while the online store cannot be reached; GET /metrics is Prometheus text; "
            "GET /docs is the OpenAPI documentation."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--channel", choices=CHANNELS, help="channel of requests that name none (default: every price view)"
    )
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a ConfigError that says what to do."""
    if not 0 <= port <= 65535:
        raise ConfigError("--port must be in 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve --host {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None
    sock.listen(2048)
    return sock


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``pricewave serve``: serve until Ctrl-C."""
    import uvicorn

    from pricewave.feature_store import open_store
    from pricewave.serving import create_app

    # Started while the store is down, it answers /health with 503 until the store is back.
    store = open_store(settings, repo_path=args.repo, profile=args.profile, tolerate_outage=True)
    app = create_app(store, settings, default_channel=args.channel)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"pricewave serve on http://{shown}:{port}  (online store: {store.config.online_store.type}; "
        f"docs: /docs; Ctrl-C stops)",
        flush=True,
    )
    verbose = getattr(args, "verbose", 0)
    # -v: uvicorn's start-up lines and one access line per request, on stderr.
    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose > 0)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
