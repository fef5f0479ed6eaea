"""The pricing UDF benchmark still runs (--tiny); its figures are recorded in BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pricing_bench_tiny() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pricing_udf.py"), "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert any("batches of     1 rows" in line for line in lines)
    report = json.loads(lines[-1])
    assert set(report["rows_per_s"]) == {"1", "64", "256"}
    assert all(rate > 0 for rate in report["rows_per_s"].values())
    assert report["ratio"] > 0  # measured, not asserted: speed claims live in BENCHMARKS.md
