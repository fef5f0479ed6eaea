"""Python cost per record of each pandas UDF the pricing job runs, and the click rate they allow.

The end-to-end benchmark shows which Flink vertex holds the job back; this one says what the
Python inside it costs. Each UDF class of ``udfs/`` is opened as a Flink worker opens it (same
``open()``, a private applied feature repo with the SQLite online store, the trained model when
``--model`` points at one, else the untrained default) and its ``eval`` is timed on Arrow-size
batches (1,000 rows) of synthetic records:

* ``validate_clicks``: the schema check every input record passes through;
* ``price_offer``: a personalized offer (one store read per batch, the pricing network) and its
  write into ``user_offer`` (event-time guarded, the writer's lean path: one guarded upsert per
  row), all in the one Python call the job makes per batch; ``price_offer (Feast-path write)`` the
  same with the writer's Feast path (an online read, then Feast's ``write_to_online_store``), for
  comparison (the pricer wrote nothing before: a ``push_decisions`` UDF wrote its decisions);
* ``price_sku``: a sku decision per window (per sku and minute, not per click): two windows of
  each of 500 skus per batch, priced in two steps against the price history, and written.

A click costs ``validate`` plus, for the share of clicks that are views or add-to-carts (the
offer triggers), ``price_offer`` (the job no longer pushes the session features: nothing reads
them online); the table turns that into
the clicks/s two cores could reach if they ran nothing but this Python (no Flink, Kafka, Arrow or
Beam work): an upper bound of the job's throughput.

Usage::

    .venv/bin/python bench/udf_costs.py            # 10 batches of 1,000 rows per UDF
    .venv/bin/python bench/udf_costs.py --tiny     # seconds, for CI

Prints the table and a final JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import pandas as pd

from pricewave.config import Settings, load_settings

BATCH = 1000
OFFER_TRIGGER_SHARE = 0.7  # views + add-to-carts among clicks in the simulator's default scenario


def _timed(call: Callable[[int], Any], batches: int) -> float:
    """Rows/s of ``call(batch_number)`` over ``batches`` batches after one warm-up batch."""
    call(-1)
    start = time.perf_counter()
    for number in range(batches):
        call(number)
    return batches * BATCH / (time.perf_counter() - start)


def sku_windows(market: benchlib.SyntheticMarket, rng: np.random.Generator) -> pd.DataFrame:
    """Per sku, a plausible published price, window features and review summary (the offer
    pricer's join input)."""
    n = len(market.skus)
    base = np.array([market.base_price[sku] for sku in market.skus])
    views_5m, views_1h = rng.integers(1, 50, n), rng.integers(50, 600, n)
    purchases_5m, purchases_1h = rng.binomial(views_5m, 0.05), rng.binomial(views_1h, 0.05)
    frame = pd.DataFrame(
        {
            "sku_price": base,
            "views_5m": views_5m,
            "carts_5m": rng.binomial(views_5m, 0.2),
            "purchases_5m": purchases_5m,
            "conversion_5m": purchases_5m / views_5m,
            "views_1h": views_1h,
            "purchases_1h": purchases_1h,
            "conversion_1h": purchases_1h / views_1h,
            "competitor_min_price": np.round(base * rng.uniform(0.8, 1.2, n), 2),
            "competitor_offers": rng.integers(1, 5, n),
            "competitor_staleness_s": rng.uniform(0, 300, n),
            "review_count": rng.integers(0, 40, n),
            "mean_rating": rng.uniform(1, 5, n),
            "sentiment": rng.uniform(-1, 1, n),
        },
        index=market.skus,
    )
    # The hour's mean review embedding travels with the sku's price: unit vectors, as the job's.
    embeddings = rng.normal(size=(n, 384)).astype(np.float32)
    frame["review_embedding"] = list(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True))
    return frame


