"""Model faults fail safe (issue 17): a corrupt, NaN or removed model never stops pricing nor prices at the floor.

* Loading: every way a published version can be broken keeps the last good model in a running
  watcher (counted in ``load_failures``) and gives a fresh worker no model, so the kill switch
  prices at base; ``ArtifactWatcher.current()`` never raises.
* Serving: a model whose output is NaN/inf trips the kill switch for that row (base price inside
  the guardrails) instead of taking candidate 0, the lower bound.
* Publishing: ``save_artifact`` refuses NaN/inf weights or metrics and leaves ``LATEST`` alone.
* Removing ``LATEST`` means "no model" in every worker, running or restarted.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import pricewave.pricing.artifact as artifact_module
from pricewave.errors import DataError
from pricewave.pricing.artifact import (
    METRICS,
    POINTER,
    SPEC,
    WEIGHTS,
    ArtifactWatcher,
    ModelArtifact,
    load_artifact,
    save_artifact,
)
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import feature_spec
from pricewave.pricing.policy import NO_MODEL, PricingPolicy
from tests.pricewave.pricing.random_inputs import random_window_features

torch.set_num_threads(1)
NOW_S = 2_000_000_000.0


def model(seed: int, **kwargs: Any) -> DemandModel:
    torch.manual_seed(seed)
    return DemandModel(hidden=8, **kwargs)


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Decisions with every feature known; base prices x.99 and 20.00 (the issue's example)."""
    rng = np.random.default_rng(seed)
    base = np.round(rng.uniform(15, 120, n), 0) - 0.01
    base[0] = 20.00
    offer = rng.random(n) < 0.4
    views = rng.poisson(30, n)
    return pd.DataFrame(
        {
            "sku": [f"SKU-{i}" for i in range(n)],
            "user_key": [f"{i:032x}" if o else None for i, o in enumerate(offer)],
            "base_price": base,
            "cost": base * rng.uniform(0.4, 0.6, n),
            "last_published": np.nan,
            "non_personalized_price": np.where(offer, base, np.nan),
            **random_window_features(rng, base, offer, views),
            "review_embedding": [rng.normal(size=384).tolist() if rng.random() < 0.5 else None for _ in range(n)],
        }
    )


def pricing(source: ModelArtifact | ArtifactWatcher | None, epsilon: float = 0.0) -> PricingPolicy:
    return PricingPolicy(source, exploration_epsilon=epsilon, device="cpu", clock=lambda: NOW_S)


def assert_kill_switch_at_base(out: pd.DataFrame, inputs: pd.DataFrame) -> None:
    """Every row priced as the kill switch prices it: exactly what a policy with no model publishes."""
    reference = pricing(None).decide(inputs)
    assert out["price"].notna().all()
    assert out["price"].tolist() == reference["price"].tolist()
    assert all(applied[0] == "kill_switch" for applied in out["guardrails"]), out["guardrails"].tolist()
    assert out["guardrail"].tolist() == reference["guardrail"].tolist()
    assert (out["model_version"] == NO_MODEL).all() and not out["personalized"].any()
    assert (out["propensity"] == 1.0).all() and out["expected_conversion"].isna().all()
    # the base price (x.99 here, 19.99 for the 20.00 row), nowhere near the floor (cost × 1.05)
    assert (out["price"] >= inputs["base_price"] - 0.01 - 1e-9).all()
    assert (out["price"] > inputs["cost"] * 1.05 + 1).all()
    twenty = (inputs["base_price"] == 20.00).to_numpy()  # the row: 19.99, not 10.99
    assert (out.loc[twenty, "price"] == 19.99).all()
    assert not any("floor" in applied for applied in out["guardrails"])


# -- corrupted artifacts ---------------------------------------------------------------------------


def _weights(version_dir: Path) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(version_dir / WEIGHTS, weights_only=True)
    return payload


def _save_weights(version_dir: Path, payload: Any) -> None:
    torch.save(payload, version_dir / WEIGHTS)


def truncate_weights(root: Path, version: str) -> None:
    path = root / version / WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_weights(root: Path, version: str) -> None:
    (root / version / WEIGHTS).write_bytes(np.random.default_rng(0).bytes(4096))


