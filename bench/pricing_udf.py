"""Benchmark: vectorized ``PricingPolicy.decide`` vs the same policy called one row at a time.

What the streaming job's pandas UDF does per Arrow batch (features → optimize → explore →
guardrails → explain), on synthetic rows with review embeddings and a mix of sku decisions and
personalized offers. DESIGN.md §5 holds the vectorized UDF to ≥ 10× the row-at-a-time records/s.

Usage::

    .venv/bin/python bench/pricing_udf.py            # batches of 1, 64, 1024, 8192 rows
    .venv/bin/python bench/pricing_udf.py --tiny     # seconds, for CI

Prints one line per batch size and a final JSON line (``{"rows_per_s": {...}, "ratio": ...}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from pricewave.pricing.artifact import load_artifact, save_artifact
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import EMBEDDING_DIM
from pricewave.pricing.policy import PricingPolicy


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` plausible pricing inputs: a third personalized offers, most with review embeddings."""
    rng = np.random.default_rng(seed)
    base = np.round(rng.uniform(5, 200, n), 0) - 0.01
    cost = base * rng.uniform(0.4, 0.8, n)
    offer = rng.random(n) < 1 / 3
    views = rng.poisson(30, n)
    purchases = rng.binomial(views, 0.03)
    emb = rng.normal(size=(n, EMBEDDING_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    embeddings: list[Any] = [emb[i] if rng.random() < 0.9 else None for i in range(n)]
    return pd.DataFrame(
        {
            "sku": [f"SKU-{i % 5000}" for i in range(n)],
            "user_key": [f"{i:032x}" if o else None for i, o in enumerate(offer)],
            "base_price": base,
            "cost": cost,
            "map_price": np.where(rng.random(n) < 0.2, cost * 1.2, np.nan),
            "ceiling": np.nan,
            "last_published": base * rng.uniform(0.85, 1.1, n),
            "non_personalized_price": np.where(offer, base * rng.uniform(0.9, 1.05, n), np.nan),
            "event_time": 1_735_689_600_000 + rng.integers(0, 7 * 86_400_000, n),
            "views_5m": views,
            "carts_5m": rng.binomial(views, 0.1),
            "purchases_5m": purchases,
            "conversion_5m": purchases / np.maximum(views, 1),
            "views_1h": views * 12,
            "purchases_1h": purchases * 12,
            "conversion_1h": purchases / np.maximum(views, 1),
            "competitor_min_price": base * rng.uniform(0.8, 1.2, n),
            "competitor_offers": rng.integers(0, 5, n),
            "competitor_staleness_s": rng.uniform(0, 86_400, n),
            "sentiment": rng.uniform(-1, 1, n),
            "mean_rating": rng.uniform(1, 5, n),
            "review_count": rng.integers(0, 500, n),
            "recent_views": np.where(offer, rng.integers(0, 20, n), np.nan),
            "recent_carts": np.where(offer, rng.integers(0, 3, n), np.nan),
            "mean_price_seen": np.where(offer, base * rng.uniform(0.5, 1.5, n), np.nan),
            "recency_s": np.where(offer, rng.uniform(0, 600, n), np.nan),
            "shopper_views": np.where(offer, rng.integers(0, 200, n), np.nan),
            "shopper_clicks": np.where(offer, rng.integers(0, 80, n), np.nan),
            "shopper_carts": np.where(offer, rng.integers(0, 20, n), np.nan),
            "shopper_purchases": np.where(offer, rng.integers(0, 10, n), np.nan),
            "shopper_paid_ratio": np.where(offer, rng.uniform(0.7, 1.2, n), np.nan),
            "review_embedding": embeddings,
        }
    )


def untrained_policy(device: torch.device | str | None) -> PricingPolicy:
    """The job's policy over an untrained demand network on ``device`` (it runs at a trained one's speed)."""
    with tempfile.TemporaryDirectory() as model_dir:
        save_artifact(DemandModel(), None, {}, {}, model_dir)
        artifact = load_artifact(model_dir, device=device)
    return PricingPolicy(artifact, exploration_epsilon=0.05, device=device)


def _rows_per_s(policy: PricingPolicy, frame: pd.DataFrame, batch: int, min_time_s: float) -> float:
    """Records/s of ``decide`` on consecutive batches of ``batch`` rows, repeated for ``min_time_s``."""
    batches = [frame.iloc[i : i + batch] for i in range(0, len(frame) - batch + 1, batch)] or [frame]
    policy.decide(batches[0])  # warm-up
    rows, start, i = 0, time.perf_counter(), 0
    while True:
        chunk = batches[i % len(batches)]
        policy.decide(chunk)
        rows += len(chunk)
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s and i >= len(batches[:3]):
            return rows / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="small sizes and short runs (CI smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one Flink Python worker)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = [1, 64, 256] if args.tiny else [1, 64, 1024, 8192]
    min_time_s = 0.2 if args.tiny else 2.0
    frame = synthetic_frame(max(sizes) * (1 if args.tiny else 2), seed=1)
    policy = untrained_policy(args.device)
    rates = {}
    for size in sizes:
        rates[size] = _rows_per_s(policy, frame, size, min_time_s)
        print(f"decide, batches of {size:>5} rows: {rates[size]:>10,.0f} rows/s", flush=True)
    row_rate = rates[1]
    best = max(rates.values())
    ratio = best / row_rate
    print(f"row-at-a-time: {row_rate:,.0f} rows/s; best vectorized: {best:,.0f} rows/s; ratio {ratio:.1f}x (≥ 10x)")
    report = {"device": str(policy.device), "rows_per_s": {str(k): v for k, v in rates.items()}, "ratio": ratio}
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
