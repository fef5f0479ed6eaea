"""Load-generator ceiling: events/s that kafka-python sustains into the local broker here.

So the other figures (end-to-end throughput, latency) are known not to be bounded by the producer.
Each cell sends pre-encoded click events (~300 bytes, keyed by sku) to a fresh 2-partition topic
with the project's producer settings (:func:`pricewave.kafka_io.make_producer`: acks=all,
linger 5 ms, 256 KiB batches), until flushed; N processes split the messages, and the rate is the
total over the wall time from the first start to the last flush. The market simulator at full
speed (``run_to_kafka(rate=None)``, generation + producing in one process) is measured too.

Usage::

    .venv/bin/python bench/producer.py            # 200,000 messages per cell, median of 3
    .venv/bin/python bench/producer.py --tiny     # seconds, for CI

Prints the table and a final JSON line (``{"events_per_s": {...}, ...}``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import benchlib

from pricewave.config import TopicSettings, load_settings

_MESSAGES: list[tuple[bytes, bytes, int]] = []  # shared with forked children


def _child(settings_json: dict[str, Any], topic: str, lo: int, hi: int, barrier: Any, out: Any) -> None:
    from pricewave.config import Settings

    settings = Settings.model_validate(settings_json)
    from pricewave.kafka_io import make_producer

    producer = make_producer(settings)
    barrier.wait()
    start = time.time()
    for key, value, _ in _MESSAGES[lo:hi]:
        producer.send(topic, value=value, key=key)
    producer.flush(timeout=120)
    end = time.time()
    producer.close()
    out.put((start, end))


def processes_rate(settings: Any, topic: str, n: int, processes: int) -> float:
    """Events/s of ``processes`` forked producers sending ``n`` messages together."""
    if processes == 1:
        return n / benchlib.produce(settings, topic, _MESSAGES[:n])
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    share = n // processes
    children = [
        ctx.Process(
            target=_child,
            args=(settings.model_dump(mode="json"), topic, i * share, (i + 1) * share, barrier, out),
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    spans = [out.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=30)
    return share * processes / (max(e for _, e in spans) - min(s for s, _ in spans))


def simulator_rate(settings: Any, n: int) -> float:
    """Events/s of the market simulator (default scenario) producing as fast as it can."""
    from pricewave.simulator.runner import Simulator

    simulator = Simulator("default", settings, seed=3, track_oracle=False)
    summary = simulator.run_to_kafka(rate=None, max_events=n, closed_loop=False, progress=False)
    return summary.messages / summary.elapsed_s


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="2,000 messages, one repeat (CI smoke test)")
    parser.add_argument("--messages", type=int, default=None, help="messages per cell (default 200,000)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per cell (default 3, tiny 1)")
    args = parser.parse_args(argv)
    n = args.messages or (2_000 if args.tiny else 200_000)
    repeats = args.repeats or (1 if args.tiny else 3)
    info = benchlib.banner("producer")
    base = load_settings()
    settings = benchlib.fresh_topics(base, TopicSettings.INPUT_ROLES, partitions=2, stem="bench-prod")
    market = benchlib.SyntheticMarket(seed=1)
    _MESSAGES[:] = market.clicks(n, int(time.time() * 1000) - 3_600_000, 5_000)
    mean_bytes = sum(len(v) for _, v, _ in _MESSAGES) / n
    print(f"{n:,} click messages per cell, mean value {mean_bytes:.0f} bytes, topic {settings.topics.clicks} "
          f"(2 partitions); median of {repeats}")  # fmt: skip
    counts = sorted({1, 2, os.cpu_count() or 1})
    rows, rates = [], {}
    for processes in counts:
        samples = [processes_rate(settings, settings.topics.clicks, n, processes) for _ in range(repeats)]
        rates[f"kafka-python x{processes}"] = benchlib.median(samples)
        rows.append([f"kafka-python, {processes} process(es)", n, benchlib.median(samples), min(samples),
                     max(samples), benchlib.load_average()])  # fmt: skip
    sim_n = min(n, 50_000)
    samples = [simulator_rate(settings, sim_n) for _ in range(repeats)]
    rates["simulator x1"] = benchlib.median(samples)
    rows.append(["simulator run_to_kafka(rate=None)", sim_n, benchlib.median(samples), min(samples), max(samples),
                 benchlib.load_average()])  # fmt: skip
    print()
    benchlib.table(["producer", "messages", "events/s (median)", "min", "max", "load avg"], rows)
    best = max(rates.values())
    print(f"\nload-generator ceiling here: {best:,.0f} events/s "
          f"({best / 5000:.1f}x the 5,000 events/s throughput target)")  # fmt: skip
    benchlib.delete_topics(base, [settings.topics.clicks, settings.topics.competitor_prices, settings.topics.reviews])
    report = {"bench": "producer", "date": info["date"], "messages": n, "events_per_s": rates, "best": best}
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
