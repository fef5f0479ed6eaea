"""Pricing UDF in a Flink job: pandas (vectorized) vs row-at-a-time (general) Python UDF, process vs thread mode.

A third kind, a torch-free row-at-a-time rule, shows the bare per-row Flink ↔ Python cost in
each execution mode. The same job shape for every cell, on a MiniCluster at parallelism 1: a bounded ``datagen``
source of N sku-window rows → the pricing UDF (:class:`pricewave.pricing.policy.PricingPolicy`
with a demand-model artifact, exploration on, guardrails; the policy the job's ``SkuPricer``
calls) → ``blackhole``. The pandas UDF calls ``decide`` once per Arrow batch; the general UDF
calls it once per row. Records/s is measured inside the Python worker from the first UDF call to
the last (so JVM/worker start-up is excluded, Flink ↔ Python transfer included); the job's wall
time is shown too. DESIGN.md §5: vectorized ≥ 10× row-at-a-time records/s.

``python.execution-mode``: ``process`` (default: a Python worker process per slot, Beam Fn API)
or ``thread`` (PEMJA: the interpreter inside the TaskManager JVM). PyFlink 2.2 runs general
Python scalar UDFs and UDTFs in thread mode; pandas UDFs and Python UDAFs need process mode
(the pandas/thread cell is attempted and its error reported).

Usage::

    .venv/bin/python bench/udf_vectorization.py           # 60,000 rows pandas, 3,000 rows general
    .venv/bin/python bench/udf_vectorization.py --tiny    # small, for CI

Prints the table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, udf

from pricewave.stack.process import child_environment

INPUTS = [
    ("sku", DataTypes.STRING()),
    ("base_price", DataTypes.DOUBLE()),
    ("cost", DataTypes.DOUBLE()),
    ("last_published", DataTypes.DOUBLE()),
    ("event_time", DataTypes.BIGINT()),
    ("views_5m", DataTypes.BIGINT()),
    ("carts_5m", DataTypes.BIGINT()),
    ("purchases_5m", DataTypes.BIGINT()),
    ("conversion_5m", DataTypes.DOUBLE()),
    ("views_1h", DataTypes.BIGINT()),
    ("purchases_1h", DataTypes.BIGINT()),
    ("conversion_1h", DataTypes.DOUBLE()),
    ("competitor_min_price", DataTypes.DOUBLE()),
    ("competitor_offers", DataTypes.BIGINT()),
    ("competitor_staleness_s", DataTypes.DOUBLE()),
]
# What the job's SkuPricer also gets (from the store: MAP, ceiling; joined: reviews); absent here.
STORE_COLUMNS = ("map_price", "ceiling", "review_count", "mean_rating", "sentiment", "review_embedding", "user_key")


class _TimedPricer(ScalarFunction):
    """Prices with PricingPolicy and records (rows, first call start, last call end) to a file."""

    def __init__(self, model_dir: str, stats_path: str) -> None:
        self.model_dir = model_dir
        self.stats_path = stats_path

    def open(self, function_context: Any) -> None:
        import torch

        from pricewave.pricing.artifact import load_artifact
        from pricewave.pricing.policy import PricingPolicy

        torch.set_num_threads(1)
        self.policy = PricingPolicy(load_artifact(self.model_dir, device="cpu"), exploration_epsilon=0.05, device="cpu")
        self.rows, self.calls, self.first, self.last, self.flushed = 0, 0, 0.0, 0.0, 0.0

    def _decide(self, frame: pd.DataFrame) -> pd.Series:
        for name in STORE_COLUMNS:
            frame[name] = None
        return self.policy.decide(frame)["price"].astype(float)

    def _record(self, start: float, rows: int) -> None:
        self.first = self.first or start
        self.last = time.time()
        self.rows += rows
        self.calls += 1
        if self.last - self.flushed > 0.5:
            self._flush()

    def _flush(self) -> None:
        self.flushed = time.time()
        Path(self.stats_path).write_text(
            json.dumps({"rows": self.rows, "calls": self.calls, "first": self.first, "last": self.last})
        )

    def close(self) -> None:
        self._flush()


class PandasPricer(_TimedPricer):
    def eval(self, *columns: pd.Series) -> pd.Series:
        start = time.time()
        frame = pd.DataFrame({name: column for (name, _), column in zip(INPUTS, columns, strict=True)})
        prices = self._decide(frame)
        self._record(start, len(frame))
        return prices.reset_index(drop=True)


class RowPricer(_TimedPricer):
    def eval(self, *values: Any) -> float:
        start = time.time()
        frame = pd.DataFrame({name: [value] for (name, _), value in zip(INPUTS, values, strict=True)})
        price = float(self._decide(frame).iloc[0])
        self._record(start, 1)
        return price


class PlainRow(_TimedPricer):
    """A torch-free row-at-a-time UDF (a list-price rule): isolates the per-row Flink ↔ Python cost."""

    def open(self, function_context: Any) -> None:
        self.rows, self.calls, self.first, self.last, self.flushed = 0, 0, 0.0, 0.0, 0.0

    def eval(self, *values: Any) -> float:
        start = time.time()
        base, competitor = values[1], values[12]
        price = max(values[2] * 1.05, min(base, competitor * 0.99))
        self._record(start, 1)
        return float(price)


def source_ddl(rows: int) -> str:
    return f"""
