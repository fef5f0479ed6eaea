"""bench/udf_vectorization.py runs (--tiny) real Flink jobs and reports positive records/s (not asserted fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A MiniCluster and datagen only: make test runs it beside the shared-stack tests.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]


def test_udf_vectorization_bench_tiny() -> None:
    result = subprocess.run(
        # two of the six cells (each starts its own MiniCluster): the ratio DESIGN.md holds the job to
        [sys.executable, "bench/udf_vectorization.py", "--tiny", "--timeout", "120",
         "--cells", "pandas:process,general:process"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "machine:" in result.stdout and "cores" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rates = report["records_per_s"]
    assert rates["pandas/process"] > 0 and rates["general/process"] > 0
    assert report["ratios"]["pandas/process vs general/process"] > 0
    assert {(cell["kind"], cell["mode"]) for cell in report["cells"]} == {("pandas", "process"), ("general", "process")}
    # every cell reports either a rate or why it could not run (thread mode)
    assert all("rows_per_s" in cell or cell["error"] for cell in report["cells"])
