"""Each sku's published prices by event time: what the sku pricer's rate limit compares with.

The rate-limit guardrail bounds a sku price's change against the price published for the sku's
previous window. Reading that from ``sku_price`` (the latest price written) makes a price depend on
timing: after a restart, a replayed window finds the price of a LATER window priced before the
failure, and every price after it can differ from a fault-free run. The history keeps each
published (sku, window event time, price), and the pricer asks for the latest price strictly
BEFORE its window, which is the same in every run as long as a sku's windows are priced in event
time order (the job orders them). A replay records the same value again (idempotent).

The history lives beside the online store (a table in the SQLite file, a sorted set per sku in
Redis: :mod:`pricewave.feature_store.stores`), keeps ``retention_s`` of event time per sku, and
holds skus and prices only, no user data.

Example:
    >>> from pricewave.feature_store import open_store                      # doctest: +SKIP
    >>> history = PriceHistory(open_store())                                # doctest: +SKIP
    >>> history.record(["SKU-1"], [60_000], [9.99])                          # doctest: +SKIP
    >>> history.latest_before(["SKU-1", "SKU-1"], [60_000, 120_000])         # doctest: +SKIP
    [None, 9.99]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pricewave.errors import DataError
from pricewave.feature_store.stores import ops_for

if TYPE_CHECKING:
    from feast import FeatureStore

DEFAULT_RETENTION_S = 24 * 3600.0
"""Event time a sku's history spans: far more than a replay after a failure goes back."""


class PriceHistory:
    """The published sku prices of one online store, by event time.

    Args:
        store: An open FeatureStore (:func:`pricewave.feature_store.open_store`).
        retention_s: Entries older than this before a sku's newest entry are dropped.
    """

    def __init__(self, store: FeatureStore, retention_s: float = DEFAULT_RETENTION_S) -> None:
        self.store = store
        self.ops = ops_for(store)
        self.retention_ms = int(retention_s * 1000)

    def latest_before(self, skus: Sequence[str], event_ms: Sequence[int]) -> list[float | None]:
        """For each (sku, event time): the sku's price with the latest event time strictly before it.

        Args:
            skus: The skus.
            event_ms: Event times, epoch milliseconds, one per sku.

        Returns:
            One price per sku, ``None`` where nothing earlier is recorded.
        """
        _same_length(skus, event_ms)
        with self.ops.translate_errors(self.store):
            return self.ops.latest_prices_before(self.store, list(zip(skus, event_ms, strict=True)))

    def record(self, skus: Sequence[str], event_ms: Sequence[int], prices: Sequence[float]) -> None:
        """Record published prices; an entry with the same sku and event time is replaced.

        Raises:
            DataError: The sequences differ in length or a price is not a finite positive number.
        """
        rows = check_rows(skus, event_ms, prices)
        with self.ops.translate_errors(self.store):
            self.ops.record_prices(self.store, rows, self.retention_ms)


def check_rows(skus: Sequence[str], event_ms: Sequence[int], prices: Sequence[float]) -> list[tuple[str, int, float]]:
    """(sku, event ms, price) rows to record, checked.

    Raises:
        DataError: The sequences differ in length or a price is not a finite positive number.
    """
    _same_length(skus, event_ms, prices)
    bad = [price for price in prices if not (price > 0 and price != float("inf"))]
    if bad:
        raise DataError(f"price history: {len(bad)} prices are not finite positive numbers (first: {bad[0]!r})")
    return [(str(sku), int(ms), float(price)) for sku, ms, price in zip(skus, event_ms, prices, strict=True)]


def _same_length(*columns: Sequence[object]) -> None:
    if len({len(column) for column in columns}) > 1:
        raise DataError(f"price history: columns of different lengths {[len(column) for column in columns]}")
