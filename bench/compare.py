"""One benchmark, this checkout against another, interleaved: A B A B A B in one invocation.

Two runs minutes apart on a shared 2-core machine differ by ±10 % from the load alone, so an A/B
figure from separate invocations says little. This runs ``bench/<SCRIPT> ARGS`` from this checkout
and from ``--against DIR`` (another version of the repository, e.g. ``git worktree add /tmp/old
<commit>``) in turns, ``--rounds`` times each, with this checkout's virtual environment and the
same settings for both, reads one figure from each run's final JSON line (``--metric``, a dotted
path) and prints every run, the medians and their ratio. ``--same-bench`` runs this checkout's
benchmark script for both, the baseline's modules (``pricewave``, ``udfs``, ``jobs``) first on the
path for its runs: the same measurement of two versions of the code (the baseline's own script may
measure differently, e.g. without a pre-fill). Give both a fresh model when the benchmark prices
(``PRICEWAVE_MODELS__MODEL_DIR``), or each run may train its own.

Usage::

    git worktree add /tmp/old 86a4702
    .venv/bin/python bench/compare.py --against /tmp/old --metric events_per_s.full -- \\
        e2e_throughput.py --variants full --clicks 150000

Prints the table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

ROOT = Path(__file__).resolve().parents[1]


def figure(report: dict[str, Any], metric: str) -> float:
    """The number at the dotted path ``metric`` of a report.

    Example:
        >>> figure({"events_per_s": {"full": 1234.5}}, "events_per_s.full")
        1234.5
    """
    value: Any = report
    for part in metric.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return float(value)


def run_once(
    tree: Path, script: str, args: list[str], metric: str, bench_tree: Path | None = None
) -> tuple[float | None, float, str]:
    """``python bench/SCRIPT ARGS`` with ``tree``'s modules first on the path, the script from
    ``bench_tree`` (default ``tree``): the figure, the wall seconds and an error (empty when none)."""
    bench_tree = bench_tree or tree
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(bench_tree / "bench")])}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(bench_tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    try:
        return figure(json.loads(lines[-1]), metric), wall, ""
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return None, wall, f"exit {result.returncode}: {type(exc).__name__} {exc}; " + " | ".join(tail)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--against", required=True, metavar="DIR", help="the other checkout (the baseline)")
    parser.add_argument("--metric", required=True, metavar="PATH", help="dotted path in the final JSON line")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, interleaved (default 3)")
    parser.add_argument(
        "--same-bench", action="store_true", help="this checkout's benchmark script for both (the code differs)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...] (a file in bench/)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    baseline = Path(args.against).resolve()
    if not command:
        parser.error("name the benchmark after --, e.g. -- e2e_throughput.py --variants full")
    script, script_args = command[0], command[1:]
    for tree in (ROOT,) if args.same_bench else (ROOT, baseline):
        if not (tree / "bench" / script).is_file():
            parser.error(f"{tree / 'bench' / script} does not exist")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    info = benchlib.banner("compare")
    same = "; this checkout's script for both" if args.same_bench else ""
    print(f"{script} {' '.join(script_args)}: this checkout ({ROOT}) against {baseline}, {args.rounds} rounds, "
          f"metric {args.metric}{same}\n", flush=True)  # fmt: skip
    runs: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        for name, tree in (("this", ROOT), ("baseline", baseline)):
            value, wall, error = run_once(tree, script, script_args, args.metric, ROOT if args.same_bench else None)
            runs.append({"round": round_number, "version": name, "value": value, "wall_s": wall, "error": error,
                         "load": benchlib.load_average()})  # fmt: skip
            shown = f"{value:,.4g}" if value is not None else f"ERROR {error}"
            print(f"  round {round_number}, {name}: {shown} ({wall:,.0f} s, load {runs[-1]['load']})", flush=True)
    medians = {
        name: benchlib.median([r["value"] for r in runs if r["version"] == name and r["value"] is not None])
        for name in ("this", "baseline")
    }
    print()
    rows = [
        [r["round"], r["version"], "error" if r["value"] is None else r["value"], r["wall_s"], r["load"]] for r in runs
    ]
    benchlib.table(["round", "version", args.metric, "wall s", "load avg"], rows)
    ratio = medians["this"] / medians["baseline"] if medians["baseline"] else None
    print(f"\nmedian: this {medians['this']:,.4g}, baseline {medians['baseline']:,.4g}"
          + (f", ratio {ratio:.2f}" if ratio is not None else ""))  # fmt: skip
    report = {"bench": "compare", "date": info["date"], "script": script, "args": script_args,
              "baseline": str(baseline), "same_bench": args.same_bench, "metric": args.metric, "runs": runs,
              "medians": medians,
              "ratio": ratio}  # fmt: skip
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
