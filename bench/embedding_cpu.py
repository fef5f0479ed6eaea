"""Review-embedding throughput on the CPU: reviews/s by batch size, and the cost of a cache hit.

Embeds real Amazon Fine Foods reviews (:func:`pricewave.data.datasets.load_reviews`) with
:class:`pricewave.reviews.embedding.ReviewEmbedder` on the CPU, once as written (truncated at 128
tokens) and once as *short* reviews (each review's first 24 words, the DESIGN.md target of
>= 100 short reviews/s). Each batch size calls ``embed`` with that many new texts per call, the
way a Flink Arrow batch arrives; the cache is off for these rows. The last line times texts
already in the cache (the target: cached repeats ~free).

Example:
    python bench/embedding_cpu.py            # the full table (a few minutes on 2 cores)
    python bench/embedding_cpu.py --tiny     # a CI smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import benchlib
import numpy as np
import torch
import transformers

from pricewave.data.datasets import load_reviews
from pricewave.reviews.embedding import ReviewEmbedder

SHORT_WORDS = 24


def reviews_per_second(embedder: ReviewEmbedder, texts: list[str], batch: int) -> float:
    """Texts/s embedding ``texts`` in calls of ``batch`` new texts (model only: cache off)."""
    embedder.batch_size = batch
    embedder.embed(texts[:batch])  # warm-up (allocator, kernels)
    start = time.perf_counter()
    for first in range(0, len(texts), batch):
        embedder.embed(texts[first : first + batch])
    return len(texts) / (time.perf_counter() - start)


def cache_hit_us(embedder: ReviewEmbedder, texts: list[str], repeats: int = 5) -> tuple[float, int]:
    """Microseconds per text for texts already cached, and the forward passes that took (0)."""
    embedder.cache_size = len(texts)
    embedder.embed(texts)
    calls = embedder.model_calls
    start = time.perf_counter()
    for _ in range(repeats):
        embedder.embed(texts)
    elapsed = time.perf_counter() - start
    return elapsed / (repeats * len(texts)) * 1e6, embedder.model_calls - calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Review-embedding throughput on the CPU.")
    parser.add_argument("--tiny", action="store_true", help="few texts, batch sizes 1 and 8 (smoke test)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--texts", type=int, default=None, help="texts per batch size (default 256, tiny 16)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [1, 8] if args.tiny else [1, 8, 32, 128]
    count = args.texts or (16 if args.tiny else 256)

    reviews = load_reviews()
    rng = np.random.default_rng(0)
    picked = reviews["text"].to_numpy()[rng.permutation(len(reviews))[: count + max(batches)]].tolist()
    full = picked[:count]
    short = [" ".join(text.split()[:SHORT_WORDS]) for text in full]
    warm = picked[count:]

    load_start = time.perf_counter()
    embedder = ReviewEmbedder(device="cpu", cache_size=0)
    load_s = time.perf_counter() - load_start
    tokens = embedder._tokenizer(full, truncation=True, max_length=embedder.max_length)["input_ids"]
    short_tokens = embedder._tokenizer(short, truncation=True, max_length=embedder.max_length)["input_ids"]

    print(f"machine: {benchlib.cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(
        f"versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, numpy {np.__version__}"
    )
    print(
        f"model: all-MiniLM-L6-v2 from {embedder.model_path} (load {load_s:.1f} s), fp32, max_length "
        f"{embedder.max_length}; {count} real reviews per cell, median {int(np.median([len(t) for t in tokens]))} "
        f"tokens (short: first {SHORT_WORDS} words, median {int(np.median([len(t) for t in short_tokens]))} tokens)"
    )
    print()
    embedder.embed(warm[:8])
    header = f"{'batch':>5}  {'reviews/s (full)':>16}  {'reviews/s (short)':>17}  {'ms/batch (short)':>16}"
    print(header)
    print("-" * len(header))
    for batch in batches:
        full_rate = reviews_per_second(embedder, full, batch)
        short_rate = reviews_per_second(embedder, short, batch)
        print(f"{batch:>5}  {full_rate:>16.1f}  {short_rate:>17.1f}  {batch / short_rate * 1e3:>16.1f}", flush=True)
    hit_us, extra_calls = cache_hit_us(embedder, full)
    print()
    print(f"cache hit: {hit_us:.1f} µs per repeated review ({extra_calls} model calls for {5 * len(full)} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
