"""Running figures over the prices, dead-letter and competitor-price topics, for the dashboard.

:class:`StreamTally` extends :class:`pricewave.monitor_view.TopicTally` (per-sku figures, counts)
with what the web dashboard shows: price updates per minute, event→price latency percentiles
(``decision_time − event_time`` of each price decision), guardrail hits by rule, the fallback
(kill switch), exploration (a price other than the model's best shown) and personalized shares, the
model version in use, dead letters by reason (``late`` counted apart) and a bounded price history per sku.

Example:
    >>> from pricewave.config import load_settings
    >>> tally = StreamTally(load_settings(env={}).topics)
    >>> tally.add("prices", b'{"kind": "sku", "sku": "A1", "price": 9.5, "guardrails": ["floor"],'
    ...           b' "guardrail": "floor", "propensity": 1, "personalized": false, "model_version": "m1",'
    ...           b' "decision_time": 1700000000300, "event_time": 1700000000000}')
    >>> figures = tally.price_figures()
    >>> figures["total"], figures["guardrail_hits"], figures["latency_ms"]["p50"]
    (1, {'floor': 1}, 300.0)
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, deque
from typing import Any

from pricewave.config import TopicSettings
from pricewave.monitor_view import TopicTally
from pricewave.pricing.exploration import EXPLORED_BELOW_PROPENSITY

KILL_SWITCH = "kill_switch"
LATE_REASON = "late"
# Decision ids remembered to recognise a decision delivered again (~100 bytes each: ~50 MB at most).
MAX_REMEMBERED_DECISIONS = 500_000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 1]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


def reason_code(reason: str) -> str:
    """The stable code of a dead-letter reason: the part before the first colon."""
    return reason.split(":", 1)[0].strip() or "unknown"


class StreamTally(TopicTally):
    """TopicTally plus the price and dead-letter figures of the dashboard.

    Decisions are counted once each, by ``decision_id``: the prices topic can hold a decision
    more than once (the job run again over input it had already priced, e.g. from the earliest
    offsets, or two jobs writing one topic), and a decision's id is a function of what it
    decides (:func:`udfs.pricing.decision_id`). A record whose id was already folded in is
    counted as ``redelivered`` (and in ``counts``) and changes no other figure. The last
    ``remembered_decisions`` ids are remembered.

    Args:
        topics: Topic names (which topic is prices, dlq, ...).
        history_points: Price points kept per sku and series (oldest dropped first).
        latency_samples: Latency samples kept for the percentiles (the most recent ones).
        remembered_decisions: Decision ids remembered to recognise a redelivery.
    """

    def __init__(
        self,
        topics: TopicSettings,
        *,
        history_points: int = 600,
        latency_samples: int = 20_000,
        remembered_decisions: int = MAX_REMEMBERED_DECISIONS,
    ) -> None:
        super().__init__(topics)
        self.remembered_decisions = remembered_decisions
        self.decision_ids: set[str] = set()
        self.decision_order: deque[str] = deque()
        self.redelivered = 0
        self.dead_letter_reasons = deque(maxlen=20)
        self.history_points = history_points
        self.price_total = 0
        self.price_by_kind: Counter[str] = Counter()
        self.guardrail_hits: Counter[str] = Counter()
        self.fallbacks = 0
        self.explorations = 0
        self.personalized = 0
        self.model_versions: Counter[str] = Counter()
        self.model_version: str | None = None
        self.latencies_ms: deque[float] = deque(maxlen=latency_samples)
        self.price_arrivals: deque[float] = deque()
        self.dead_letters_total = 0
        self.dead_letters_late = 0
        self.dead_letters_by_reason: Counter[str] = Counter()
        self.dead_letters_by_source: Counter[str] = Counter()
        self.latest_dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        # sku -> series name ("ours" or a competitor) -> (time ms, price) points
        self.history: dict[str, dict[str, deque[tuple[int, float]]]] = {}

    # -- folding ------------------------------------------------------------------------------

    def add(self, topic: str, value: bytes) -> None:
        """Fold one record in; malformed records are counted (``unparsed``), never fatal."""
        if topic == self.topics.dlq:
            self._add_dead_letter(value)
            return
        if topic == self.topics.prices and self._seen_before(value):
            self.counts[topic] += 1
            self.redelivered += 1
            return
        super().add(topic, value)
        if topic not in (self.topics.prices, self.topics.competitor_prices):
            return
        try:
            record = json.loads(value)
            if not isinstance(record, dict) or not isinstance(record.get("sku"), str):
                return
            if topic == self.topics.prices:
                self._add_price(record)
            else:
                self._add_competitor_price(record)
        except (ValueError, TypeError, KeyError):
            return  # already counted as unparsed by TopicTally

    def _seen_before(self, value: bytes) -> bool:
        """True when this price record's ``decision_id`` was folded in already; remembers it otherwise.

        A record without a usable id is never a redelivery (it is folded, or counted as unparsed).
        """
        try:
            record = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return False
        decision_id = record.get("decision_id") if isinstance(record, dict) else None
        if not isinstance(decision_id, str) or not decision_id:
            return False
        if decision_id in self.decision_ids:
            return True
        self.decision_ids.add(decision_id)
        self.decision_order.append(decision_id)
        if len(self.decision_order) > self.remembered_decisions:
            self.decision_ids.discard(self.decision_order.popleft())
        return False

    def _points(self, sku: str, series: str) -> deque[tuple[int, float]]:
        return self.history.setdefault(sku, {}).setdefault(series, deque(maxlen=self.history_points))

    def _add_price(self, record: dict[str, Any]) -> None:
        price = float(record["price"])
        kind = str(record.get("kind") or "sku")
        self.price_total += 1
        self.price_by_kind[kind] += 1
        self.price_arrivals.append(time.monotonic())
        rules = record.get("guardrails")
        if not isinstance(rules, list):
            rules = [record["guardrail"]] if record.get("guardrail") else []
        for rule in rules:
            self.guardrail_hits[str(rule)] += 1
        if KILL_SWITCH in rules or record.get("guardrail") == KILL_SWITCH:
            self.fallbacks += 1
        propensity = record.get("propensity")
        if isinstance(propensity, int | float) and propensity < EXPLORED_BELOW_PROPENSITY:
            self.explorations += 1  # showed a price other than the greedy one
        if record.get("personalized") is True:
            self.personalized += 1
        version = record.get("model_version")
        if isinstance(version, str):
            self.model_versions[version] += 1
            self.model_version = version
        decision_time, event_time = record.get("decision_time"), record.get("event_time")
        if isinstance(decision_time, int | float) and isinstance(event_time, int | float):
            self.latencies_ms.append(float(decision_time - event_time))
        if kind == "sku":
            when = int(decision_time) if isinstance(decision_time, int | float) else int(time.time() * 1000)
            self._points(record["sku"], "ours").append((when, price))

    def _add_competitor_price(self, record: dict[str, Any]) -> None:
        if record.get("in_stock", True) is False:
            return
        when = record.get("event_time")
        if isinstance(when, int | float):
            self._points(record["sku"], str(record["competitor"])).append((int(when), float(record["price"])))

    def _add_dead_letter(self, value: bytes) -> None:
        self.counts[self.topics.dlq] += 1
        self.dead_letters_total += 1
        try:
            record = json.loads(value)
            reason = str(record["reason"])
        except (ValueError, KeyError, TypeError):
            self.unparsed += 1
            self.dead_letters_by_reason["unparsed"] += 1
            return
        code = reason_code(reason)
        self.dead_letters_by_reason[code] += 1
        if code == LATE_REASON:
            self.dead_letters_late += 1
        self.dead_letters_by_source[str(record.get("source_topic"))] += 1
        self.dead_letter_reasons.append(reason[:80])
        self.latest_dead_letters.append(
            {
                "reason": reason[:200],
                "source_topic": record.get("source_topic"),
                "partition": record.get("partition"),
                "offset": record.get("offset"),
                "dead_letter_time": record.get("dead_letter_time"),
            }
        )

    # -- figures ------------------------------------------------------------------------------

    def updates_per_minute(self, now: float | None = None) -> int:
        """Price records that arrived in the last 60 seconds."""
        now = time.monotonic() if now is None else now
        while self.price_arrivals and self.price_arrivals[0] < now - 60:
            self.price_arrivals.popleft()
        return len(self.price_arrivals)

    def price_figures(self) -> dict[str, Any]:
        """The price panel: counts, latency percentiles, guardrails, shares, model version."""
        total = self.price_total
        latencies = list(self.latencies_ms)

        def share(count: int) -> float | None:
            return round(count / total, 6) if total else None

        return {
            "total": total,
            "redelivered": self.redelivered,
            "by_kind": dict(self.price_by_kind),
            "updates_per_minute": self.updates_per_minute(),
            "latency_ms": {
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
                "samples": len(latencies),
            },
            "guardrail_hits": dict(self.guardrail_hits.most_common()),
            "fallback_share": share(self.fallbacks),
            "exploration_share": share(self.explorations),
            "personalized_share": share(self.personalized),
            "model_version": self.model_version,
            "model_versions": dict(self.model_versions.most_common()),
        }

    def dead_letter_figures(self) -> dict[str, Any]:
        """The dead-letter panel: totals, late ones, counts by reason code and the latest reasons."""
        return {
            "total": self.dead_letters_total,
            "late": self.dead_letters_late,
            "by_reason": dict(self.dead_letters_by_reason.most_common()),
            "by_source": dict(self.dead_letters_by_source.most_common()),
            "latest": list(reversed(self.latest_dead_letters)),
        }

    def busiest_skus(self, limit: int = 50) -> list[str]:
        """Skus with a price history, the most price points first."""
        sizes = {sku: sum(len(points) for points in series.values()) for sku, series in self.history.items()}
        return [sku for sku, _ in sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:limit]]

    def sku_series(self, sku: str) -> dict[str, Any]:
        """One sku's price lines aligned on a shared time axis (seconds), each value carried forward.

        Returns:
            ``{"sku", "x": [t, ...], "series": [{"label", "values": [...]}, ...]}``, our price first.
        """
        lines = self.history.get(sku, {})
        names = (["ours"] if "ours" in lines else []) + sorted(name for name in lines if name != "ours")
        times = sorted({when for name in names for when, _ in lines[name]})
        series = []
        for name in names:
            points = sorted(lines[name])
            values: list[float | None] = []
            index, current = 0, None
            for when in times:
                while index < len(points) and points[index][0] <= when:
                    current = points[index][1]
                    index += 1
                values.append(current)
            series.append({"label": "our price" if name == "ours" else name, "values": values})
        return {"sku": sku, "x": [when / 1000 for when in times], "series": series}
