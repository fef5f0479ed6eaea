"""bench/compare.py interleaves a benchmark of two checkouts and reads one figure from each run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench import failure_report

ROOT = Path(__file__).resolve().parents[2]


def compare(*args: str) -> subprocess.CompletedProcess[str]:
    """``python bench/compare.py ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "bench/compare.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_compare_runs_both_checkouts_in_turns_and_reports_the_ratio() -> None:
    # This checkout against itself: the plumbing, not a speed claim.
    options = ["--against", str(ROOT), "--metric", "rows_per_s.64"]
    result = compare(*options, "--rounds", "2", "--", "pricing_udf.py", "--tiny")
    assert result.returncode == 0, failure_report(result)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(run["round"], run["version"]) for run in report["runs"]] == [
        (1, "this"), (1, "baseline"), (2, "this"), (2, "baseline"),
    ]  # fmt: skip
    assert all(run["value"] > 0 and not run["error"] for run in report["runs"])
    assert report["ratio"] > 0 and report["same_bench"] is False

    # This checkout's script for both runs (only the code under test differs).
    same = compare(*options, "--rounds", "1", "--same-bench", "--", "pricing_udf.py", "--tiny")
    assert same.returncode == 0, failure_report(same)
    report = json.loads(same.stdout.strip().splitlines()[-1])
    assert report["same_bench"] is True and len(report["runs"]) == 2 and report["ratio"] > 0


def test_compare_says_what_is_missing() -> None:
    result = compare("--against", str(ROOT), "--metric", "x", "--", "no_such_bench.py")
    assert result.returncode == 2 and "no_such_bench.py does not exist" in result.stderr
