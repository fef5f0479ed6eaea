"""Model artifacts: layout, round trip, refusal of bad ones, hot reload without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from pricewave.errors import DataError
from pricewave.pricing.artifact import POINTER, SERVING_DTYPE, ArtifactWatcher, load_artifact, save_artifact
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import FEATURE_NAMES, N_FEATURES, feature_spec

torch.set_num_threads(1)


def model(seed: int) -> DemandModel:
    torch.manual_seed(seed)
    return DemandModel(hidden=16)


def test_layout_and_round_trip(tmp_path: Path) -> None:
    original = model(0)
    version = save_artifact(original, None, {"auc": 0.7}, {"start_ms": 1, "end_ms": 2}, tmp_path, created_at=1e9)
    assert (tmp_path / POINTER).read_text().strip() == version
    assert sorted(p.name for p in (tmp_path / version).iterdir()) == ["feature_spec.json", "metrics.json", "weights.pt"]
    assert json.loads((tmp_path / version / "feature_spec.json").read_text())["feature_names"] == list(FEATURE_NAMES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind

    loaded = load_artifact(tmp_path, device="cpu")
    assert (loaded.version, loaded.metrics, loaded.data_range) == (version, {"auc": 0.7}, {"start_ms": 1, "end_ms": 2})
    assert loaded.created_at == 1e9 and loaded.age_s(now=1e9 + 60) == 60
    assert not loaded.model.training
    x, emb, ratio = (
        torch.randn(5, N_FEATURES, dtype=torch.float64),
        torch.randn(5, 384, dtype=torch.float64),
        torch.randn(5, 3, dtype=torch.float64),
    )
    assert all(p.dtype == SERVING_DTYPE for p in loaded.model.parameters())
    assert torch.equal(loaded.model(x, emb, ratio), original.eval().to(SERVING_DTYPE)(x, emb, ratio))
    assert load_artifact(tmp_path / version, device="cpu").version == version  # a version dir works too


def test_versions_are_unique_and_latest_moves(tmp_path: Path) -> None:
    first = save_artifact(model(0), None, {}, {}, tmp_path, created_at=1e9)
    second = save_artifact(model(1), None, {}, {}, tmp_path, created_at=1e9)
    assert first != second
    assert load_artifact(tmp_path, device="cpu").version == second


def test_missing_or_mismatched_artifacts_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no model artifact"):
        load_artifact(tmp_path)
    version = save_artifact(model(0), None, {}, {}, tmp_path)
    spec_path = tmp_path / version / "feature_spec.json"
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**spec, "feature_names": list(reversed(spec["feature_names"]))}))
    with pytest.raises(DataError, match="retrain"):
        load_artifact(tmp_path)
    (tmp_path / version / "weights.pt").unlink()
    with pytest.raises(DataError, match="incomplete"):
        load_artifact(tmp_path)


def test_protected_inputs_in_a_spec_are_refused(tmp_path: Path) -> None:
    spec = feature_spec()
    spec["feature_names"] = [*spec["feature_names"][:-1], "age_group"]
    with pytest.raises(DataError, match="age_group"):
        save_artifact(model(0), spec, {}, {}, tmp_path)


def test_watcher_hot_swaps_new_versions(tmp_path: Path) -> None:
    now = [0.0]
    watcher = ArtifactWatcher(tmp_path, device="cpu", check_interval_s=10, clock=lambda: now[0])
    assert watcher.current() is None  # nothing published yet
    first = save_artifact(model(0), None, {}, {}, tmp_path)
    assert watcher.current() is None  # checked less than 10 s ago
    now[0] = 11
    served = watcher.current()
    assert served is not None and served.version == first
    now[0] = 12
    assert watcher.current() is served  # no reload without a new pointer

    time.sleep(0.01)  # a distinct pointer mtime
    second = save_artifact(model(1), None, {}, {}, tmp_path)
    now[0] = 30
    swapped = watcher.current()
    assert swapped is not None and swapped.version == second and watcher.reloads == 2

    (tmp_path / POINTER).write_text("demand-does-not-exist\n")  # a broken pointer keeps the old model
    now[0] = 50
    assert watcher.current() is swapped


def test_artifact_age_without_loading_the_model(tmp_path: Path) -> None:
    from pricewave.pricing.artifact import artifact_age_s

    assert artifact_age_s(tmp_path) is None  # nothing trained yet
    save_artifact(model(0), feature_spec(), {}, {}, tmp_path, created_at=1_767_225_600.0)
    assert artifact_age_s(tmp_path, now=1_767_225_600.0 + 7200) == pytest.approx(7200)
    (tmp_path / POINTER).write_text("../elsewhere")  # a broken pointer reads as "no model", not a crash
    assert artifact_age_s(tmp_path) is None


def test_a_served_row_does_not_depend_on_its_batch(tmp_path: Path) -> None:
    # A replay batches rows differently from the first run: a row's base logit and elasticity must
    # not move with them, or a near-tie between two candidate prices flips (float32 moves ~1e-7).
    save_artifact(model(0), None, {}, {}, tmp_path, created_at=1e9)
    served = load_artifact(tmp_path, device="cpu").model
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2000, N_FEATURES, generator=generator, dtype=torch.float64)
    emb = torch.randn(2000, 384, generator=generator, dtype=torch.float64)
    with torch.inference_mode():
        together = torch.stack(served.decompose(x, emb))
        alone = torch.cat([torch.stack(served.decompose(x[i : i + 1], emb[i : i + 1])) for i in range(2000)], dim=1)
    assert float((together - alone).abs().max()) < 1e-12
