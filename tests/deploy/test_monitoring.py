"""deploy/monitoring: the alert rules and the Grafana dashboard, checked with Prometheus' own parsers
(what ``promtool check rules`` runs) and against the metric names pricewave's services export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pricewave.monitor.metrics import render_metrics
from pricewave.serving import Metrics
from tests.pricewave.monitor.test_metrics import SNAPSHOT

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"


def exported_metric_names() -> set[str]:
    """Every series name the monitor (with every panel filled) and the price API expose."""
    names = set()
    for text in (render_metrics(SNAPSHOT), Metrics().render().decode()):
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def validate(validator: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(validator), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rules(prometheus_validator: Path) -> dict[str, Any]:
    result = validate(prometheus_validator, "rules", str(ALERTS))
    assert result.returncode == 0, result.stderr
    (group,) = json.loads(result.stdout).values()
    return {rule["alert"]: rule for rule in group}


def test_the_alert_rules_cover_what_an_operator_is_paged_for(rules: dict[str, Any]) -> None:
    reads = {name: set(rule["metrics"]) for name, rule in rules.items()}
    # kill-switch share, from the pricers' own Flink metrics
    kill_switch = {"pricewave_job_kill_switch_decisions_total", "pricewave_job_decisions_total"}
    assert reads["PricewaveKillSwitchShareHigh"] == kill_switch
    assert reads["PricewaveDeadLetterRateHigh"] == {"pricewave_topic_records_per_second"}  # dead-letter rate
    assert "pricewave_consumer_lag" in reads["PricewaveConsumerLagHigh"]  # lag
    assert "pricewave_model_age_seconds" in reads["PricewaveModelAgingOut"]  # model age
    assert "pricewave_flink_checkpoints_failed_total" in reads["PricewaveCheckpointsFailing"]  # checkpoints
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_metric_a_rule_reads_is_exported(rules: dict[str, Any]) -> None:
    exported = exported_metric_names()
    for name, rule in rules.items():
        assert set(rule["metrics"]) <= exported, (name, set(rule["metrics"]) - exported)


def test_a_broken_rule_file_is_refused(prometheus_validator: Path, tmp_path: Path) -> None:
    text = ALERTS.read_text()
    summary = "{{ $value | humanizePercentage }} of recent"
    for broken, says in (
        (text.replace("[10m])) > 0.2", "[10m])) >"), "parse"),
        (text.replace("for: 10m", "for: ten minutes", 1), "ten minutes"),
        (text.replace(summary, summary.replace("humanizePercentage", "nosuchfunction")), "nosuchfunction"),
    ):
        assert broken != text
        path = tmp_path / "alerts.yaml"
        path.write_text(broken)
        result = validate(prometheus_validator, "rules", str(path))
        assert result.returncode == 1 and says in result.stderr, result.stderr


def test_the_dashboard_queries_parse_and_read_exported_metrics(prometheus_validator: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pricewave-overview"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    targets = [target for panel in panels for target in panel["targets"]]
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["type"] in ("timeseries", "stat") and set(panel["gridPos"]) == {"x", "y", "w", "h"}
    result = validate(prometheus_validator, "exprs", stdin=json.dumps([target["expr"] for target in targets]))
    assert result.returncode == 0, result.stderr
    read = [set(names) for names in json.loads(result.stdout)]
    exported = exported_metric_names()
    for target, names in zip(targets, read, strict=True):
        assert names and names <= exported, (target["expr"], names - exported)
    everything = set().union(*read)
    for metric in (
        "pricewave_price_fallback_share",  # kill-switch share
        "pricewave_dead_letters_by_reason_total",  # dead letters
        "pricewave_consumer_lag",  # lag
        "pricewave_model_age_seconds",  # model age
        "pricewave_flink_checkpoints_failed_total",  # checkpoint failures
        "pricewave_price_exploration_share",
        "pricewave_job_kill_switch_decisions_total",  # the same, from the job's Flink metrics
        "pricewave_job_guardrail_hits_total",
        "pricewave_price_request_duration_seconds_bucket",  # the price API
    ):
        assert metric in everything, metric
    # legends name only labels the query keeps
    for target in targets:
        for label in re.findall(r"{{(\w+)}}", target["legendFormat"]):
            assert label in target["expr"] or target["expr"].startswith("pricewave_"), (label, target["expr"])


def test_a_query_that_does_not_parse_is_refused(prometheus_validator: Path) -> None:
    result = validate(prometheus_validator, "exprs", stdin=json.dumps(["rate(pricewave_prices_total[1m]"]))
    assert result.returncode == 1 and "parse error" in result.stderr, result.stderr