CREATE TEMPORARY TABLE gen (
  id BIGINT, base_price DOUBLE, views_5m INT, views_1h INT, competitor_offers INT, staleness DOUBLE, gap DOUBLE
) WITH (
  'connector' = 'datagen', 'number-of-rows' = '{rows}', 'rows-per-second' = '100000000',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{rows}',
  'fields.base_price.min' = '5', 'fields.base_price.max' = '200',
  'fields.views_5m.min' = '0', 'fields.views_5m.max' = '60',
  'fields.views_1h.min' = '0', 'fields.views_1h.max' = '700',
  'fields.competitor_offers.min' = '0', 'fields.competitor_offers.max' = '4',
  'fields.staleness.min' = '0', 'fields.staleness.max' = '86400',
  'fields.gap.min' = '0.8', 'fields.gap.max' = '1.2'
)"""


FEATURES_SQL = """
SELECT CONCAT('SKU-', CAST(MOD(id, 5000) AS STRING)) AS sku, base_price, base_price * 0.6 AS cost,
  base_price * 1.02 AS last_published, CAST(1767225600000 + id * 1000 AS BIGINT) AS event_time,
  CAST(views_5m AS BIGINT) AS views_5m, CAST(views_5m / 10 AS BIGINT) AS carts_5m,
  CAST(views_5m / 30 AS BIGINT) AS purchases_5m, CAST(views_5m / 30 AS DOUBLE) / GREATEST(views_5m, 1) AS conversion_5m,
  CAST(views_1h AS BIGINT) AS views_1h, CAST(views_1h / 30 AS BIGINT) AS purchases_1h,
  CAST(views_1h / 30 AS DOUBLE) / GREATEST(views_1h, 1) AS conversion_1h,
  base_price * gap AS competitor_min_price, CAST(competitor_offers AS BIGINT) AS competitor_offers,
  staleness AS competitor_staleness_s
FROM gen"""


def run_cell(kind: str, mode: str, rows: int, model_dir: str, workdir: Path, batch: int) -> dict[str, Any]:
    """One bounded job; returns rows/s measured in the worker, wall time, or the error."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    stats = workdir / f"stats-{kind}-{mode}.json"
    stats.unlink(missing_ok=True)
    config = Configuration()
    config.set_string("parallelism.default", "1")
    config.set_string("python.execution-mode", mode)
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("python.fn-execution.bundle.size", str(max(batch, 1000)))
    config.set_string("python.fn-execution.bundle.time", "1000")
    config.set_string("python.fn-execution.arrow.batch.size", str(batch))
    config.set_string("restart-strategy.type", "none")
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    function = {"pandas": PandasPricer, "general": RowPricer, "plain": PlainRow}[kind]
    pricer = udf(
        function(model_dir, str(stats)),
        result_type=DataTypes.DOUBLE(),
        func_type="pandas" if kind == "pandas" else "general",
    )
    t_env.create_temporary_function("price", pricer)
    t_env.execute_sql(source_ddl(rows))
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (price DOUBLE) WITH ('connector' = 'blackhole')")
    args = ", ".join(name for name, _ in INPUTS)
    start = time.perf_counter()
    try:
        t_env.execute_sql(f"INSERT INTO sink SELECT price({args}) FROM ({FEATURES_SQL})").wait()
    except Exception as exc:  # thread mode refuses pandas UDFs: report, do not fail the benchmark
        causes = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("Caused by")]
        return {"kind": kind, "mode": mode, "error": (causes[-1] if causes else str(exc).strip())[:300]}
    wall = time.perf_counter() - start
    recorded = json.loads(stats.read_text())
    span = recorded["last"] - recorded["first"]
    return {"kind": kind, "mode": mode, "rows": recorded["rows"], "calls": recorded["calls"], "udf_s": span,
            "rows_per_s": recorded["rows"] / span, "wall_s": wall, "load": benchlib.load_average()}  # fmt: skip


