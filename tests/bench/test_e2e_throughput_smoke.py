"""bench/e2e_throughput.py runs the full pricing job (--tiny) and reports a positive sustained rate,
its CPU cost, and that the model (not the kill switch) priced every decision after the pre-fill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.config import Settings
from tests.bench import failure_report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_e2e_throughput_bench_tiny(kafka_stack: Settings, trained_model_dir: Path) -> None:
    # The session's fresh model (so the bench trains none), named as a user's environment would.
    env = {**os.environ, "PRICEWAVE_MODELS__MODEL_DIR": str(trained_model_dir)}
    result = subprocess.run(
        [sys.executable, "bench/e2e_throughput.py", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
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
    assert run["cpu_s_per_1000"] > 0
    # The pre-fill gave every sku a price before the measured clicks: the network priced them all.
    assert "training a small one" not in result.stdout
    assert set(run["kill_switch"]) == {"sku", "offer"}
    assert all(kind["kill_switch"] == 0 for kind in run["kill_switch"].values()), run["kill_switch"]
