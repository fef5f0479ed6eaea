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


def test_gpu_check_runs_the_udfs_and_kernels_and_writes_its_table_and_rows(tmp_path: Path) -> None:
    """bench/gpu_check.sh as the GPU machine runs it, here on the CPU (tiny sizes)."""
    env = child_environment({"OMP_NUM_THREADS": "1", "OUT": str(tmp_path), "PYTHON": sys.executable})
    command = ["bash", "bench/gpu_check.sh", "240", "--cpu-only", "--tiny", "--random-weights", "--seconds", "0.05",
               "--threads", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = (tmp_path / "gpu_udfs.txt").read_text()
    assert table.startswith("nvidia-smi: ") and "random weights" in table and "reviews/s" in table
    rows = json.loads((tmp_path / "gpu_udfs.json").read_text())
    workloads = {(row["workload"], row["batch"]) for row in rows}
    assert {("embedding 32 tok", 1), ("embedding 32 tok", 8), ("pricing K=32", 64), ("pricing K=32", 256)} <= workloads
    # The UDFs as the job runs them: real review texts in, vectors out; the pricing policy's decide.
    assert {("review UDF: text -> vectors", 8), ("pricing UDF: decide", 64)} <= workloads
    assert all(row["per_s"] > 0 for row in rows)
    assert "skipped at the --budget-s limit" not in table


def test_gpu_udfs_skips_and_lists_the_cells_past_its_budget() -> None:
    result = _run(["bench/gpu_udfs.py", "--cpu-only", "--tiny", "--random-weights", "--no-udfs", "--budget-s", "0"])
    assert result.returncode == 0, result.stderr
    assert "UDFs: skipped (--no-udfs)" in result.stdout
    skipped = result.stdout.split("skipped at the --budget-s limit (0 s): ")[1]
    assert skipped.count("kernel, cpu") == 4, skipped  # 2 embedding + 2 pricing batch sizes, none measured
