"""The dashboard's HTTP server (stdlib ``http.server``, one thread per connection).

Routes:

* ``/``, ``/static/...``: the page and its assets (uPlot vendored under ``static/vendor``);
* ``/api/snapshot[?sku=S]``: every panel as JSON;
* ``/api/events[?sku=S]``: the same snapshot as server-sent events, one per poll;
* ``/metrics``: the figures in Prometheus' text format;
* ``/healthz``: ``ok``.

Example:
    >>> from pricewave.config import load_settings
    >>> from pricewave.monitor.core import Monitor
    >>> server = make_server(Monitor(load_settings(env={})), host="127.0.0.1", port=0)
    >>> server.server_address[0]
    '127.0.0.1'
    >>> server.server_close()
"""

from __future__ import annotations

import json
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from pricewave.monitor.core import Monitor
from pricewave.monitor.metrics import CONTENT_TYPE, render_metrics

STATIC_DIR = Path(__file__).resolve().parent / "static"


class MonitorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its :class:`Monitor`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], monitor: Monitor) -> None:
        self.monitor = monitor
        super().__init__(address, MonitorHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class MonitorHandler(BaseHTTPRequestHandler):
    """Serves the page, the JSON API, the event stream and /metrics."""

    server: MonitorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the dashboard polls a lot
        return

    def _send(self, status: int, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        sku = query.get("sku", [None])[0] or None
        monitor = self.server.monitor
        if url.path in ("/", "/index.html"):
            self._static("index.html")
        elif url.path.startswith("/static/"):
            self._static(url.path.removeprefix("/static/"))
        elif url.path == "/api/snapshot":
            body = json.dumps(monitor.snapshot(sku), allow_nan=False).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif url.path == "/api/events":
            self._events(sku)
        elif url.path == "/metrics":
            self._send(HTTPStatus.OK, render_metrics(monitor.snapshot()).encode(), CONTENT_TYPE)
        elif url.path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _static(self, relative: str) -> None:
        path = (STATIC_DIR / relative).resolve()
        if not path.is_file() or STATIC_DIR not in path.parents:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/javascript":
            content_type += "; charset=utf-8"
        self._send(HTTPStatus.OK, path.read_bytes(), content_type, cache="vendor" in path.parts)

    def _events(self, sku: str | None) -> None:
        """One ``snapshot`` event per poll until the client goes away or the monitor stops."""
        monitor = self.server.monitor
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        version = -1
        try:
            while not monitor.stopped.is_set():
                payload = json.dumps(monitor.snapshot(sku), allow_nan=False)
                self.wfile.write(f"retry: 2000\nevent: snapshot\ndata: {payload}\n\n".encode())
                self.wfile.flush()
                version = monitor.wait_for_update(version if version >= 0 else monitor.version, monitor.refresh_s * 3)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return


def make_server(monitor: Monitor, *, host: str = "127.0.0.1", port: int = 8050) -> MonitorServer:
    """Bind the dashboard's server (``port=0``: any free port); call ``serve_forever`` to run it."""
    return MonitorServer((host, port), monitor)