def cell_subprocess(kind: str, mode: str, rows: int, model_dir: str, workdir: Path, batch: int,
                    timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """Run one cell in its own process (own JVM) with a hard timeout; a hung cell is killed."""
    import os
    import signal
    import site
    import subprocess

    # Thread mode embeds CPython in the JVM (PEMJA): it needs the venv's site-packages on its path.
    path = [*site.getsitepackages(), str(benchlib.ROOT), str(Path(__file__).resolve().parent)]
    env = child_environment({"PYTHONPATH": os.pathsep.join(path)})
    command = [sys.executable, str(Path(__file__).resolve()), "--cell", f"{kind}:{mode}:{rows}:{batch}",
               "--model-dir", model_dir, "--workdir", str(workdir)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        stats = workdir / f"stats-{kind}-{mode}.json"
        done = json.loads(stats.read_text())["rows"] if stats.exists() else 0
        return {"kind": kind, "mode": mode, "error": f"hung: no end within {timeout_s:.0f} s ({done} of {rows} rows "
                f"priced), killed"}  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"kind": kind, "mode": mode, "error": f"cell process exited {process.returncode} without a result"}
    return dict(json.loads(lines[-1]))


ALL_CELLS = [("pandas", "process"), ("general", "process"), ("pandas", "thread"), ("general", "thread"),
             ("plain", "process"), ("plain", "thread")]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="small row counts (CI smoke test)")
    parser.add_argument("--pandas-rows", type=int, default=None, help="rows for pandas cells (default 60,000)")
    parser.add_argument("--row-rows", type=int, default=None, help="rows for general-UDF cells (default 3,000)")
    parser.add_argument("--batch", type=int, default=1000, help="Arrow batch size (the job's default, 1,000)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell (default 240, tiny 120)")
    parser.add_argument(
        "--cells",
        default=None,
        help="comma list of kind:mode cells to run, e.g. pandas:process,general:thread (default all six)",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:  # child: one cell, one JSON line
        kind, mode, rows, batch = args.cell.split(":")
        result = run_cell(kind, mode, int(rows), args.model_dir, Path(args.workdir), int(batch))
        print(json.dumps(result), flush=True)
        return result
    wanted = set(args.cells.split(",")) if args.cells else set()
    known = {f"{kind}:{mode}" for kind, mode in ALL_CELLS}
    if wanted - known:  # before any work: a typo is one line, not a run
        parser.error(f"--cells: unknown {', '.join(sorted(wanted - known))}; choose from {', '.join(sorted(known))}")
    pandas_rows = args.pandas_rows or (2_000 if args.tiny else 60_000)
    row_rows = args.row_rows or (200 if args.tiny else 3_000)
    timeout_s = args.timeout or (120.0 if args.tiny else 240.0)
    info = benchlib.banner("udf_vectorization")
    print(f"MiniCluster, parallelism 1; pandas cells {pandas_rows:,} rows (Arrow batch {args.batch}), general "
          f"cells {row_rows:,} rows; PricingPolicy K=32 candidates, exploration 5%, torch 1 thread; "
          f"each cell in its own process, {timeout_s:.0f} s limit\n")  # fmt: skip
    import torch

    from pricewave.pricing.artifact import save_artifact
    from pricewave.pricing.demand_model import DemandModel

    results = []
    # A job's last writers (Python workers, the file sink) may still close files in it as the
    # MiniCluster stops: a leftover file must not fail a finished benchmark (seen in CI).
    with tempfile.TemporaryDirectory(prefix="bench-udf-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        model_dir = str(workdir / "model")
        save_artifact(DemandModel(), None, {}, {}, model_dir)
        cells = [cell for cell in ALL_CELLS if not wanted or f"{cell[0]}:{cell[1]}" in wanted]
        for kind, mode in cells:
            rows = row_rows if kind == "general" else pandas_rows
            result = cell_subprocess(kind, mode, rows, model_dir, workdir, args.batch, timeout_s)
            results.append(result)
            shown = result.get("rows_per_s", result.get("error"))
            print(f"  {kind:7s} {mode:7s}: {shown}", flush=True)
    table_rows = []
    for r in results:
        what = {
            "pandas": "pricing, pandas UDF",
            "general": "pricing, general UDF",
            "plain": "list-price rule, general UDF",
        }
        label = f"{what[r['kind']]}, {r['mode']} mode"
        if "error" in r:
            table_rows.append([label, "-", "-", "-", "-", r["error"][:110]])
        else:
            table_rows.append([label, r["rows"], r["rows_per_s"], r["udf_s"], r["wall_s"], r["load"]])
    print()
    benchlib.table(["cell", "rows", "records/s (in worker)", "UDF span s", "job wall s", "load avg / error"],
                   table_rows)  # fmt: skip
    print(
        "note: flink-python 2.2.1 has embedded (thread-mode) operators for Python scalar and table functions "
        "only; a pandas UDF under python.execution-mode=thread still runs on the process-mode Arrow operator."
    )
    rates = {f"{r['kind']}/{r['mode']}": r["rows_per_s"] for r in results if "rows_per_s" in r}
    ratios = {}
    if "pandas/process" in rates:
        for other in ("general/process", "general/thread"):
            if other in rates:
                ratios[f"pandas/process vs {other}"] = rates["pandas/process"] / rates[other]
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.1f}x (DESIGN.md §5: >= 10x)")
    report = {"bench": "udf_vectorization", "date": info["date"], "records_per_s": rates, "ratios": ratios,
              "cells": results}  # fmt: skip
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