def measure(settings: Settings, batches: int) -> dict[str, float]:
    """Rows/s of each UDF's ``eval`` on 1,000-row batches."""
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.privacy import pseudonymize_user
    from udfs.pricing import SKU_WINDOW_FEATURES, OfferPricer, SkuPricer
    from udfs.validation import EventValidator

    market = benchlib.SyntheticMarket(seed=3)
    t0 = int(time.time() * 1000) // 60_000 * 60_000 - 3_600_000
    FeatureWriter(open_store(settings)).write("sku_catalog", market.catalog_rows(t0 - 86_400_000))
    rng = np.random.default_rng(0)
    users = [pseudonymize_user(f"bench-user-{n}", settings.user_key_secret) for n in range(5_000)]

    window = sku_windows(market, rng)

    def offer_columns(number: int) -> list[pd.Series]:
        start = t0 + (number + 1) * 60_000
        skus = pd.Series(rng.choice(market.skus, BATCH))
        return [
            pd.Series(rng.choice(users, BATCH)),
            skus,
            pd.Series(pd.to_datetime(start + np.arange(BATCH) * 10, unit="ms")),
            pd.Series(rng.integers(0, 9, BATCH)),
            pd.Series(rng.integers(0, 3, BATCH)),
            pd.Series(rng.uniform(5, 30, BATCH)),
            pd.Series(rng.uniform(0, 900, BATCH)),
            pd.Series(rng.uniform(0, 600, BATCH)),  # recency_s
            # the shopper profile: views, clicks, carts, purchases over days, the paid ratio
            *[pd.Series(rng.integers(0, n, BATCH)) for n in (200, 80, 20, 10)],
            pd.Series(rng.uniform(0.7, 1.2, BATCH)),
            # The sku's price and window features, as the job's temporal join hands them over.
            *[skus.map(window[name]) for name in ("sku_price", *SKU_WINDOW_FEATURES)],
        ]

    validator = EventValidator("click_event")  # its eval() = reasons() + two Flink metric counters
    clicks = pd.Series([value for _, value, _ in market.clicks(BATCH, t0, 5_000)])
    on_time = pd.Series([False] * BATCH)
    offers = OfferPricer(settings)
    offers.open(None)
    skus = SkuPricer(settings)
    skus.open(None)
    feast_path_offers = OfferPricer(settings)
    feast_path_offers.open(None)
    feast_path_offers.decision_writer.writer = FeatureWriter(open_store(settings), direct=False)

    prepared = {n: offer_columns(n) for n in range(-1, batches)}
    # Later clicks for the Feast-path variant, so that its offers are new to the store as well.
    prepared_later = {n: offer_columns(batches + 1 + n) for n in range(-1, batches)}
    sku_frame = pd.DataFrame({name: [0.0] * BATCH for name in SkuPricer.COLUMNS})
    sku_frame["review_embedding"] = None
    # Every sku's next windows in turn (BATCH / skus windows each): the pricer prices a sku's
    # windows of one batch one step per window, each against the price before it.
    sku_frame["sku"] = [market.skus[n % len(market.skus)] for n in range(BATCH)]
    window_of_sku = np.arange(BATCH) // len(market.skus)
    windows_per_batch = int(window_of_sku.max()) + 1

    def sku_columns(number: int) -> list[pd.Series]:
        frame = sku_frame.copy()
        minutes = (number + 1) * windows_per_batch + window_of_sku + 1
        frame["window_time"] = pd.to_datetime(t0 + minutes * 60_000 - 1, unit="ms")
        return [frame[name] for name in SkuPricer.COLUMNS]

    return {
        "validate_clicks": _timed(lambda n: validator.reasons(clicks, on_time), batches),
        "price_offer": _timed(lambda n: offers.eval(*prepared[n]), batches),
        "price_offer (Feast-path write)": _timed(lambda n: feast_path_offers.eval(*prepared_later[n]), batches),
        "price_sku": _timed(lambda n: skus.eval(*sku_columns(n)), batches),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="2 batches per UDF (CI smoke test)")
    parser.add_argument("--batches", type=int, default=10, help="1,000-row batches per UDF (default 10)")
    parser.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="model directory; a model older than the guardrails' max age (1 h) is stale and the kill "
        "switch then prices without the network (default: no model, likewise)",
    )
    args = parser.parse_args(argv)
    batches = 2 if args.tiny else args.batches
    info = benchlib.banner("udf_costs")
    # A job's last writers (Python workers, the file sink) may still close files in it as the
    # MiniCluster stops: a leftover file must not fail a finished benchmark (seen in CI).
    with tempfile.TemporaryDirectory(prefix="bench-udf-costs-", ignore_cleanup_errors=True) as tmp:
        repo = benchlib.applied_feature_repo(Path(tmp))
        # Absolute: settings resolve a relative model_dir under the state directory.
        model_dir = Path(args.model).resolve() if args.model else Path(tmp) / "models"
        models = load_settings().models.model_copy(update={"model_dir": str(model_dir)})
        settings = load_settings().model_copy(update={"feature_repo": str(repo), "models": models})
        rates = measure(settings, batches)
        model = benchlib.model_state(settings)
    print(f"model: {model}")
    micros = {name: 1e6 / rate for name, rate in rates.items()}
    benchlib.table(
        ["udf", "rows/s", "µs per row"], [[name, rates[name], micros[name]] for name in rates]
    )  # fmt: skip
    per_offer = micros["price_offer"]
    per_click = micros["validate_clicks"] + OFFER_TRIGGER_SHARE * per_offer
    ceiling = 2 * 1e6 / per_click
    print(
        f"\nper click: {micros['validate_clicks']:.0f} µs validation + {OFFER_TRIGGER_SHARE:.0%} x {per_offer:.0f} µs "
        f"(the offer and its write) = {per_click:.0f} µs of Python -> at most {ceiling:,.0f} clicks/s on "
        "2 cores running nothing else"
    )
    report = {
        "bench": "udf_costs",
        "date": info["date"],
        "rows_per_s": rates,
        "python_us_per_click": per_click,
        "model": model,
        "python_only_ceiling_clicks_per_s_2_cores": ceiling,
    }
    benchlib.emit(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