def empty_weights(root: Path, version: str) -> None:
    (root / version / WEIGHTS).write_bytes(b"")


def weights_a_list(root: Path, version: str) -> None:
    _save_weights(root / version, [1, 2, 3])  # a valid pickle of the wrong type


def weights_a_foreign_pickle(root: Path, version: str) -> None:
    (root / version / WEIGHTS).write_bytes(pickle.dumps(datetime(2025, 1, 1), protocol=2))  # not a weights-only load


def weights_without_state_dict(root: Path, version: str) -> None:
    payload = _weights(root / version)
    _save_weights(root / version, {"config": payload["config"]})


def weights_missing_a_tensor(root: Path, version: str) -> None:
    payload = _weights(root / version)
    del payload["state_dict"]["base_head.weight"]
    _save_weights(root / version, payload)


def weights_of_the_wrong_shape(root: Path, version: str) -> None:
    payload = _weights(root / version)
    payload["state_dict"]["trunk.0.weight"] = torch.zeros(3, 3)
    _save_weights(root / version, payload)


def config_of_another_model(root: Path, version: str) -> None:
    payload = _weights(root / version)
    _save_weights(root / version, {**payload, "config": {**payload["config"], "n_layers": 7}})


def config_with_a_bad_value(root: Path, version: str) -> None:
    payload = _weights(root / version)
    _save_weights(root / version, {**payload, "config": {**payload["config"], "min_elasticity": -1.0}})


def model_of_another_width(root: Path, version: str) -> None:
    """Self-consistent weights for 5 features: loads fine, would raise on the first batch."""
    other = DemandModel(n_features=5, hidden=8)
    _save_weights(root / version, {"config": other.config, "state_dict": other.state_dict()})


def nan_weights(root: Path, version: str) -> None:
    payload = _weights(root / version)
    payload["state_dict"]["base_head.bias"] = torch.tensor([float("nan")])
    _save_weights(root / version, payload)


def weights_a_directory(root: Path, version: str) -> None:
    (root / version / WEIGHTS).unlink()
    (root / version / WEIGHTS).mkdir()


def metrics_missing_keys(root: Path, version: str) -> None:
    (root / version / METRICS).write_text(json.dumps({"version": version}))


def metrics_not_json(root: Path, version: str) -> None:
    (root / version / METRICS).write_text("{not json")


def metrics_a_list(root: Path, version: str) -> None:
    (root / version / METRICS).write_text("[1, 2]")


def metrics_bad_created_at(root: Path, version: str) -> None:
    manifest = json.loads((root / version / METRICS).read_text())
    (root / version / METRICS).write_text(json.dumps({**manifest, "created_at": "yesterday"}))


def spec_missing(root: Path, version: str) -> None:
    (root / version / SPEC).unlink()


def spec_a_string(root: Path, version: str) -> None:
    (root / version / SPEC).write_text('"feature_names"')


def pointer_to_nowhere(root: Path, version: str) -> None:
    (root / POINTER).write_text("demand-does-not-exist\n")


def pointer_empty(root: Path, version: str) -> None:
    (root / POINTER).write_text("")


def pointer_not_utf8(root: Path, version: str) -> None:
    (root / POINTER).write_bytes(b"\xff\xfe\x00demand")


def pointer_outside(root: Path, version: str) -> None:
    (root / POINTER).write_text("../elsewhere\n")


CORRUPTIONS: list[Callable[[Path, str], None]] = [
    truncate_weights,
    random_weights,
    empty_weights,
    weights_a_list,
    weights_a_foreign_pickle,
    weights_without_state_dict,
    weights_missing_a_tensor,
    weights_of_the_wrong_shape,
    config_of_another_model,
    config_with_a_bad_value,
    model_of_another_width,
    nan_weights,
    weights_a_directory,
    metrics_missing_keys,
    metrics_not_json,
    metrics_a_list,
    metrics_bad_created_at,
    spec_missing,
    spec_a_string,
    pointer_to_nowhere,
    pointer_empty,
    pointer_not_utf8,
    pointer_outside,
]


