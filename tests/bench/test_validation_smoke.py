"""bench/validation.py runs (--tiny) and reports positive rows/s per schema (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_validation_bench_tiny() -> None:
    result = subprocess.run(
        [sys.executable, "bench/validation.py", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "machine:" in result.stdout and "cores" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"click_event", "competitor_price", "review", "sku_catalog"} <= set(report["rows_per_s"])
    assert all(rate > 0 for rate in report["rows_per_s"].values())
