"""The job's own Flink metrics: business figures of the pricers and the online store's health.

Registered in a UDF's ``open()`` on Flink's metric group, so they travel the way Flink's built-in
metrics do: the REST API (``/jobs/<id>/vertices/<id>/subtasks/metrics``, what ``pricewave monitor``
reads), the Web UI, and every configured reporter. Through the Prometheus reporter a pricer's
counter ``decisions`` becomes ``flink_taskmanager_job_task_operator_pricewave_decisions{pricewave="SkuPricer"}``
(``pricewave`` is a key-value group: the key joins the name, the value becomes a label), which is what
``deploy/monitoring/`` (Grafana dashboard, alert rules) queries.

Counters count decisions the pricer made in this attempt of the job: Flink resets them on a restart
(Prometheus' ``rate()`` and ``increase()`` handle resets), and a replay after a restore counts again.

A ``function_context`` without metrics (a unit test's ``None``) registers nothing, and recording
then does nothing.

Example:
    >>> import pandas as pd
    >>> metrics = DecisionMetrics(None, "SkuPricer", lambda: None)
    >>> decided = pd.DataFrame({"guardrails": [("floor",)], "propensity": [1.0], "personalized": [False]})
    >>> metrics.record(decided, event_ms=[1_000], now_ms=1_500)
    >>> metrics.decisions, metrics.guardrail_hits["floor"], metrics.latency_ms(99)
    (1, 1, 500)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pricewave.pricing.exploration import EXPLORED_BELOW_PROPENSITY
from pricewave.pricing.guardrails import GUARDRAIL_NAMES

KILL_SWITCH = "kill_switch"
# How many recent decisions the latency gauges summarize (per worker).
LATENCY_WINDOW = 2048


def metric_group(function_context: object, what: str) -> Any | None:
    """``pricewave.<what>`` on the UDF's metric group, or None without one (a unit test)."""
    if not hasattr(function_context, "get_metric_group"):
        return None
    return function_context.get_metric_group().add_group("pricewave", what)


def register_store_metrics(function_context: object, what: str, outage: Any, writer: Any = None) -> None:
    """Flink metrics of one worker's use of the online store, under ``pricewave.<what>``.

    ``store_down`` (1 while the store does not answer), ``store_outages`` (outages seen),
    ``store_failed_tries``; with a buffered writer also ``store_backlog_rows`` (rows kept for the
    store, newest per key) and ``store_rows_dropped`` (rows given up). They are gauges read when
    Flink reports (REST, Web UI, Prometheus), so an outage shows on the dashboards a team already has.
    """
    group = metric_group(function_context, what)
    if group is None:
        return
    group.gauge("store_down", lambda: int(outage.down))
    group.gauge("store_outages", lambda: int(outage.outages))
    group.gauge("store_failed_tries", lambda: int(outage.failed_tries))
    if writer is not None:
        group.gauge("store_backlog_rows", lambda: int(writer.pending))
        group.gauge("store_rows_dropped", lambda: int(writer.dropped))


class DecisionMetrics:
    """A pricer's business metrics, updated once per batch of decisions.

    Counters: ``decisions``, ``kill_switch`` (priced at base by the kill switch), ``explored``
    (a price shown with propensity below ``EXPLORED_BELOW_PROPENSITY``: exploration, not the model's
    best), ``personalized``, and ``guardrail_hits`` per rule (group ``rule``, one per name in
    ``GUARDRAIL_NAMES``; PyFlink reports a Python counter once it has been incremented, so a rule
    never hit in this attempt has no series yet).
    Gauges: ``event_to_decision_ms_p50`` / ``_p99`` / ``_max`` over the worker's last
    ``LATENCY_WINDOW`` decisions (decision time minus the event time it priced), ``model_age_s``
    (-1 without a model) and ``model_load_failures``.

    Args:
        function_context: The UDF's ``open()`` argument.
        what: The pricer's name (the ``pricewave`` label).
        artifact: Returns the model serving now (or None).
        load_failures: Returns how many model versions failed to load so far.
    """

    def __init__(
        self,
        function_context: object,
        what: str,
        artifact: Callable[[], Any],
        load_failures: Callable[[], int] = lambda: 0,
    ) -> None:
        self.decisions = self.kill_switch = self.explored = self.personalized = 0
        self.guardrail_hits = dict.fromkeys(GUARDRAIL_NAMES, 0)
        self._lags_ms: deque[int] = deque(maxlen=LATENCY_WINDOW)
        self._artifact = artifact
        self._counters: dict[str, Any] = {}
        group = metric_group(function_context, what)
        if group is None:
            return
        for name in ("decisions", "kill_switch", "explored", "personalized"):
            self._counters[name] = group.counter(name)
        for rule in GUARDRAIL_NAMES:
            self._counters[f"rule:{rule}"] = group.add_group("rule", rule).counter("guardrail_hits")
        group.gauge("event_to_decision_ms_p50", lambda: self.latency_ms(50))
        group.gauge("event_to_decision_ms_p99", lambda: self.latency_ms(99))
        group.gauge("event_to_decision_ms_max", lambda: self.latency_ms(100))
        group.gauge("model_age_s", self.model_age_s)
        group.gauge("model_load_failures", lambda: int(load_failures()))

    def record(self, decided: pd.DataFrame, event_ms: Any, now_ms: int) -> None:
        """Count one batch of :meth:`PricingPolicy.decide` output, priced at ``now_ms``.

        Args:
            decided: The decisions (``guardrails``, ``propensity``, ``personalized`` columns).
            event_ms: The event time each decision priced (epoch ms), in the same order.
            now_ms: The decision time (epoch ms).
        """
        if decided.empty:
            return
        rules = decided["guardrails"].tolist()
        propensity = pd.to_numeric(decided["propensity"], errors="coerce").to_numpy(dtype=float)
        increments = {
            "decisions": len(decided),
            "kill_switch": sum(KILL_SWITCH in applied for applied in rules),
            "explored": int(np.sum(propensity < EXPLORED_BELOW_PROPENSITY)),
            "personalized": int(decided["personalized"].fillna(False).astype(bool).sum()),
        }
        for name, count in increments.items():
            setattr(self, name, getattr(self, name) + count)
            self._inc(name, count)
        for applied in rules:
            for rule in applied:
                if rule in self.guardrail_hits:
                    self.guardrail_hits[rule] += 1
                    self._inc(f"rule:{rule}", 1)
        self._lags_ms.extend(int(now_ms - event) for event in np.asarray(event_ms, dtype=np.int64))

    def _inc(self, name: str, count: int) -> None:
        counter = self._counters.get(name)
        if counter is not None and count:
            counter.inc(count)

    def latency_ms(self, percentile: float) -> int:
        """The given percentile of recent event-to-decision times in ms (0 before any decision)."""
        if not self._lags_ms:
            return 0
        return int(np.percentile(np.fromiter(self._lags_ms, dtype=np.int64), percentile))

    def model_age_s(self) -> int:
        """Seconds since the serving model was trained; -1 while there is none (the kill switch prices)."""
        artifact = self._artifact()
        return -1 if artifact is None else int(artifact.age_s())
