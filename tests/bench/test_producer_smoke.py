"""bench/producer.py runs (--tiny) against the real broker and reports positive rates (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.config import Settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_producer_bench_tiny(kafka_stack: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "bench/producer.py", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "machine:" in result.stdout and "cores" in result.stdout and "kafka-python" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"kafka-python x1", "simulator x1"} <= set(report["events_per_s"])
    assert all(rate > 0 for rate in report["events_per_s"].values())
