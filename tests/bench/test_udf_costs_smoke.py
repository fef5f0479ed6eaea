"""The per-UDF cost benchmark still runs (--tiny); its figures are recorded in BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pricewave.stack.process import child_environment

ROOT = Path(__file__).resolve().parents[2]


def test_udf_costs_tiny() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "udf_costs.py"), "--tiny"],
        cwd=ROOT, env=child_environment({"OMP_NUM_THREADS": "1"}),
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    udfs = {"validate_clicks", "price_offer", "price_offer (Feast-path write)", "price_sku"}
    assert set(report["rows_per_s"]) == udfs
    assert all(rate > 0 for rate in report["rows_per_s"].values())  # measured, not asserted
    assert report["python_us_per_click"] > 0
