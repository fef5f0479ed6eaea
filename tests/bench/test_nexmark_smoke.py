"""bench/nexmark_q5.py runs Nexmark q5 on datagen (a MiniCluster, no services) and reports positive bids/s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.stack.process import child_environment

ROOT = Path(__file__).resolve().parents[2]
# A MiniCluster and datagen only: make test runs it beside the shared-stack tests.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]


def test_nexmark_q5_runs_over_its_bids_and_reports_a_rate() -> None:
    command = [sys.executable, "bench/nexmark_q5.py", "--tiny", "--bids", "30000", "--warmup-rows", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=child_environment())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = report["results"]
    assert row["parallelism"] == 1 and row["bids"] == 30_000
    assert row["bids_per_s"] > 0 and row["net_bids_per_s"] == row["bids_per_s"]  # no start-up job: net is gross
    assert "HOP INTERVAL '10' SECOND sliding INTERVAL '2' SECOND" in result.stdout
