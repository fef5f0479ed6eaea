"""The kill switch, the disclosure flag and the lineage of model inputs, on the real UDF classes.

The streaming job's pricers (:class:`udfs.pricing.SkuPricer`, :class:`udfs.pricing.OfferPricer`)
are driven directly, outside Flink, exactly as a Python worker calls them (``open`` then ``eval``
on pandas columns), against a real applied feature repo (SQLite online store) and real model
artifacts in the settings' model directory, hot-reloaded by their
:class:`~pricewave.pricing.artifact.ArtifactWatcher`:

* a model older than the ``models.max_age_h`` setting and missing features make every price
  the kill-switch price (the base price inside the guardrails) within one watcher interval, and a
  fresh model brings model prices back within one interval, without a restart;
* every price the model personalizes for a user carries ``personalized = true`` (disclosure);
* no protected attribute (:data:`pricewave.privacy.PROTECTED_ATTRIBUTES`) reaches a model input.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.errors import DataError
from pricewave.pricing.artifact import ArtifactWatcher, save_artifact
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.guardrails import GuardrailPolicy, apply_guardrails
from pricewave.privacy import PROTECTED_ATTRIBUTES, pseudonymize_user
from pricewave.schemas import check_event

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
SKUS = [f"KS-{n}" for n in range(8)]
CATALOG: list[dict[str, Any]] = [
    {"sku": sku, "base_price": 20.0 + n, "cost": 9.0 + n / 2, "map_price": None, "ceiling_price": 35.0 + n,
     "category": "coffee", "event_time": T0 - 86_400_000}
    for n, sku in enumerate(SKUS)
]  # fmt: skip
WATCH_INTERVAL_S = 1.0  # ArtifactWatcher's default check interval: "one interval"


@pytest.fixture
def pricing_settings(feature_repo_copy: Path, tmp_path: Path) -> Settings:
    from pricewave.feature_store import FeatureWriter, open_store

    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path / "state")})
    settings = settings.model_copy(update={"feature_repo": str(feature_repo_copy)})
    FeatureWriter(open_store(settings)).write("sku_catalog", CATALOG)
    return settings


def publish_model(settings: Settings, *, age_s: float) -> str:
    """Write a model version created ``age_s`` seconds ago and point LATEST at it."""
    model_dir = settings.path(settings.models.model_dir)
    return save_artifact(DemandModel(), None, {"auc": 0.5}, {}, model_dir, created_at=time.time() - age_s)


def window_features(n: int, *, missing_demand: bool = False) -> dict[str, list[Any]]:
    """One window's demand, competition and review features for ``n`` rows: what ``price_sku``
    gets and what an offer receives with its sku's price."""
    return {
        "views_5m": [None if missing_demand else 40] * n,
        "carts_5m": [4] * n,
        "purchases_5m": [2] * n,
        "conversion_5m": [0.05] * n,
        "views_1h": [400] * n,
        "purchases_1h": [20] * n,
        "conversion_1h": [0.05] * n,
        "competitor_min_price": [21.0] * n,
        "competitor_offers": [2] * n,
        "competitor_staleness_s": [30] * n,
        "review_count": [12] * n,
        "mean_rating": [4.2] * n,
        "sentiment": [0.4] * n,
        "review_embedding": [None] * n,  # the hour's summary without text embeddings
    }


def sku_columns(*, missing_demand: bool = False) -> list[pd.Series]:
    """One window's features for every sku, as the job hands them to ``price_sku``."""
    from udfs.pricing import SkuPricer

    n = len(SKUS)
    values: dict[str, Any] = {
        "sku": SKUS,
        "window_time": pd.to_datetime([T0 + 59_999] * n, unit="ms", utc=True),
        **window_features(n, missing_demand=missing_demand),
    }
    return [pd.Series(values[name]) for name in SkuPricer.COLUMNS]


def kill_switch_prices() -> dict[str, float]:
    """What the guardrails publish for each sku when the kill switch is on (the reference rule)."""
    policy = GuardrailPolicy()
    prices = {}
    for row in CATALOG:
        decision = apply_guardrails(
            policy, candidate=None, cost=row["cost"], base_price=row["base_price"], ceiling=row["ceiling_price"],
            model_age_s=float("inf"),
        )  # fmt: skip
        assert decision.price is not None
        prices[row["sku"]] = decision.price
    return prices


