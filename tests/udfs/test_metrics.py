"""The pricers' Flink metrics: what one batch counts, and what Flink's own Prometheus reporter exposes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pricewave.pricing.exploration import EXPLORED_BELOW_PROPENSITY
from pricewave.pricing.guardrails import GUARDRAIL_NAMES
from udfs.metrics import DecisionMetrics


class RecordingGroup:
    """A metric group that keeps what a UDF registers (the shape of PyFlink's ``MetricGroup``)."""

    def __init__(self, path: tuple[str, ...] = ()) -> None:
        self.path = path
        self.counters: dict[tuple[str, ...], Any] = {}
        self.gauges: dict[tuple[str, ...], Any] = {}
        self.root = self

    def add_group(self, name: str, extra: str | None = None) -> RecordingGroup:
        child = RecordingGroup((*self.path, name, *([extra] if extra else [])))
        child.root = self.root
        return child

    def counter(self, name: str) -> Any:
        counter = type("Counter", (), {"count": 0, "inc": lambda self, n=1: setattr(self, "count", self.count + n)})()
        self.root.counters[(*self.path, name)] = counter
        return counter

    def gauge(self, name: str, read: Any) -> None:
        self.root.gauges[(*self.path, name)] = read


class Context:
    def __init__(self) -> None:
        self.group = RecordingGroup()

    def get_metric_group(self) -> RecordingGroup:
        return self.group


def decided(rows: list[tuple[tuple[str, ...], float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["guardrails", "propensity", "personalized"])


def test_a_batch_is_counted_by_kind_of_outcome() -> None:
    context = Context()
    metrics = DecisionMetrics(context, "OfferPricer", lambda: None, lambda: 3)
    batch = decided(
        [
            (("kill_switch",), 1.0, False),
            (("floor", "max_change"), 1.0, True),
            ((), EXPLORED_BELOW_PROPENSITY / 2, True),
            ((), EXPLORED_BELOW_PROPENSITY, False),  # not below: the model's best
        ]
    )
    metrics.record(batch, event_ms=[1_000, 1_000, 2_000, 3_000], now_ms=4_000)
    metrics.record(decided([]), event_ms=[], now_ms=5_000)  # an empty batch changes nothing
    counters = {path: counter.count for path, counter in context.group.counters.items()}
    assert counters[("pricewave", "OfferPricer", "decisions")] == 4
    assert counters[("pricewave", "OfferPricer", "kill_switch")] == 1
    assert counters[("pricewave", "OfferPricer", "explored")] == 1
    assert counters[("pricewave", "OfferPricer", "personalized")] == 2
    hits = {path[3]: n for path, n in counters.items() if path[-1] == "guardrail_hits"}
    assert set(hits) == set(GUARDRAIL_NAMES)  # one counter per rule
    assert hits["floor"] == hits["max_change"] == hits["kill_switch"] == 1 and sum(hits.values()) == 3
    gauges = {path[-1]: read() for path, read in context.group.gauges.items()}
    assert gauges["event_to_decision_ms_max"] == 3_000 and gauges["event_to_decision_ms_p50"] == 2_500
    assert gauges["model_age_s"] == -1  # no model: the kill switch prices
    assert gauges["model_load_failures"] == 3


def test_the_model_age_gauge_reads_the_serving_model() -> None:
    context = Context()
    artifact = type("Artifact", (), {"age_s": lambda self: 42.7})()
    DecisionMetrics(context, "SkuPricer", lambda: artifact)
    gauges = {path[-1]: read() for path, read in context.group.gauges.items()}
    assert gauges["model_age_s"] == 42


def test_without_a_metric_group_the_counts_are_kept_but_nothing_registers() -> None:
    metrics = DecisionMetrics(None, "SkuPricer", lambda: None)
    metrics.record(decided([(("ceiling",), 1.0, False)]), event_ms=[10], now_ms=20)
    assert metrics.decisions == 1 and metrics.guardrail_hits["ceiling"] == 1 and metrics.latency_ms(99) == 10
