"""Validation speed: ``pricewave.schemas.check_event`` rows/s per schema on one core.

The streaming job validates every input record with this checker inside a pandas UDF
(:class:`udfs.validation.EventValidator`), so its rows/s bound what one Python worker can admit.
Inputs are valid records of each input schema (plus the catalog), and for clicks also a mix with
5% malformed records of the kinds the simulator injects; the UDF body itself is timed on Arrow-size
batches of 1,000 rows.

Usage::

    .venv/bin/python bench/validation.py          # 50,000 rows per cell, median of 3
    .venv/bin/python bench/validation.py --tiny   # seconds, for CI

Prints the table and a final JSON line (``{"rows_per_s": {...}}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import benchlib

from pricewave.schemas import check_event, load_schema

MALFORMED = [
    b'{"event_id": "x", "event_type": "view"',  # truncated
    b"\xff\xfe not utf-8",
    b'{"event_id":"x","event_type":"view","user_key":"00000000000000000000000000000000","session_id":"s",'
    b'"sku":"A","price_seen":NaN,"channel":"web","event_time":1767225600000}',
    b'{"event_id":"x","event_type":"teleport","user_key":"00000000000000000000000000000000","session_id":"s",'
    b'"sku":"A","price_seen":1.0,"channel":"web","event_time":1767225600000}',
    b'{"event_id":"x"}',
]


def inputs(n: int) -> dict[str, list[bytes]]:
    market = benchlib.SyntheticMarket(seed=2)
    t0 = int(time.time() * 1000) - 3_600_000
    clicks = [value for _, value, _ in market.clicks(n, t0, 5_000)]
    mixed = [MALFORMED[i % len(MALFORMED)] if i % 20 == 0 else value for i, value in enumerate(clicks)]
    competitor = [value for _, value, _ in market.competitor_prices(n, t0, 5_000)]
    text = "Great coffee, rich and smooth, arrived quickly; would buy again for the price."
    reviews = [
        json.dumps(
            {
                "review_id": f"r{i}",
                "sku": market.skus[i % len(market.skus)],
                "rating": 1 + i % 5,
                "text": text,
                "event_time": t0 + i,
            }
        ).encode()
        for i in range(n)
    ]
    catalog = [json.dumps(row).encode() for row in market.catalog_rows(t0)]
    catalog = (catalog * (n // len(catalog) + 1))[:n]
    return {"click_event": clicks, "click_event (5% malformed)": mixed, "competitor_price": competitor,
            "review": reviews, "sku_catalog": catalog}  # fmt: skip


def rows_per_s(schema: str, values: list[bytes]) -> float:
    start = time.perf_counter()
    for value in values:
        check_event(schema, value)
    return len(values) / (time.perf_counter() - start)


def udf_rows_per_s(values: list[bytes], batch: int = 1000) -> float:
    """The validation UDF's body (:meth:`EventValidator.reasons`) on pandas batches of ``batch`` rows."""
    import pandas as pd

    from udfs.validation import EventValidator

    validator = EventValidator("click_event")
    batches = [pd.Series(values[i : i + batch]) for i in range(0, len(values), batch)]
    late = [pd.Series([False] * len(b)) for b in batches]
    start = time.perf_counter()
    for series, flags in zip(batches, late, strict=True):
        validator.reasons(series, flags)
    return len(values) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, one repeat (CI smoke test)")
    parser.add_argument("--rows", type=int, default=None, help="rows per cell (default 50,000)")
    args = parser.parse_args(argv)
    n = args.rows or (2_000 if args.tiny else 50_000)
    repeats = 1 if args.tiny else 3
    info = benchlib.banner("validation")
    data = inputs(n)
    for name in ("click_event", "competitor_price", "review", "sku_catalog"):
        load_schema(name)
        check_event(name, data[name if name in data else "click_event"][0])  # compile once
    print(f"{n:,} rows per cell, one Python thread, median of {repeats}\n")
    rows, rates = [], {}
    for label, values in data.items():
        schema = label.split()[0]
        samples = [rows_per_s(schema, values) for _ in range(repeats)]
        rates[label] = benchlib.median(samples)
        mean_bytes = sum(len(v) for v in values) / len(values)
        rows.append([f"check_event {label}", mean_bytes, rates[label], 1e6 / rates[label], benchlib.load_average()])
    samples = [udf_rows_per_s(data["click_event"]) for _ in range(repeats)]
    rates["EventValidator.reasons click_event (1,000-row batches)"] = benchlib.median(samples)
    rows.append(["EventValidator.reasons click_event, 1,000-row batches", 0.0, benchlib.median(samples),
                 1e6 / benchlib.median(samples), benchlib.load_average()])  # fmt: skip
    benchlib.table(["what", "bytes/row", "rows/s (median)", "µs/row", "load avg"], rows)
    report = {"bench": "validation", "date": info["date"], "rows": n, "rows_per_s": rates}
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
