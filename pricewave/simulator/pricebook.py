"""The prices the simulated shop shows: the latest published sku price and per-user offers.

Fed from the ``prices`` topic by a background consumer (``read_committed``, so aborted
exactly-once transactions are never shown) or set directly in-process. A channel shows the
user's fresh offer, else the sku's dynamic price, else the list price. An update whose event
time is older than the stored one is ignored (the same rule as the online store).

Example:
    >>> book = PriceBook(offer_ttl_ms=60_000)
    >>> book.price_for("u" * 32, "A-1", list_price=10.0, now_ms=0)
    (10.0, 'list')
    >>> book.set_sku_price("A-1", 9.5, event_time=1_000)
    True
    >>> book.set_offer("u" * 32, "A-1", 9.0, event_time=2_000)
    True
    >>> book.price_for("u" * 32, "A-1", list_price=10.0, now_ms=30_000)
    (9.0, 'offer')
    >>> book.price_for("u" * 32, "A-1", list_price=10.0, now_ms=90_000)  # the offer went stale
    (9.5, 'sku')
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pricewave.config import Settings

PriceSource = Literal["offer", "sku", "list"]
PRICE_SOURCES: tuple[PriceSource, ...] = ("offer", "sku", "list")


@dataclass(frozen=True)
class PricePoint:
    """One published price and the event time of the input that triggered it (None: unknown)."""

    price: float
    event_time: int | None = None


def _valid_price(price: Any) -> bool:
    return isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price) and price > 0


class PriceBook:
    """Latest published prices, safe to update from one consumer thread while the simulator reads.

    Args:
        offer_ttl_ms: How long (simulated ms after its event time) an offer is shown; None: forever.
    """

    def __init__(self, offer_ttl_ms: int | None = None) -> None:
        self.offer_ttl_ms = offer_ttl_ms
        self._sku: dict[str, PricePoint] = {}
        self._offers: dict[tuple[str, str], PricePoint] = {}
        self._lock = threading.Lock()
        self.received = 0
        self.applied = 0
        self.rejected = 0
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- updates ----------------------------------------------------------------------------

    @staticmethod
    def _newer(current: PricePoint | None, event_time: int | None) -> bool:
        return current is None or current.event_time is None or event_time is None or event_time >= current.event_time

    def set_sku_price(self, sku: str, price: float, *, event_time: int | None = None) -> bool:
        """Set the dynamic price of ``sku`` for everyone; returns whether it was applied."""
        if not _valid_price(price):
            return False
        with self._lock:
            if not self._newer(self._sku.get(sku), event_time):
                return False
            self._sku[sku] = PricePoint(float(price), event_time)
        return True

    def set_offer(self, user_key: str, sku: str, price: float, *, event_time: int | None = None) -> bool:
        """Set a personalized offer for ``(user_key, sku)``; returns whether it was applied."""
        if not _valid_price(price):
            return False
        with self._lock:
            if not self._newer(self._offers.get((user_key, sku)), event_time):
                return False
            self._offers[(user_key, sku)] = PricePoint(float(price), event_time)
        return True

    def apply_decision(self, decision: Mapping[str, Any]) -> bool:
        """Apply one ``price_decision`` record (kind ``sku`` or ``offer``); returns whether applied."""
        kind, sku, price = decision.get("kind"), decision.get("sku"), decision.get("price")
        event_time = decision.get("event_time")
        if not isinstance(sku, str) or not (event_time is None or isinstance(event_time, int)):
            return False
        if kind == "sku":
            return self.set_sku_price(sku, price, event_time=event_time)  # type: ignore[arg-type]
        user_key = decision.get("user_key")
        if kind == "offer" and isinstance(user_key, str):
            return self.set_offer(user_key, sku, price, event_time=event_time)  # type: ignore[arg-type]
        return False

    def clear(self) -> None:
        """Forget every price."""
        with self._lock:
            self._sku.clear()
            self._offers.clear()

    # -- reads ------------------------------------------------------------------------------

    def sku_price(self, sku: str) -> float | None:
        """The latest dynamic price of ``sku``, or None."""
        point = self._sku.get(sku)
        return None if point is None else point.price

    def price_for(self, user_key: str, sku: str, list_price: float, now_ms: int) -> tuple[float, PriceSource]:
        """The price a user sees at simulated time ``now_ms`` and where it came from."""
        offer = self._offers.get((user_key, sku))
        if offer is not None and (
            self.offer_ttl_ms is None or offer.event_time is None or now_ms - offer.event_time <= self.offer_ttl_ms
        ):
            return offer.price, "offer"
        point = self._sku.get(sku)
        if point is not None:
            return point.price, "sku"
        return list_price, "list"

    def __len__(self) -> int:
        return len(self._sku) + len(self._offers)

    # -- Kafka ------------------------------------------------------------------------------

    def start_consumer(self, settings: Settings, topic: str | None = None, *, wait_caught_up_s: float = 10.0) -> bool:
        """Follow ``topic`` (default ``settings.topics.prices``) from its beginning in a thread.

        Only committed transactions are read. Blocks until what was in the topic at start has
        been applied (or ``wait_caught_up_s`` passed), so the first simulated views already see it.

        Returns:
            Whether the consumer caught up within the wait.
        """
        if self._thread is not None:
            raise RuntimeError("the price book already follows a topic")
        topic = topic or settings.topics.prices
        self._stop.clear()
        self.caught_up.clear()
        self._thread = threading.Thread(
            target=self._consume, args=(settings, topic), name=f"pricebook-{topic}", daemon=True
        )
        self._thread.start()
        self.caught_up.wait(wait_caught_up_s)
        if self._error is not None:
            raise self._error
        return self.caught_up.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the consumer thread (if any)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _consume(self, settings: Settings, topic: str) -> None:
        from kafka import TopicPartition

        from pricewave.kafka_io import make_consumer
        from pricewave.schemas import check_event

        try:
            consumer = make_consumer(settings, [], group_id=None, read_committed=True, from_beginning=True)
        except BaseException as exc:  # surfaced to start_consumer's caller
            self._error = exc
            self.caught_up.set()
            return
        try:
            partitions: list[TopicPartition] = []
            end_offsets: dict[TopicPartition, int] = {}
            started = time.monotonic()
            while not self._stop.is_set():
                if not partitions:
                    ids = consumer.partitions_for_topic(topic)
                    if not ids:  # the topic does not exist yet: nothing to catch up on
                        self.caught_up.set()
                        self._stop.wait(0.5)
                        continue
                    partitions = [TopicPartition(topic, p) for p in sorted(ids)]
                    consumer.assign(partitions)
                    consumer.seek_to_beginning(*partitions)
                    end_offsets = consumer.end_offsets(partitions)
                batches = consumer.poll(timeout_ms=200, max_records=5000)
                for records in batches.values():
                    for message in records:
                        self.received += 1
                        decision, _reason = check_event("price_decision", message.value)
                        if decision is not None and self.apply_decision(decision):
                            self.applied += 1
                        else:
                            self.rejected += 1
                if not self.caught_up.is_set():
                    positions_done = all(consumer.position(tp) >= end_offsets.get(tp, 0) for tp in partitions)
                    # Transaction markers occupy offsets too; an idle poll after a few seconds is enough.
                    if positions_done or (not batches and time.monotonic() - started > 3.0):
                        self.caught_up.set()
        except BaseException as exc:
            self._error = exc
            self.caught_up.set()
        finally:
            consumer.close()
