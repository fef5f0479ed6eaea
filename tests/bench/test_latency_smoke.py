"""bench/latency.py runs the job under load (--tiny, 12 s of load: about six windows) and reports positive latency
percentiles."""

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


def test_latency_bench_tiny(kafka_stack: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "bench/latency.py", "--tiny", "--duration", "12"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, failure_report(result)
    assert "machine:" in result.stdout and "cores" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for what in ("store", "decision", "topic"):
        figures = report["latency"][f"job {what}"]
        assert figures["n"] > 0 and figures["p50_ms"] > 0 and figures["p99_ms"] >= figures["p50_ms"], (
            f"job {what}: {figures}\n{failure_report(result)}"
        )
