"""A live terminal view of what flows through pricewave's topics.

:class:`TopicTally` folds records from the input, ``prices`` and ``dlq`` topics into per-sku
figures; :func:`render` draws them as a rich table. ``pricewave watch`` and ``pricewave quickstart``
use both.

Example:
    >>> from pricewave.config import load_settings
    >>> tally = TopicTally(load_settings(env={}).topics)
    >>> from pricewave.kafka_io import encode_json
    >>> tally.add("clicks", encode_json({"event_id": "e1", "event_type": "view", "user_key": "0" * 32,
    ...     "session_id": "s", "sku": "A1", "price_seen": 9.5, "channel": "web", "event_time": 1767225600000}))
    >>> tally.add("clicks", b'{"sku": "A1", "price_seen": NaN}')  # malformed: counted, not shown
    >>> tally.skus["A1"].views, tally.skus["A1"].last_price_seen, tally.unparsed
    (1, 9.5, 1)
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table

from pricewave.config import TopicSettings
from pricewave.schemas import check_event


@dataclass
class SkuFigures:
    """What the view knows about one sku."""

    views: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    last_price_seen: float | None = None
    competitor_prices: dict[str, float] = field(default_factory=dict)
    published_price: float | None = None
    guardrail: str | None = None
    offers: int = 0
    last_offer: float | None = None
    last_offer_user: str | None = None  # the pseudonymous key the last offer was made for
    last_offer_time: int = 0  # its event time (epoch ms)
    published_time: int = 0  # the event time of the latest sku price
    mean_rating: float | None = None
    reviews: int = 0

    @property
    def competitor_min(self) -> float | None:
        return min(self.competitor_prices.values()) if self.competitor_prices else None


class TopicTally:
    """Running figures over the records seen so far."""

    def __init__(self, topics: TopicSettings) -> None:
        self.topics = topics
        self.started = time.monotonic()
        self.counts: Counter[str] = Counter()
        self.skus: dict[str, SkuFigures] = {}
        self.dead_letter_reasons: deque[str] = deque(maxlen=5)
        self.unparsed = 0
        self.offers_seen = 0
        self._schemas = {
            topics.clicks: "click_event",
            topics.competitor_prices: "competitor_price",
            topics.reviews: "review",
            topics.prices: "price_decision",
        }

    def _sku(self, record: dict[str, Any]) -> SkuFigures | None:
        sku = record.get("sku")
        if not isinstance(sku, str):
            return None
        return self.skus.setdefault(sku, SkuFigures())

    def add(self, topic: str, value: bytes) -> None:
        """Fold one record in. Records that do not parse are counted, never fatal."""
        self.counts[topic] += 1
        if topic == self.topics.dlq:
            try:
                self.dead_letter_reasons.append(str(json.loads(value)["reason"])[:80])
            except (ValueError, KeyError, TypeError):
                self.unparsed += 1
            return
        schema = self._schemas.get(topic)
        if schema is not None:
            # Malformed input (NaN prices, wrong types) is the dead-letter path's business:
            # the view counts it and shows only what the pipeline would accept.
            record, _reason = check_event(schema, value)
        else:
            try:
                record = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                record = None
        if not isinstance(record, dict):
            self.unparsed += 1
            return
        figures = self._sku(record)
        if figures is None:
            self.unparsed += 1
            return
        try:
            self._fold(topic, record, figures)
        except (TypeError, ValueError):
            self.unparsed += 1

    def _fold(self, topic: str, record: dict[str, Any], figures: SkuFigures) -> None:
        if topic == self.topics.clicks:
            kind = record.get("event_type")
            price = float(record["price_seen"])
            figures.last_price_seen = price
            if kind == "view":
                figures.views += 1
            elif kind == "add_to_cart":
                figures.carts += 1
            elif kind == "purchase":
                figures.purchases += 1
                figures.revenue += price * int(record.get("quantity") or 1)
        elif topic == self.topics.competitor_prices:
            if record.get("in_stock", True):
                figures.competitor_prices[str(record["competitor"])] = float(record["price"])
            else:
                figures.competitor_prices.pop(str(record["competitor"]), None)
        elif topic == self.topics.reviews:
            rating = float(record["rating"])
            figures.reviews += 1
            previous = figures.mean_rating or 0.0
            figures.mean_rating = previous + (rating - previous) / figures.reviews
        elif topic == self.topics.prices:
            if record.get("kind") == "offer":
                figures.offers += 1
                figures.last_offer = float(record["price"])
                figures.last_offer_user = record.get("user_key")
                figures.last_offer_time = int(record.get("event_time") or 0)
                self.offers_seen += 1
            else:
                figures.published_price = float(record["price"])
                figures.published_time = int(record.get("event_time") or 0)
                figures.guardrail = record.get("guardrail")

    def rate(self, topic: str) -> float:
        """Records per second on ``topic`` since the view started."""
        return self.counts[topic] / max(time.monotonic() - self.started, 1e-9)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def render(tally: TopicTally, *, max_skus: int = 15) -> Group:
    """The live view: topic rates, then the busiest skus with their prices."""
    topics = Table(title="topics", expand=False)
    for column in ("topic", "records", "per s"):
        topics.add_column(column, justify="right" if column != "topic" else "left")
    for name in tally.topics.all_names():
        topics.add_row(name, f"{tally.counts[name]:,}", f"{tally.rate(name):,.1f}")

    skus = Table(title=f"prices by sku (busiest {max_skus})")
    columns = (
        "sku",
        "views",
        "carts",
        "buys",
        "revenue",
        "price seen",
        "competitor min",
        "our price",
        "guardrail",
        "offers",
        "last offer",
    )
    for column in columns:
        skus.add_column(column, justify="left" if column in ("sku", "guardrail") else "right")
    busiest = sorted(tally.skus.items(), key=lambda item: -(item[1].views + item[1].purchases))[:max_skus]
    for sku, fig in busiest:
        skus.add_row(
            sku,
            str(fig.views),
            str(fig.carts),
            str(fig.purchases),
            _money(fig.revenue),
            _money(fig.last_price_seen),
            _money(fig.competitor_min),
            _money(fig.published_price),
            fig.guardrail or "-",
            str(fig.offers),
            _money(fig.last_offer),
        )
    parts: list[Any] = [topics, skus]
    if tally.dead_letter_reasons:
        parts.append("latest dead-letter reasons: " + " | ".join(tally.dead_letter_reasons))
    return Group(*parts)
