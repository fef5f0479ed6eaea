"""The dashboard's figures in Prometheus' text exposition format (version 0.0.4), written by hand.

Names follow Prometheus' conventions (what ``promtool check metrics`` lints): snake_case, base units
(``_seconds``), ``_total`` on counters only, ``quantile`` on summaries only;
``tests/pricewave/monitor/test_metrics.py`` lints them with promlint, promtool's own linter.

Example:
    >>> print(render_metrics({"prices": {"total": 3}}).splitlines()[2])
    pricewave_prices_total 3
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pricewave.monitor.sources import guardrail_rule, pricer_metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BACKPRESSURE_LEVELS = {"ok": 0, "low": 1, "high": 2}


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _seconds(millis: float | None) -> float | None:
    """Milliseconds (the snapshot's unit) in Prometheus' base unit, seconds."""
    return None if millis is None else float(millis) / 1000.0


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, object], float | None]]
    ) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        if not rows:
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            self.lines.append(
                f"{name}{{{label_text}}} {_number(float(value))}" if label_text else f"{name} {_number(float(value))}"
            )

    def one(self, name: str, kind: str, help_text: str, value: float | None) -> None:
        self.family(name, kind, help_text, [({}, value)])


def _job_metrics(out: _Writer, metrics: Mapping[str, Mapping[str, float]]) -> None:
    """The pricers' own Flink metrics (udfs/metrics.py, read from Flink's REST API), per pricer."""
    pricers = pricer_metrics(metrics)
    for name, help_text in (
        ("decisions", "Price decisions the job's pricer made (Flink metric, this job attempt)."),
        ("kill_switch", "Decisions the kill switch priced at base (Flink metric)."),
        ("explored", "Decisions that showed an exploration price, propensity below 0.5 (Flink metric)."),
        ("personalized", "Personalized offers (Flink metric)."),
    ):
        family = "pricewave_job_decisions_total" if name == "decisions" else f"pricewave_job_{name}_decisions_total"
        out.family(family, "counter", help_text, [({"pricer": what}, v.get(name)) for what, v in pricers.items()])
    out.family(
        "pricewave_job_guardrail_hits_total",
        "counter",
        "Guardrail hits per rule (Flink metric).",
        [
            ({"pricer": what, "rule": rule}, value)
            for what, values in pricers.items()
            for name, value in values.items()
            if (rule := guardrail_rule(name)) is not None
        ],
    )
    out.family(
        "pricewave_job_event_to_decision_p99_seconds",
        "gauge",
        "p99 of decision time minus event time over a worker's recent decisions, worst worker (Flink metric).",
        [({"pricer": what}, _seconds(v.get("event_to_decision_ms_p99"))) for what, v in pricers.items()],
    )
    out.family(
        "pricewave_job_model_age_seconds",
        "gauge",
        "Age of the model the pricer serves, oldest worker (Flink metric; absent without a model).",
        [
            ({"pricer": what}, v.get("model_age_s"))
            for what, v in pricers.items()
            if v.get("model_age_s") is not None and v["model_age_s"] >= 0
        ],
    )


def render_metrics(snapshot: Mapping[str, Any]) -> str:
    """Prometheus text for a :meth:`pricewave.monitor.core.Monitor.snapshot` (missing parts are skipped)."""
    out = _Writer()
    for section in (_pricing_metrics, _dead_letter_metrics, _kafka_metrics, _flink_metrics, _freshness_metrics):
        section(out, snapshot)
    return "\n".join(out.lines) + "\n"


def _pricing_metrics(out: _Writer, snapshot: Mapping[str, Any]) -> None:
    """The decisions on the prices topic and the model behind them."""
    prices = snapshot.get("prices") or {}
    out.one("pricewave_prices_total", "counter", "Price decisions read from the prices topic.", prices.get("total"))
    out.family(
        "pricewave_prices_by_kind_total",
        "counter",
        "Price decisions by kind (sku price or offer).",
        [({"kind": kind}, n) for kind, n in (prices.get("by_kind") or {}).items()],
    )
    out.one(
        "pricewave_price_updates_per_minute",
        "gauge",
        "Price decisions that arrived in the last minute.",
        prices.get("updates_per_minute"),
    )
    latency = prices.get("latency_ms") or {}
    out.family(
        "pricewave_price_latency_seconds",
        "summary",
        "Event to price latency (decision_time - event_time) of the recent decisions, by quantile.",
        [({"quantile": q}, _seconds(latency.get(key))) for q, key in (("0.5", "p50"), ("0.99", "p99"))],
    )
    out.family(
        "pricewave_guardrail_hits_total",
        "counter",
        "Price decisions changed by each guardrail rule.",
        [({"rule": rule}, n) for rule, n in (prices.get("guardrail_hits") or {}).items()],
    )
    out.one(
        "pricewave_price_fallback_share",
        "gauge",
        "Share of decisions from the kill switch (base price).",
        prices.get("fallback_share"),
    )
    out.one(
        "pricewave_price_exploration_share",
        "gauge",
        "Share of decisions that showed a price other than the model's best (the exploration branch).",
        prices.get("exploration_share"),
    )
    out.one(
        "pricewave_price_personalized_share",
        "gauge",
        "Share of personalized decisions.",
        prices.get("personalized_share"),
    )
    if prices.get("model_version"):
        out.family(
            "pricewave_model_info",
            "gauge",
            "The model version of the latest decision.",
            [({"version": prices["model_version"]}, 1)],
        )
    model = snapshot.get("model") or {}
    out.one(
        "pricewave_model_age_seconds",
        "gauge",
        "Age of the model LATEST names; above pricewave_model_max_age_seconds the kill switch prices at base.",
        model.get("age_s"),
    )
    out.one("pricewave_model_max_age_seconds", "gauge", "The kill switch's model age limit.", model.get("max_age_s"))


def _dead_letter_metrics(out: _Writer, snapshot: Mapping[str, Any]) -> None:
    """The dead-letter topic: totals and reasons."""
    letters = snapshot.get("dead_letters") or {}
    out.one("pricewave_dead_letters_total", "counter", "Records in the dead-letter topic.", letters.get("total"))
    out.one("pricewave_dead_letters_late_total", "counter", "Dead letters that were late events.", letters.get("late"))
    out.family(
        "pricewave_dead_letters_by_reason_total",
        "counter",
        "Dead letters by reason code.",
        [({"reason": reason}, n) for reason, n in (letters.get("by_reason") or {}).items()],
    )


def _kafka_metrics(out: _Writer, snapshot: Mapping[str, Any]) -> None:
    """The broker, the topics and the job's consumer lag."""
    kafka = snapshot.get("kafka") or {}
    topics = kafka.get("topics") or []
    out.one(
        "pricewave_kafka_up", "gauge", "1 when the broker answered the last poll.", 1 if kafka.get("available") else 0
    )
    out.family(
        "pricewave_topic_end_offset",
        "gauge",
        "Sum of the end offsets of a topic's partitions.",
        [({"topic": t["topic"], "role": t["role"]}, t["end_offset_total"]) for t in topics],
    )
    out.family(
        "pricewave_topic_records_per_second",
        "gauge",
        "Records per second appended to a topic.",
        [({"topic": t["topic"], "role": t["role"]}, t.get("records_per_s")) for t in topics],
    )
    out.family(
        "pricewave_consumer_lag",
        "gauge",
        "Records behind the end offset, per input partition.",
        [
            ({"group": kafka.get("group_id"), "topic": t["topic"], "partition": p["partition"]}, p["lag"])
            for t in topics
            for p in t["partitions"]
        ],
    )