def touch_pointer(root: Path, ns: int) -> None:
    """A distinct pointer mtime, whatever the file system's timestamp resolution."""
    os.utime(root / POINTER, ns=(ns, ns))


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__ for c in CORRUPTIONS])
def test_a_corrupt_version_keeps_the_last_good_model_or_prices_at_base(
    corrupt: Callable[[Path, str], None], tmp_path: Path
) -> None:
    clock = [0.0]
    running = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=1, clock=lambda: clock[0])
    good = save_artifact(model(0), None, {"auc": 0.7}, {}, tmp_path, created_at=NOW_S - 60)
    touch_pointer(tmp_path, 1_000_000_000)
    served = running.current()
    assert served is not None and served.version == good and running.load_failures == 0

    bad = save_artifact(model(1), None, {"auc": 0.7}, {}, tmp_path, created_at=NOW_S - 30)
    corrupt(tmp_path, bad)
    touch_pointer(tmp_path, 2_000_000_000)

    with pytest.raises(DataError):  # one readable error type, whatever broke
        load_artifact(tmp_path, device="cpu")

    # A running worker keeps serving the last good model and counts the failure once.
    clock[0] += 5
    assert running.current() is served
    assert running.load_failures == 1 and running.last_error and "\n" not in running.last_error
    clock[0] += 5
    assert running.current() is served and running.load_failures == 1  # not retried until LATEST moves
    inputs = frame(12)
    assert (pricing(running).decide(inputs)["model_version"] == good).all()

    # A restarted worker has no good model: no exception, no model, the kill switch prices at base.
    fresh = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=0)
    assert fresh.current() is None and fresh.load_failures == 1
    assert_kill_switch_at_base(pricing(fresh).decide(inputs), inputs)

    # Publishing a good model again heals both.
    fixed = save_artifact(model(2), None, {"auc": 0.7}, {}, tmp_path, created_at=NOW_S)
    touch_pointer(tmp_path, 3_000_000_000)
    clock[0] += 5
    for watcher in (running, fresh):
        healed = watcher.current()
        assert healed is not None and healed.version == fixed


def test_the_corruption_list_is_long_enough() -> None:
    assert len(CORRUPTIONS) >= 11


def test_current_never_raises_whatever_the_loader_throws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_artifact(model(0), None, {}, {}, tmp_path, created_at=NOW_S)

    def boom(*args: Any, **kwargs: Any) -> ModelArtifact:
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    monkeypatch.setattr(artifact_module, "load_artifact", boom)
    watcher = ArtifactWatcher(tmp_path, device="cpu")
    assert watcher.current() is None
    assert watcher.load_failures == 1 and watcher.last_error is not None and "\n" not in watcher.last_error


# -- a loadable model with non-finite output -------------------------------------------------------


def nan_model() -> DemandModel:
    poisoned = model(0)
    with torch.no_grad():
        for parameter in poisoned.parameters():
            parameter.fill_(float("nan"))
    return poisoned


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_a_nan_model_prices_every_row_at_base_with_the_kill_switch_never_the_floor(epsilon: float) -> None:
    inputs = frame(40, seed=1)
    artifact = ModelArtifact("demand-nan", nan_model(), feature_spec(), {}, {}, NOW_S - 60, Path("."))
    policy = pricing(artifact, epsilon)
    out = policy.decide(inputs)
    assert_kill_switch_at_base(out, inputs)
    assert policy.model_fault_rows == len(inputs)
    explanations = [json.loads(text) for text in out["explanation"]]
    assert all(e["kill_switch"] and not e["explored"] and e["top_features"] == [] for e in explanations)


MANY_VIEWS, FEW_VIEWS = float(np.log1p(30.5)), float(np.log1p(19.5))  # views_5m is feature 0, log1p'd


