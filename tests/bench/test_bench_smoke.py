"""The benchmark scripts run end to end in their tiny modes (CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pricewave.stack.process import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = child_environment({"OMP_NUM_THREADS": "1"})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)


def test_embedding_cpu_tiny() -> None:
    result = _run(["bench/embedding_cpu.py", "--tiny", "--threads", "1"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "machine:" in out and "cores" in out and "torch" in out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0] in {"1", "8"}]
    assert [row[0] for row in rows] == ["1", "8"]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)
    assert "cache hit:" in out and "(0 model calls" in out


def test_gpu_udfs_cpu_only_tiny(tmp_path: Path) -> None:
    report = tmp_path / "rows.json"
    result = _run(
        [
            "bench/gpu_udfs.py",
            "--cpu-only",
            "--tiny",
            "--random-weights",
            "--seconds",
            "0.05",
            "--threads",
            "1",
            "--json",
            str(report),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stdout and "sentences/s" in result.stdout and "rows/s" in result.stdout
    rows = json.loads(report.read_text())
    workloads = {(row["workload"], row["batch"]) for row in rows}
    assert {("embedding 32 tok", 1), ("embedding 32 tok", 8), ("pricing K=32", 64), ("pricing K=32", 256)} <= workloads
    assert all(row["per_s"] > 0 and row["device"].startswith("cpu") for row in rows)