def _flink_metrics(out: _Writer, snapshot: Mapping[str, Any]) -> None:
    """The followed Flink job: state, checkpoints, operators and the pricers' own metrics."""
    flink = snapshot.get("flink") or {}
    job = flink.get("job") or {}
    out.one(
        "pricewave_flink_up",
        "gauge",
        "1 when Flink's REST API answered the last poll.",
        1 if flink.get("available") else 0,
    )
    if job:
        out.family(
            "pricewave_flink_job_running",
            "gauge",
            "1 when the followed job is RUNNING.",
            [({"job_id": job["id"], "state": job.get("state")}, 1 if job.get("state") == "RUNNING" else 0)],
        )
        out.one("pricewave_flink_job_restarts_total", "counter", "Restarts of the job.", job.get("restarts"))
    checkpoints = flink.get("checkpoints") or {}
    if checkpoints.get("available"):
        out.one(
            "pricewave_flink_checkpoints_completed_total",
            "counter",
            "Completed checkpoints.",
            checkpoints.get("completed"),
        )
        out.one("pricewave_flink_checkpoints_failed_total", "counter", "Failed checkpoints.", checkpoints.get("failed"))
        last = checkpoints.get("last") or {}
        out.one(
            "pricewave_flink_last_checkpoint_duration_seconds",
            "gauge",
            "End-to-end duration of the last checkpoint.",
            _seconds(last.get("duration_ms")),
        )
    operators = flink.get("operators") or []
    out.family(
        "pricewave_flink_operator_records_in_total",
        "counter",
        "Records received by an operator.",
        [({"operator": op["name"], "vertex": op["id"]}, op["records_in"]) for op in operators],
    )
    out.family(
        "pricewave_flink_operator_records_out_total",
        "counter",
        "Records sent by an operator.",
        [({"operator": op["name"], "vertex": op["id"]}, op["records_out"]) for op in operators],
    )
    out.family(
        "pricewave_flink_operator_backpressure",
        "gauge",
        "Backpressure level: 0 ok, 1 low, 2 high.",
        [
            ({"operator": op["name"], "vertex": op["id"]}, BACKPRESSURE_LEVELS.get(str(op.get("backpressure"))))
            for op in operators
        ],
    )
    out.family(
        "pricewave_flink_operator_watermark_lag_seconds",
        "gauge",
        "Wall clock minus the operator's watermark.",
        [({"operator": op["name"], "vertex": op["id"]}, _seconds(op.get("watermark_lag_ms"))) for op in operators],
    )

    _job_metrics(out, flink.get("job_metrics") or {})


def _freshness_metrics(out: _Writer, snapshot: Mapping[str, Any]) -> None:
    """How old the newest value of each feature view in the online store is."""
    freshness = snapshot.get("freshness") or {}
    out.family(
        "pricewave_feature_age_seconds",
        "gauge",
        "Age of the newest value of a feature view online.",
        [({"view": v["view"]}, v.get("age_s")) for v in freshness.get("views") or []],
    )
