"""The monitor's Prometheus text: every family parses and passes promlint (``promtool check metrics``)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pricewave.monitor.metrics import render_metrics
from tests.conftest import promlint_problems

SNAPSHOT = {
    "prices": {
        "total": 40,
        "by_kind": {"sku": 30, "offer": 10},
        "updates_per_minute": 40,
        "latency_ms": {"p50": 190.0, "p99": 390.0, "samples": 40},
        "guardrail_hits": {"floor": 8, "kill_switch": 8},
        "fallback_share": 0.2,
        "exploration_share": 0.05,
        "personalized_share": 0.25,
        "model_version": "m2",
    },
    "model": {"age_s": 3600.0, "max_age_s": 604800.0},
    "dead_letters": {"total": 6, "late": 3, "by_reason": {"missing_field": 2, "late": 3, "bad_json": 1}},
    "kafka": {
        "available": True,
        "group_id": "pricewave-pricing",
        "topics": [
            {
                "topic": "clicks",
                "role": "clicks",
                "end_offset_total": 100,
                "records_per_s": 2.5,
                "partitions": [{"partition": 0, "lag": 3}, {"partition": 1, "lag": 0}],
            },
        ],
    },
    "flink": {
        "available": True,
        "job": {"id": "abc", "state": "RUNNING", "restarts": 1},
        "checkpoints": {"available": True, "completed": 12, "failed": 1, "last": {"duration_ms": 250}},
        "operators": [
            {
                "id": "v1",
                "name": "Source: clicks",
                "records_in": 0,
                "records_out": 100,
                "backpressure": "ok",
                "watermark_lag_ms": 1500,
            },
        ],
        # As FlinkHealth reads the job's own metrics (udfs/metrics.py) from Flink's REST API.
        "job_metrics": {
            "SkuPricer": {
                "decisions": 40.0,
                "kill_switch": 4.0,
                "explored": 6.0,
                "personalized": 0.0,
                "rule.floor.guardrail_hits": 3.0,
                "event_to_decision_ms_p99": 5200.0,
                "model_age_s": 3600.0,
                "store_down": 0.0,
            },
            "OfferPricer": {"decisions": 60.0, "kill_switch": 0.0, "personalized": 45.0, "model_age_s": -1.0},
            "push_sku_demand": {"store_down": 1.0},
        },
    },
    "freshness": {"views": [{"view": "sku_price", "age_s": 12.0}]},
}


def test_every_family_passes_promlint(prometheus_validator: Path) -> None:
    text = render_metrics(SNAPSHOT)
    assert promlint_problems(prometheus_validator, text) == []
    assert len(list(text_string_to_metric_families(text))) >= 25  # every part of the snapshot rendered


def test_durations_are_in_seconds() -> None:
    lines = set(render_metrics(SNAPSHOT).splitlines())
    assert 'pricewave_price_latency_seconds{quantile="0.99"} 0.39' in lines
    assert "pricewave_flink_last_checkpoint_duration_seconds 0.25" in lines
    assert 'pricewave_flink_operator_watermark_lag_seconds{operator="Source: clicks",vertex="v1"} 1.5' in lines
    assert "pricewave_flink_job_restarts_total 1" in lines
    assert 'pricewave_job_event_to_decision_p99_seconds{pricer="SkuPricer"} 5.2' in lines


def test_the_pricers_flink_metrics_are_exported_per_pricer_and_rule() -> None:
    lines = set(render_metrics(SNAPSHOT).splitlines())
    assert 'pricewave_job_decisions_total{pricer="OfferPricer"} 60' in lines
    assert 'pricewave_job_kill_switch_decisions_total{pricer="SkuPricer"} 4' in lines
    assert 'pricewave_job_personalized_decisions_total{pricer="OfferPricer"} 45' in lines
    assert 'pricewave_job_guardrail_hits_total{pricer="SkuPricer",rule="floor"} 3' in lines
    assert 'pricewave_job_model_age_seconds{pricer="SkuPricer"} 3600' in lines
    no_model = 'pricewave_job_model_age_seconds{pricer="OfferPricer"}'
    assert not any(line.startswith(no_model) for line in lines)
    assert not any('pricer="push_sku_demand"' in line for line in lines)  # a store writer is not a pricer


def test_the_lint_finds_what_promtool_would(prometheus_validator: Path) -> None:
    bad = (
        "# HELP pricewave_restarts Restarts.\n# TYPE pricewave_restarts counter\npricewave_restarts 1\n"
        "# HELP pricewave_lag_ms Lag.\n# TYPE pricewave_lag_ms gauge\npricewave_lag_ms 5\n"
        '# HELP pricewave_latency Lat.\n# TYPE pricewave_latency gauge\npricewave_latency{quantile="0.5"} 1\n'
    )
    problems = " | ".join(promlint_problems(prometheus_validator, bad))
    assert 'counter metrics should have "_total" suffix' in problems, problems
    assert "abbreviated units" in problems, problems
    assert "quantile" in problems, problems
