"""Nexmark q5 (hot items) on datagen: the engine's own reference throughput on this machine.

Nexmark's query 5 counts the bids per auction in sliding windows (``HOP``: 10 s long, sliding every
2 s) and keeps, per window, the auctions with the most bids: two window aggregations and a join,
the shape of the pricing job's sku windows (HOP 5 min / 1 h sliding 1 min), with no Python, no
Kafka and no store. Bids come from Flink's ``datagen`` connector inside the job: auction ids
uniform over ``--auctions``, bidder and price random, the event time the wall clock at generation
(as Nexmark's own generator does), watermarks 1 s behind it, as fast as the job takes them
(datagen's own default would throttle the source to 10,000 rows/s). The sink is ``blackhole``.

What it is for: the ceiling of Flink SQL windowing on this machine, measured the same way as the
pricing job's own throughput (``bench/e2e_throughput.py``): bids per second from the job's start
to its end, and net of the start-up (the wall time of the same job over ``--warmup-rows`` bids is
subtracted; one such job first warms the JVM up). Each parallelism is one MiniCluster job, in
turn, in one invocation.

Usage::

    .venv/bin/python bench/nexmark_q5.py                  # 20,000,000 bids at parallelism 1 and 2
    .venv/bin/python bench/nexmark_q5.py --tiny           # 200,000 bids at parallelism 1 (CI smoke test)

Prints the table and a final JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import benchlib

WINDOW = "INTERVAL '10' SECOND"
SLIDE = "INTERVAL '2' SECOND"

Q5 = f"""
INSERT INTO hot_items
SELECT auction_bids.auction, auction_bids.num
FROM (
  SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), {SLIDE}, {WINDOW}))
  GROUP BY auction, window_start, window_end
) AS auction_bids
JOIN (
  SELECT MAX(count_bids.num) AS maxn, count_bids.starttime, count_bids.endtime
  FROM (
    SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), {SLIDE}, {WINDOW}))
    GROUP BY auction, window_start, window_end
  ) AS count_bids
  GROUP BY count_bids.starttime, count_bids.endtime
) AS max_bids
ON auction_bids.starttime = max_bids.starttime
  AND auction_bids.endtime = max_bids.endtime
  AND auction_bids.num >= max_bids.maxn
"""


def bid_table_ddl(rows: int, auctions: int) -> str:
    """Nexmark's bid stream from ``datagen``: ``rows`` bids, event time = the wall clock at generation."""
    return f"""
CREATE TEMPORARY TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  date_time TIMESTAMP_LTZ(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '{rows}',
  'rows-per-second' = '1000000000',
  'fields.auction.min' = '1000', 'fields.auction.max' = '{1000 + auctions - 1}',
  'fields.bidder.min' = '1000', 'fields.bidder.max' = '100999',
  'fields.price.min' = '1', 'fields.price.max' = '100000',
  'fields.date_time.max-past' = '0'
)"""


def run_q5(rows: int, parallelism: int, auctions: int) -> float:
    """Wall seconds of one bounded q5 job over ``rows`` bids on a fresh MiniCluster."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("parallelism.default", str(parallelism))
    config.set_string("restart-strategy.type", "none")
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    t_env.execute_sql(bid_table_ddl(rows, auctions))
    t_env.execute_sql("CREATE TEMPORARY TABLE hot_items (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole')")
    start = time.perf_counter()
    t_env.execute_sql(Q5).wait()
    return time.perf_counter() - start


def measure(rows: int, warmup_rows: int, parallelism: int, auctions: int) -> dict[str, Any]:
    """Gross and net (start-up subtracted) bids/s of q5 at ``parallelism`` (net = gross without a start-up job)."""
    warmup_s = run_q5(warmup_rows, parallelism, auctions) if warmup_rows else 0.0
    wall_s = run_q5(rows, parallelism, auctions)
    net_s = wall_s - warmup_s
    return {
        "parallelism": parallelism,
        "bids": rows,
        "wall_s": wall_s,
        "startup_s": warmup_s,
        "bids_per_s": rows / wall_s,
        # None when the job was too short to tell its start-up from its work: use more --bids.
        "net_bids_per_s": (rows - warmup_rows) / net_s if net_s > 0.2 * wall_s else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="200,000 bids at parallelism 1 (CI smoke test)")
    parser.add_argument("--bids", type=int, default=None, help="bids per measured job (default 20,000,000)")
    parser.add_argument(
        "--warmup-rows", type=int, default=None, help="bids of the start-up job (default 10,000; 0: none)"
    )
    parser.add_argument("--parallelism", default=None, help="comma list (default 1,2; tiny 1)")
    parser.add_argument("--auctions", type=int, default=1000, help="distinct auction ids (default 1,000)")
    args = parser.parse_args(argv)
    bids = args.bids or (200_000 if args.tiny else 20_000_000)
    warmup_rows = args.warmup_rows if args.warmup_rows is not None else (1_000 if args.tiny else 10_000)
    levels = [int(p) for p in (args.parallelism or ("1" if args.tiny else "1,2")).split(",")]
    if bids < 1 or warmup_rows < 0 or args.auctions < 1 or any(p < 1 for p in levels):
        parser.error("--bids, --auctions and each --parallelism must be >= 1, --warmup-rows >= 0")

    info = benchlib.banner("Nexmark q5 on datagen (MiniCluster)")
    print(f"{bids:,} bids over {args.auctions:,} auctions; HOP {WINDOW} sliding {SLIDE}; start-up job {warmup_rows:,}")
    if warmup_rows:  # the first job of a JVM runs cold (class loading, JIT): not a start-up to subtract
        run_q5(warmup_rows, levels[0], args.auctions)
    results = [measure(bids, warmup_rows, p, args.auctions) for p in levels]
    benchlib.table(
        ["parallelism", "bids", "wall s", "start-up s", "bids/s", "net bids/s"],
        [
            [r["parallelism"], r["bids"], r["wall_s"], r["startup_s"], r["bids_per_s"], r["net_bids_per_s"] or "-"]
            for r in results
        ],
    )
    report = {"bench": "nexmark_q5", "date": info["date"], "results": results}
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