class FaultyOnSomeRows(DemandModel):
    """A finite model except rows with > 30 views (NaN purchase logit) or < 20 views (inf elasticity)."""

    def decompose(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        base, elasticity = super().decompose(x, emb)
        base = torch.where(x[:, 0] > MANY_VIEWS, torch.full_like(base, float("nan")), base)
        elasticity = torch.where(x[:, 0] < FEW_VIEWS, torch.full_like(elasticity, float("inf")), elasticity)
        return base, elasticity


def test_non_finite_output_trips_the_kill_switch_for_that_row_only() -> None:
    from pricewave.pricing.features import FEATURE_NAMES, build_feature_matrix

    assert FEATURE_NAMES[0] == "views_5m"
    inputs = frame(60, seed=2)
    faulty = FaultyOnSomeRows(hidden=8)
    torch.manual_seed(0)
    sane = DemandModel(hidden=8)
    faulty.load_state_dict(sane.state_dict())
    views = build_feature_matrix(inputs)[0][:, 0]
    bad_rows = (views > MANY_VIEWS) | (views < FEW_VIEWS)
    assert (views > MANY_VIEWS).any() and (views < FEW_VIEWS).any() and not bad_rows.all()

    policy = pricing(ModelArtifact("demand-faulty", faulty, feature_spec(), {}, {}, NOW_S, Path(".")))
    out = policy.decide(inputs)
    expected = pricing(ModelArtifact("demand-faulty", sane, feature_spec(), {}, {}, NOW_S, Path("."))).decide(inputs)
    assert policy.model_fault_rows == bad_rows.sum()
    assert_kill_switch_at_base(out[bad_rows].reset_index(drop=True), inputs[bad_rows].reset_index(drop=True))
    pd.testing.assert_frame_equal(out[~bad_rows], expected[~bad_rows])  # the other rows: priced by the model
    assert (out.loc[~bad_rows, "model_version"] == "demand-faulty").all()


# -- publishing ------------------------------------------------------------------------------------


def inf_model() -> DemandModel:
    poisoned = model(3)
    with torch.no_grad():
        poisoned.elasticity_head.weight[0, 0] = float("inf")
    return poisoned


@pytest.mark.parametrize(
    ("candidate", "metrics", "match"),
    [
        (nan_model, {"val_auc": 0.7}, "weights"),
        (inf_model, {"val_auc": 0.7}, "weights"),
        (lambda: model(4), {"val_log_loss": float("nan"), "val_auc": 0.7}, "val_log_loss"),
        (lambda: model(4), {"val_auc": float("inf")}, "val_auc"),
        (lambda: model(4), {"calibration": {"bins": [0.1, float("-inf")]}}, "calibration.bins.1"),
    ],
    ids=["nan-weights", "inf-weights", "nan-val-loss", "inf-auc", "nested-metric"],
)
def test_save_artifact_refuses_a_non_finite_model_and_latest_stays(
    candidate: Callable[[], DemandModel], metrics: dict[str, Any], match: str, tmp_path: Path
) -> None:
    good = save_artifact(model(0), None, {"val_auc": 0.7}, {}, tmp_path, created_at=NOW_S)
    before = sorted(p.name for p in tmp_path.iterdir())
    pointer = (tmp_path / POINTER).read_bytes()
    with pytest.raises(DataError, match=match) as raised:
        save_artifact(candidate(), None, metrics, {}, tmp_path, created_at=NOW_S + 1)
    assert "\n" not in str(raised.value) and "refusing to publish" in str(raised.value)
    assert (tmp_path / POINTER).read_bytes() == pointer
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no version, no staging left
    assert load_artifact(tmp_path, device="cpu").version == good


# -- removing LATEST -------------------------------------------------------------------------------


def test_removing_latest_means_no_model_in_running_and_restarted_workers(tmp_path: Path) -> None:
    clock = [0.0]
    running = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=1, clock=lambda: clock[0])
    version = save_artifact(model(0), None, {}, {}, tmp_path, created_at=NOW_S - 60)
    served = running.current()
    assert served is not None and served.version == version
    inputs = frame(12, seed=3)
    assert (pricing(running).decide(inputs)["model_version"] == version).all()

    (tmp_path / POINTER).unlink()
    assert running.current() is served  # within the check interval nothing is re-read
    clock[0] += 2
    assert running.current() is None  # one interval later: no model, as in a restarted worker
    restarted = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=0)
    assert restarted.current() is None
    for watcher in (running, restarted):
        assert_kill_switch_at_base(pricing(watcher).decide(inputs), inputs)
        assert watcher.load_failures == 0  # a removed model is a decision, not a fault

    # Putting LATEST back (same version) serves it again in both.
    (tmp_path / POINTER).write_text(version + "\n")
    clock[0] += 2
    for watcher in (running, restarted):
        again = watcher.current()
        assert again is not None and again.version == version
