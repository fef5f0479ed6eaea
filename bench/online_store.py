"""Online store: batched vs one-row writes, and one-entity channel reads, on SQLite and Redis.

Everything runs on a private, freshly applied copy of ``feature_repo/`` and, for Redis, a private
``redis-server`` on a free port (password set), so nothing shared is touched.

* **Writes** (``sku_price`` rows, and ``user_offer`` rows with a new key each, what the job's
  pricers write): the project's :class:`pricewave.feature_store.FeatureWriter` on its
  lean path (one guarded upsert per row, one round trip per batch) and on its Feast path (one
  online read, then Feast's ``write_to_online_store``: the writer before the lean path), in
  batches of 1,000 rows (the job's Arrow batch) vs one row per call; and Feast's bare
  ``write_to_online_store`` (no guard at all). Every variant runs once per round, the rounds
  interleaved, medians reported. DESIGN.md §5: batched ≥ 10× one-row rows/s.
* **Reads** for one entity (an anonymous shopper's price: ``sku_price`` + ``sku_catalog``, 4
  features): the Feast SDK ``get_online_features``, pricewave's channel API ``get_price`` and
  ``feast serve`` over HTTP (a subprocess on a free port, keep-alive client). DESIGN.md §5:
  ``get_online_features`` one entity on Redis p99 ≤ 10 ms.

Usage::

    .venv/bin/python bench/online_store.py          # full sizes (about 2 minutes)
    .venv/bin/python bench/online_store.py --tiny   # seconds, for CI

Prints the tables and a final JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import pandas as pd

from pricewave.config import load_settings

READ_REFS = ["sku_price:price", "sku_price:personalized", "sku_price:model_version", "sku_catalog:base_price"]


def price_rows(skus: list[str], event_ms: int) -> pd.DataFrame:
    n = len(skus)
    return pd.DataFrame(
        {
            "sku": skus,
            "decision_id": [f"{i:032x}" for i in range(n)],
            "price": [19.99] * n,
            "base_price": [21.99] * n,
            "guardrail": ["none"] * n,
            "guardrails": [["none"]] * n,
            "model_version": ["bench"] * n,
            "propensity": [1.0] * n,
            "personalized": [False] * n,
            "expected_conversion": [0.05] * n,
            "decision_time": [event_ms] * n,
            "event_time": [event_ms] * n,
        }
    )


def offer_rows(n: int, event_ms: int, round_id: int) -> pd.DataFrame:
    """``user_offer`` rows, a new (user, sku) key each: most of the job's offers find nothing stored."""
    frame = price_rows([f"SKU-{i % 500:05d}" for i in range(n)], event_ms)
    frame["user_key"] = [f"{round_id:08x}{i:024x}" for i in range(n)]  # pseudonymous-shaped keys
    frame["personalized"] = True
    return frame


def write_rates(store: Any, n_batched: int, n_single: int, batch: int, repeats: int) -> dict[str, float]:
    """rows/s of FeatureWriter (lean and Feast path) and of Feast's write_to_online_store, batched
    and one row per call, every variant once per round, rounds interleaved; medians."""
    from pricewave.feature_store import FeatureWriter
    from pricewave.feature_store.writer import to_utc

    writers = {"FeatureWriter": FeatureWriter(store), "FeatureWriter Feast path": FeatureWriter(store, direct=False)}
    skus = [f"SKU-{i:05d}" for i in range(n_batched)]
    clock = [int(time.time() * 1000) - 600_000]
    rounds = [0]

    def next_ms() -> int:
        clock[0] += 1000  # every pass is newer than the last: the guard lets it through
        return clock[0]

    def batched(writer: Any, view: str = "sku_price") -> float:
        rounds[0] += 1
        frame = price_rows(skus, next_ms()) if view == "sku_price" else offer_rows(n_batched, next_ms(), rounds[0])
        start = time.perf_counter()
        for first in range(0, n_batched, batch):
            result = writer.write(view, frame.iloc[first : first + batch])
            assert result.written == len(frame.iloc[first : first + batch]), result
        return n_batched / (time.perf_counter() - start)

    def single(writer: Any) -> float:
        frame = price_rows(skus[:n_single], next_ms())
        start = time.perf_counter()
        for i in range(n_single):
            assert writer.write("sku_price", frame.iloc[i : i + 1]).written == 1
        return n_single / (time.perf_counter() - start)

    def feast_frame(rows: int) -> pd.DataFrame:
        frame = price_rows(skus[:rows], next_ms())
        frame["event_time"] = to_utc(frame["event_time"], "event_time", "sku_price")
        frame["decision_time"] = frame["decision_time"].astype("int64")
        return frame

    def feast_batched() -> float:
        frame = feast_frame(n_batched)
        start = time.perf_counter()
        for first in range(0, n_batched, batch):
            store.write_to_online_store("sku_price", frame.iloc[first : first + batch])
        return n_batched / (time.perf_counter() - start)

    def feast_single() -> float:
        frame = feast_frame(n_single)
        start = time.perf_counter()
        for i in range(n_single):
            store.write_to_online_store("sku_price", frame.iloc[i : i + 1])
        return n_single / (time.perf_counter() - start)

    variants: dict[str, Any] = {}
    for name, writer in writers.items():
        variants[f"{name} batched"] = lambda w=writer: batched(w)
        variants[f"{name} one-row"] = lambda w=writer: single(w)
        variants[f"{name} batched, new offer keys"] = lambda w=writer: batched(w, "user_offer")
    variants["Feast write_to_online_store batched"] = feast_batched
    variants["Feast write_to_online_store one-row"] = feast_single
    for writer in writers.values():
        batched(writer)  # warm-up: registry, connections, first rows
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(fn())
    # The final state is a price for every sku (reads below need one).
    writers["FeatureWriter"].write("sku_price", price_rows(skus, next_ms()))
    return {name: benchlib.median(values) for name, values in samples.items()}