def price_until(
    pricer: Any, accept: Any, *, timeout_s: float, missing_demand: bool = False
) -> tuple[pd.DataFrame, float]:
    """Call the pricer every 50 ms until ``accept(out)``; returns the output and the seconds it took."""
    started = time.monotonic()
    while True:
        out = pricer.eval(*sku_columns(missing_demand=missing_demand))
        if accept(out):
            return out, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not reached within {timeout_s} s: {out[['sku', 'guardrail', 'model_version']]}")
        time.sleep(0.05)


def applied(out: pd.DataFrame) -> list[list[str]]:
    """The guardrails each published decision went through (``guardrail`` is only the last one)."""
    return [json.loads(text)["guardrails"] for text in out["decision_json"]]


def is_kill_switch(out: pd.DataFrame) -> bool:
    return bool((out["model_version"] == "none").all()) and all("kill_switch" in g for g in applied(out))


def test_stale_model_and_missing_features_fall_back_to_base_and_a_fresh_model_recovers(
    pricing_settings: Settings,
) -> None:
    from udfs.pricing import SkuPricer

    fresh = publish_model(pricing_settings, age_s=0)
    pricer = SkuPricer(pricing_settings)
    pricer.open(None)
    assert isinstance(pricer.policy.source, ArtifactWatcher)
    assert pricer.policy.source.check_interval_s == WATCH_INTERVAL_S
    expected_fallback = kill_switch_prices()

    # A fresh model prices every sku itself.
    out, _ = price_until(pricer, lambda o: (o["model_version"] == fresh).all(), timeout_s=5)
    assert not any("kill_switch" in g for g in applied(out))

    # Missing demand features: the kill switch at once, even with the fresh model.
    out = pricer.eval(*sku_columns(missing_demand=True))
    assert is_kill_switch(out)
    assert dict(zip(out["sku"], out["price"], strict=True)) == expected_fallback

    # A stale model is published: within one watcher interval every price falls back to base.
    stale = publish_model(pricing_settings, age_s=pricing_settings.models.max_age_s + 60)
    out, fallback_s = price_until(pricer, is_kill_switch, timeout_s=WATCH_INTERVAL_S + 1.0)
    assert dict(zip(out["sku"], out["price"], strict=True)) == expected_fallback
    assert pricer.policy.source.current().version == stale  # type: ignore[union-attr]
    for text in out["decision_json"]:  # still published, with the guardrail named
        decision = json.loads(text)
        assert "kill_switch" in decision["guardrails"] and decision["model_version"] == "none"

    # A fresh model is written: prices come back from the model within one interval, no restart.
    recovered = publish_model(pricing_settings, age_s=0)
    out, recover_s = price_until(
        pricer, lambda o: (o["model_version"] == recovered).all(), timeout_s=WATCH_INTERVAL_S + 1.0
    )
    assert not any("kill_switch" in g for g in applied(out))
    print(f"\n[reliability] kill switch: fallback after {fallback_s:.2f} s, recovery after {recover_s:.2f} s")
    assert fallback_s <= WATCH_INTERVAL_S + 0.5 and recover_s <= WATCH_INTERVAL_S + 0.5


