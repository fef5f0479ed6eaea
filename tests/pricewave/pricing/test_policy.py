"""The pricing policy end to end on DataFrames: guardrails hold, kill switch, exploration, consistency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from pricewave.errors import DataError
from pricewave.pricing.artifact import ArtifactWatcher, ModelArtifact, load_artifact, save_artifact
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import feature_spec
from pricewave.pricing.guardrails import GuardrailPolicy, is_price_point
from pricewave.pricing.policy import OUTPUT_COLUMNS, PricingPolicy
from tests.pricewave.pricing.random_inputs import random_window_features

torch.set_num_threads(1)
NOW_S = 2_000_000_000.0


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = np.round(rng.uniform(5, 200, n), 0) - 0.01
    offer = rng.random(n) < 0.4
    views = rng.poisson(30, n)
    emb: list[Any] = [rng.normal(size=384).tolist() if rng.random() < 0.7 else None for _ in range(n)]
    return pd.DataFrame(
        {
            "sku": [f"SKU-{i}" for i in range(n)],
            "user_key": [f"{i:032x}" if o else None for i, o in enumerate(offer)],
            "base_price": base,
            "cost": base * rng.uniform(0.4, 0.8, n),
            "map_price": np.nan,
            "ceiling": np.nan,
            "last_published": np.where(rng.random(n) < 0.6, base * rng.uniform(0.9, 1.1, n), np.nan),
            "non_personalized_price": np.where(offer, base * rng.uniform(0.9, 1.05, n), np.nan),
            **random_window_features(rng, base, offer, views),
            "review_embedding": emb,
        },
        index=pd.RangeIndex(100, 100 + n),
    )


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("models")
    save_artifact(DemandModel(hidden=32), None, {}, {}, model_dir, created_at=NOW_S - 60)
    return load_artifact(model_dir, device="cpu")


def policy(artifact: ModelArtifact | ArtifactWatcher | None, **kwargs: Any) -> PricingPolicy:
    return PricingPolicy(artifact, kwargs.pop("guardrail_policy", None), device="cpu", clock=lambda: NOW_S, **kwargs)


def test_decide_prices_within_the_guardrails(artifact: ModelArtifact) -> None:
    inputs = frame(300)
    out = policy(artifact, exploration_epsilon=0.1).decide(inputs)
    assert list(out.columns) == list(OUTPUT_COLUMNS) and out.index.equals(inputs.index)
    assert out["price"].notna().all()
    floor = inputs["cost"] * 1.05
    upper = np.where(
        inputs["user_key"].notna(),
        np.minimum(inputs["base_price"] * 2, inputs["non_personalized_price"]),
        inputs["base_price"] * 2,
    )
    assert (out["price"] >= floor).all() and (out["price"] <= upper).all()
    # x.99 unless the final interval holds none (e.g. a narrow band under an offer's cap), then a cent
    assert out["price"].map(is_price_point).mean() > 0.9
    assert (out["price"] == (out["price"] * 100).round() / 100).all()
    assert (out["model_version"] == artifact.version).all()
    assert out["personalized"].tolist() == inputs["user_key"].notna().tolist()
    assert ((out["propensity"] > 0) & (out["propensity"] <= 1)).all()
    assert out["expected_conversion"].between(0, 1).all()
    for text, guardrail in zip(out["explanation"], out["guardrail"], strict=True):
        explanation = json.loads(text)
        assert len(explanation) <= 32 and explanation["guardrail"] == guardrail
        assert len(explanation["top_features"]) == 3 and explanation["elasticity"] > 0


def test_batch_equals_row_at_a_time(artifact: ModelArtifact) -> None:
    inputs = frame(40, seed=1)
    pricing = policy(artifact, exploration_epsilon=0.2)
    batch = pricing.decide(inputs)
    rows = pd.concat([pricing.decide(inputs.iloc[[i]]) for i in range(len(inputs))])
    pd.testing.assert_frame_equal(batch, rows, check_exact=False, rtol=1e-6)


def test_exploration_logs_the_propensity_of_the_shown_price(artifact: ModelArtifact) -> None:
    inputs = frame(400, seed=2)
    greedy = policy(artifact, exploration_epsilon=0.0).decide(inputs)
    explored = policy(artifact, exploration_epsilon=0.2).decide(inputs)
    assert (greedy["propensity"] == 1.0).all()
    moved = explored["price"] != greedy["price"]
    assert 0 < moved.mean() < 0.25
    assert (explored.loc[moved, "propensity"] <= 0.2 + 1e-9).all()  # shown only via the ε branch
    assert (explored.loc[~moved, "propensity"] >= 0.8).all()
    flags = explored["explanation"].map(lambda t: json.loads(t)["explored"])
    assert flags[moved].all()
    pd.testing.assert_frame_equal(explored, policy(artifact, exploration_epsilon=0.2).decide(inputs))  # replayable


def test_kill_switch_stale_model_and_no_model_fall_back_to_the_base_price(artifact: ModelArtifact) -> None:
    inputs = frame(50, seed=3).assign(last_published=np.nan, non_personalized_price=np.nan)
    stale = PricingPolicy(artifact, device="cpu", clock=lambda: NOW_S + 7200).decide(inputs)
    manual = policy(artifact, guardrail_policy=GuardrailPolicy(kill_switch=True)).decide(inputs)
    none = policy(None).decide(inputs)
    for out in (stale, manual, none):
        assert (out["guardrail"] == "kill_switch").all()
        assert (out["price"] == inputs["base_price"]).all()  # x.99 base prices inside the bounds
        assert (out["model_version"] == "none").all() and not out["personalized"].any()
        assert (out["propensity"] == 1.0).all() and out["expected_conversion"].isna().all()


def test_missing_features_and_missing_cost_are_per_row(artifact: ModelArtifact) -> None:
    inputs = frame(6, seed=4)
    inputs.loc[101, "views_5m"] = np.nan
    inputs.loc[102, "cost"] = np.nan
    out = policy(artifact).decide(inputs)
    assert out.loc[101, "guardrails"][0] == "kill_switch" and out.loc[101, "model_version"] == "none"
    assert np.isnan(out.loc[102, "price"]) and out.loc[102, "guardrail"] == "no_floor"
    others = out.drop(index=[101, 102])
    assert (others["model_version"] == artifact.version).all()


def test_watcher_source_swaps_models_without_a_restart(tmp_path: Path) -> None:
    watcher = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=0)
    pricing = policy(watcher)
    inputs = frame(5)
    assert (pricing.decide(inputs)["model_version"] == "none").all()
    version = save_artifact(DemandModel(hidden=8), None, {}, {}, tmp_path, created_at=NOW_S)
    assert (pricing.decide(inputs)["model_version"] == version).all()


def test_empty_frame_and_missing_columns(artifact: ModelArtifact) -> None:
    out = policy(artifact).decide(frame(0))
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 0
    with pytest.raises(DataError, match="cost"):
        policy(artifact).decide(frame(3).drop(columns=["cost"]))


def test_stock_pressure_lowers_prices() -> None:
    model = DemandModel(embedding_dim=0, hidden=4)
    with torch.no_grad():  # logit = −1 − 3 · log(p / base) for every input: an interior optimum
        model.base_head.weight.zero_()
        model.base_head.bias.fill_(-1.0)
        model.elasticity_head.weight.zero_()
        model.elasticity_head.bias.fill_(float(np.log(np.expm1(3.0 - 0.05))))
    artifact = ModelArtifact("elastic", model, feature_spec(), {}, {}, NOW_S, Path("."))
    inputs = frame(200, seed=5).assign(last_published=np.nan)
    calm = policy(artifact, exploration_epsilon=0.0).decide(inputs)
    pressed = policy(artifact, exploration_epsilon=0.0).decide(inputs.assign(stock_pressure=0.5))
    assert (pressed["price"] <= calm["price"]).all() and (pressed["price"] < calm["price"]).any()
