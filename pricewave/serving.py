"""``pricewave serve``: the price API for sales channels, over HTTP.

Web, app and ad channels ask for the price to show with the same fallback, freshness, disclosure
and pseudonymization as :func:`pricewave.feature_store.get_price`, without starting Python, Feast
and the registry per read (the ``pricewave price`` CLI takes seconds for one):

* ``GET /price?sku=&user=&channel=``: one quote (``user`` is the raw shopper id, pseudonymized with
  the keyed hash here and never sent to the store; ``user_key`` takes an already pseudonymous key);
* ``POST /prices``: a batch (``{"channel": ..., "items": [{"sku": ..., "user": ...}, ...]}``), read
  with at most two online lookups (:func:`pricewave.feature_store.get_prices`);
* ``GET /health``: 200 while the online store answers, 503 with the reason when it does not;
* ``GET /metrics``: Prometheus text: quotes served per channel and source, request latency,
  errors per reason;
* ``GET /docs``: the OpenAPI docs (``/openapi.json``).

A quote with ``source: "unavailable"`` (nothing fresh stored) is a 200 answer, not an error: the
channel must not sell at a guessed price. Bad input is a 400 with one readable line; an online store
that cannot be reached is a 503.

Example:
    >>> from pricewave.config import load_settings
    >>> from pricewave.feature_store import open_store                     # doctest: +SKIP
    >>> app = create_app(open_store(), load_settings())                     # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, port=6570)                         # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from pricewave.config import Settings
from pricewave.errors import ConfigError, PricewaveError, StackError
from pricewave.feature_store.reader import CHANNELS, Channel, PriceQuote, PriceSource, get_prices
from pricewave.feature_store.store import online_store_type
from pricewave.privacy import resolve_user_key

if TYPE_CHECKING:
    from feast import FeatureStore

DEFAULT_PORT = 6570
MAX_BATCH = 1000
"""The most items one ``POST /prices`` may ask for."""


class Quote(BaseModel):
    """The price a channel shows (:class:`pricewave.feature_store.PriceQuote`)."""

    sku: str
    price: float | None = Field(description="the price to show; null when source is 'unavailable'")
    source: PriceSource = Field(
        description="offer (personalized), sku (dynamic, for everyone), base (catalog list price) or unavailable"
    )
    personalized: bool = Field(description="disclosure flag: true when the price was personalized for this shopper")
    age_s: float | None = Field(description="seconds since the price's event time")
    model_version: str | None
    user_key: str | None = Field(description="the pseudonymous key the lookup used (never the raw id)")


class PriceItem(BaseModel):
    """One item of a batch: a sku and, optionally, the shopper."""

    sku: str = Field(min_length=1)
    user: str | None = Field(default=None, description="the shopper's raw id (pseudonymized before lookup)")
    user_key: str | None = Field(default=None, description="the shopper's pseudonymous 32-hex key")


class PriceBatch(BaseModel):
    """``POST /prices``: up to :data:`MAX_BATCH` items for one channel."""

    channel: Channel | None = None
    items: list[PriceItem] = Field(max_length=MAX_BATCH)


class Quotes(BaseModel):
    """The answer to a batch: one quote per item, in the order asked."""

    quotes: list[Quote]


class Metrics:
    """The API's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.quotes = Counter(
            "pricewave_price_quotes",
            "Quotes served, per channel and price source (unavailable: nothing fresh stored).",
            ["channel", "source"],
            registry=self.registry,
        )
        self.errors = Counter(
            "pricewave_price_request_errors",
            "Requests answered with an error, per reason (bad_request, store_unavailable).",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pricewave_price_request_duration_seconds",
            "Time to answer a price request, per endpoint.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _quote(quote: PriceQuote) -> Quote:
    return Quote(**quote.to_dict())


def create_app(store: FeatureStore, settings: Settings, *, default_channel: str | None = None) -> FastAPI:
    """The price API over an open FeatureStore.

    Args:
        store: An open FeatureStore (:func:`pricewave.feature_store.open_store`).
        settings: Settings: the user-key secret pseudonymizes raw shopper ids.
        default_channel: The channel of requests that name none (``None``: every price view).

    Returns:
        A FastAPI app; serve it with uvicorn (``pricewave serve`` does).
    """
    if default_channel is not None and default_channel not in CHANNELS:
        raise ConfigError(f"unknown channel {default_channel!r}: channels are {list(CHANNELS)}")
    secret = settings.user_key_secret
    metrics = Metrics()
    app = FastAPI(
        title="pricewave price API",
        version="1",
        description=(
            "The price a sales channel shows: the shopper's fresh personalized offer, else the sku's fresh "
            "dynamic price, else the catalog base price, else 'unavailable'. Raw shopper ids are pseudonymized "
            "here (keyed hash) and never reach the store; personalized prices carry a disclosure flag."
        ),
    )

    @app.exception_handler(RequestValidationError)
    def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line instead of FastAPI's nested 422 document.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        return error_response(ConfigError(f"bad request: {problems}"))

    @contextmanager
    def answering(endpoint: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def error_response(exc: PricewaveError) -> JSONResponse:
        reason = "store_unavailable" if isinstance(exc, StackError) else "bad_request"
        metrics.errors.labels(reason).inc()
        return JSONResponse({"error": str(exc)}, status_code=503 if reason == "store_unavailable" else 400)

    def serve(endpoint: str, answer: Callable[[], Any]) -> Any:
        with answering(endpoint):
            try:
                return answer()
            except PricewaveError as exc:
                return error_response(exc)

    # Feast's SQLite online store keeps one connection for all threads. The endpoints run in a thread
    # pool, and on Python 3.12 two reads on one connection at once fail ("bad parameter or other API
    # misuse", 500s under load): on SQLite the reads take turns. Redis reads stay concurrent.
    store_access: AbstractContextManager[Any] = (
        threading.Lock() if online_store_type(store) == "sqlite" else nullcontext()
    )

    def quoted(requests: list[tuple[str, str | None]], channel: str | None) -> list[Quote]:
        channel = channel or default_channel
        with store_access:
            quotes = get_prices(store, requests, channel=channel)
        for quote in quotes:
            metrics.quotes.labels(channel or "all", quote.source).inc()
        return [_quote(quote) for quote in quotes]

    @app.get(
        "/price",
        response_model=Quote,
        responses={400: {"description": "bad input"}, 503: {"description": "online store unreachable"}},
    )
    def price(
        sku: Annotated[str, Query(min_length=1, description="the sku to price")],
        user: Annotated[str | None, Query(description="the shopper's raw id (pseudonymized before lookup)")] = None,
        user_key: Annotated[str | None, Query(description="the shopper's pseudonymous 32-hex key")] = None,
        channel: Annotated[Channel | None, Query(description="the sales channel (a Feast feature service)")] = None,
    ) -> Any:
        """The price to show for one sku (and shopper) on a channel."""
        return serve("price", lambda: quoted([(sku, resolve_user_key(user, user_key, secret))], channel)[0])

    @app.post(
        "/prices",
        response_model=Quotes,
        responses={400: {"description": "bad input"}, 503: {"description": "online store unreachable"}},
    )
    def prices(batch: PriceBatch) -> Any:
        """The prices to show for up to 1,000 items, one quote per item in the order asked."""

        def answer() -> Quotes:
            asked = [(item.sku, resolve_user_key(item.user, item.user_key, secret)) for item in batch.items]
            return Quotes(quotes=quoted(asked, batch.channel))

        return serve("prices", answer)

    @app.get("/health", responses={503: {"description": "online store unreachable"}})
    def health() -> Any:
        """200 while the online store answers a lookup; 503 with the reason when it does not."""

        def answer() -> dict[str, str]:
            get_prices(store, [("__health__", None)], channel=default_channel)
            return {"status": "ok", "online_store": store.config.online_store.type}

        return serve("health", answer)

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the API's metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