def test_every_personalized_offer_carries_the_disclosure_flag(pricing_settings: Settings) -> None:
    from udfs.pricing import SKU_WINDOW_FEATURES, OfferPricer

    publish_model(pricing_settings, age_s=0)
    pricer = OfferPricer(pricing_settings)
    pricer.open(None)
    n = 64
    rng = np.random.default_rng(5)
    users = [pseudonymize_user(f"ks-user-{i % 16}", b"reliability") for i in range(n)]
    catalog = [CATALOG[i % len(CATALOG)] for i in range(n)]
    # What the job's temporal join hands over: the sku's price for everyone (the discount-only
    # cap) and the window features it was priced on.
    frame = {
        "user_key": users,
        "sku": [row["sku"] for row in catalog],
        "event_time": pd.to_datetime(T0 + 1000 * np.arange(n), unit="ms", utc=True),
        "recent_views": rng.integers(1, 20, n),
        "recent_carts": rng.integers(0, 3, n),
        "mean_price_seen": rng.uniform(15, 30, n),
        "dwell_s": rng.uniform(0, 900, n),
        "recency_s": rng.uniform(0, 600, n),
        # the shopper's profile over days, as of the click
        "shopper_views": rng.integers(0, 200, n),
        "shopper_clicks": rng.integers(0, 80, n),
        "shopper_carts": rng.integers(0, 20, n),
        "shopper_purchases": rng.integers(0, 10, n),
        "shopper_paid_ratio": rng.uniform(0.7, 1.2, n),
        "sku_price": [row["base_price"] for row in catalog],
        **window_features(n),
    }
    out = pricer.eval(*[pd.Series(frame[name]) for name in OfferPricer.COLUMNS])
    priced = out[out["decision_json"].notna()]
    assert len(priced) > 0
    cap = {row["sku"]: row["base_price"] for row in CATALOG}
    for _, row in priced.iterrows():
        decision, reason = check_event("price_decision", row["decision_json"].encode())
        assert reason is None, reason
        assert decision is not None and decision["kind"] == "offer" and decision["user_key"] == row["user_key"]
        model_priced = decision["model_version"] != "none"
        # Disclosure: a price the model set for this user says so; a fallback price is not personalized.
        assert decision["personalized"] is model_priced, decision
        assert decision["price"] <= cap[decision["sku"]] + 1e-9  # discount-only
    assert priced["personalized"].any(), "no offer was personalized: the disclosure path went untested"
    # A click on a sku whose first window has not closed meets no version (NULLs from the LEFT
    # temporal join): no features, so the kill switch prices it, not personalized, capped at base.
    for name in ("sku_price", *SKU_WINDOW_FEATURES):
        frame[name] = [None] * n
    unpriced = pricer.eval(*[pd.Series(frame[name]) for name in OfferPricer.COLUMNS])
    assert (unpriced["model_version"] == "none").all() and not unpriced["personalized"].any()
    assert all("kill_switch" in json.loads(text)["guardrails"] for text in unpriced["decision_json"])
    assert (unpriced["price"] <= unpriced["sku"].map(cap) + 1e-9).all()


def test_protected_attributes_never_reach_a_model_input(tmp_path: Path) -> None:
    from pricewave.feature_views import sku_competition, sku_demand
    from pricewave.job.sources import INPUT_SCHEMAS
    from pricewave.pricing.features import FEATURE_NAMES, assert_no_protected_inputs, feature_spec
    from pricewave.schemas import load_schema
    from pricewave.simulator.runner import Simulator
    from pricewave.simulator.scenario import load_scenario
    from udfs.pricing import STORE_CONTEXT, OfferPricer, SkuPricer

    def protected(names: Any) -> set[str]:
        words = {part for name in names for part in str(name).lower().replace("-", "_").split("_")}
        lowered = {str(name).lower() for name in names}
        return (lowered | words) & PROTECTED_ATTRIBUTES

    # The model's inputs, the artifact spec and the UDFs' inputs (columns and store reads).
    assert not protected(FEATURE_NAMES)
    assert not protected(feature_spec()["feature_names"])
    assert_no_protected_inputs(FEATURE_NAMES)
    udf_inputs = {*SkuPricer.COLUMNS, *OfferPricer.COLUMNS, *sku_demand.PUSHED_COLUMNS, *sku_competition.PUSHED_COLUMNS}
    for names in STORE_CONTEXT.values():
        udf_inputs |= set(names)
    assert not protected(udf_inputs)
    # The records the job reads carry none either.
    for schema in (
        *INPUT_SCHEMAS.values(),
        "sku_catalog",
        "sku_demand",
        "sku_competition",
        "user_session",
        "shopper_profile",
    ):
        assert not protected(load_schema(schema).field_names), schema
    # Training columns: what the simulator's history gives the trainer.
    simulator = Simulator(load_scenario("small"), load_settings(env={}), seed=1, review_texts=["ok"])
    paths = simulator.write_history(tmp_path / "history", n_events=2000, progress=False)
    for name in ("click_event", "exposures", "catalog"):
        columns = pd.read_parquet(paths[name]).columns
        assert not protected(columns), (name, list(columns))
    # The check itself catches look-alikes.
    with pytest.raises(DataError, match=r"^protected attributes must not be model inputs: customer_gender;"):
        assert_no_protected_inputs([*FEATURE_NAMES, "customer_gender"])


def test_stale_model_check_fires_for_the_clock_it_is_given(tmp_path: Path) -> None:
    """The age the kill switch compares is the artifact's created_at (not its file time)."""
    model_dir = tmp_path / "models"
    version = save_artifact(DemandModel(), None, {}, {}, model_dir, created_at=1_000_000.0)
    watcher = ArtifactWatcher(model_dir)
    artifact = watcher.current()
    assert artifact is not None and artifact.version == version
    assert artifact.age_s(now=1_000_000.0 + GuardrailPolicy().max_model_age_s + 1) > GuardrailPolicy().max_model_age_s
    shutil.rmtree(model_dir)
