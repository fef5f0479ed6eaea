"""The stream monitoring dashboard (``pricewave monitor``): pipeline health, lag, dead letters, prices.

* :mod:`~pricewave.monitor.tally`: running figures over the prices / dlq / competitor topics;
* :mod:`~pricewave.monitor.sources`: Flink REST, Kafka offsets and online-store freshness;
* :mod:`~pricewave.monitor.core`: :class:`Monitor`, the threads that keep the figures fresh;
* :mod:`~pricewave.monitor.server`: the HTTP server (page, JSON, server-sent events, /metrics);
* :mod:`~pricewave.monitor.metrics`: the Prometheus text format.

Example:
    >>> from pricewave.config import load_settings
    >>> from pricewave.monitor import Monitor, make_server
    >>> server = make_server(Monitor(load_settings(env={})).start(), port=0)  # doctest: +SKIP
    >>> server.serve_forever()                                                # doctest: +SKIP
"""

from pricewave.monitor.core import Monitor
from pricewave.monitor.metrics import render_metrics
from pricewave.monitor.server import MonitorServer, make_server
from pricewave.monitor.tally import StreamTally, percentile

__all__ = ["Monitor", "MonitorServer", "StreamTally", "make_server", "percentile", "render_metrics"]
