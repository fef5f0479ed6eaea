"""bench/e2e_throughput.py runs the full pricing job (--tiny) and reports a positive sustained rate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.config import Settings
from tests.bench import failure_report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_e2e_throughput_bench_tiny(kafka_stack: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "bench/e2e_throughput.py", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, failure_report(result)
    assert "machine:" in result.stdout and "cores" in result.stdout and "where the time goes" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (run,) = report["runs"]
    assert run["error"] is None, run["error"]
    assert report["events_per_s"]["full"] > 0
    assert run["prices_topic_decisions"] > 0
    # Every decision the job logged was published: none broke its contract (e.g. a window's end
    # ahead of the wall clock when a bounded run flushes its last windows).
    assert run["invalid_decisions"] == 0
    assert run["prices_topic_decisions"] == run["decision_log_rows"]
    assert any(row[1] > 0 for row in run["breakdown"])  # busy time was sampled