def timed_ms(fn: Any, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def read_latencies(store: Any, repo: Path, env: dict[str, str], n: int, warmup: int) -> dict[str, list[float]]:
    import requests

    from pricewave.feature_store import get_price

    sku = "SKU-00001"
    out = {
        "SDK get_online_features": timed_ms(
            lambda: store.get_online_features(features=READ_REFS, entity_rows=[{"sku": sku}]), n, warmup
        ),
        "pricewave get_price": timed_ms(lambda: get_price(store, sku), n, warmup),
    }
    quote = get_price(store, sku)
    assert quote.source == "sku", quote
    process, url = benchlib.start_feast_serve(repo, env)
    try:
        session = requests.Session()
        body = {"features": READ_REFS, "entities": {"sku": [sku]}}

        def http_read() -> None:
            response = session.post(url + "/get-online-features", json=body, timeout=10)
            response.raise_for_status()

        out["feast serve HTTP /get-online-features"] = timed_ms(http_read, n, warmup)
    finally:
        benchlib.stop_process(process)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="small sizes (CI smoke test)")
    args = parser.parse_args(argv)
    n_batched, n_single, reads, repeats = (200, 20, 30, 1) if args.tiny else (5_000, 300, 1_000, 3)
    batch = 100 if args.tiny else 1_000
    info = benchlib.banner("online_store")
    print(f"writes: sku_price rows, batched = calls of {batch:,} rows ({n_batched:,} rows), one-row = "
          f"{n_single:,} calls of 1 row, median of {repeats}; reads: {reads:,} one-entity reads "
          "after warm-up\n")  # fmt: skip
    from pricewave.feature_store import open_store
    from pricewave.feature_store.store import PROFILE_ENV, feast_environment

    write_table, read_table, report_writes, report_reads = [], [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as workdir, benchlib.redis_server() as (host, port, pw):
        repo = benchlib.applied_feature_repo(Path(workdir))
        os.environ["PRICEWAVE_REDIS__HOST"], os.environ["PRICEWAVE_REDIS__PORT"] = host, str(port)
        os.environ["PRICEWAVE_REDIS_PASSWORD"] = pw
        settings = load_settings()
        for profile in ("sqlite", "redis"):
            store = open_store(settings, repo_path=repo, profile=profile)
            from pricewave.feature_store import FeatureWriter

            catalog = benchlib.SyntheticMarket(n_skus=10, n_users=1).catalog_rows(int(time.time() * 1000) - 60_000)
            FeatureWriter(store).write("sku_catalog", catalog)
            rates = write_rates(store, n_batched, n_single, batch, repeats)
            load = benchlib.load_average()
            for name, rate in rates.items():
                write_table.append([f"{profile}: {name}", rate, load])
            for kind in ("FeatureWriter", "FeatureWriter Feast path", "Feast write_to_online_store"):
                ratio = rates[f"{kind} batched"] / rates[f"{kind} one-row"]
                write_table.append([f"{profile}: {kind} batched / one-row", f"{ratio:.1f}x", ""])
                report_writes[f"{profile} {kind} ratio"] = ratio
            for mode in ("batched", "one-row", "batched, new offer keys"):
                ratio = rates[f"FeatureWriter {mode}"] / rates[f"FeatureWriter Feast path {mode}"]
                write_table.append([f"{profile}: lean / Feast path, {mode}", f"{ratio:.2f}x", ""])
                report_writes[f"{profile} lean/feast-path {mode}"] = ratio
            report_writes.update({f"{profile} {k}": v for k, v in rates.items()})
            env = {
                **feast_environment(settings),
                PROFILE_ENV: str(repo / f"feature_store{'' if profile == 'sqlite' else '.redis'}.yaml"),
            }
            latencies = read_latencies(store, repo, env, reads, warmup=min(50, reads))
            load = benchlib.load_average()
            for name, values in latencies.items():
                p50, p95, p99 = (benchlib.percentile(values, q) for q in (50, 95, 99))
                read_table.append([f"{profile}: {name}", p50, p95, p99, max(values), load])
                report_reads[f"{profile} {name}"] = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}
    print("writes")
    benchlib.table(["store: writer", "rows/s (median)", "load avg"], write_table)
    print("\nreads, one entity (ms)")
    benchlib.table(["store: reader", "p50", "p95", "p99", "max", "load avg"], read_table)
    report = {"bench": "online_store", "date": info["date"], "writes": report_writes, "reads": report_reads}
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
