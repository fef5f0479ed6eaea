"""Training: point-in-time correctness (no leak), a model that beats a constant, the CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pricewave.config import load_settings
from pricewave.errors import DataError
from pricewave.pricing.artifact import POINTER, load_artifact
from pricewave.simulator.scenario import load_scenario
from pricewave.training import (
    ExplorationPriceBook,
    entity_frame,
    feature_frames,
    fit_demand_model,
    generate_history,
    holiday_calendar,
    load_history,
    point_in_time_join,
    prepare_feature_repo,
    train,
)

SETTINGS = load_settings(env={})
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 25 simulated minutes of `small` at explored prices (25,000 events until 2026-12-07: CI time)."""
    out = tmp_path_factory.mktemp("history")
    return generate_history("small", SETTINGS, out, events=12_000, seed=1, progress=False, review_texts=["ok"])


def test_exploration_prices_are_deterministic_varied_and_bounded() -> None:
    book = ExplorationPriceBook({"A": (8.0, 15.0)}, seed=4, interval_s=300)
    prices = [book.price_for("u", "A", 10.0, t * 60_000)[0] for t in range(0, 600, 5)]
    assert prices == [ExplorationPriceBook({"A": (8.0, 15.0)}, seed=4).price_for("u", "A", 10.0, t * 60_000)[0]
                      for t in range(0, 600, 5)]  # fmt: skip
    assert min(prices) >= 8.0 and max(prices) <= 13.5 and np.std(np.log(prices)) > 0.05
    book.until_ms = 1_000
    assert book.price_for("u", "A", 10.0, 2_000) == (10.0, "list")  # after exploration: a plain price book


def test_point_in_time_join_never_uses_a_feature_stamped_after_the_decision(history_dir: Path, tmp_path: Path) -> None:
    history = load_history(history_dir)
    entities = entity_frame(history.exposures)
    middle = entities.iloc[len(entities) // 2]
    decision_ms, sku, user = int(middle["decision_ms"]), middle["sku"], middle["user_key"]
    entities = entities[entities["decision_ms"] <= decision_ms]  # decisions up to the chosen one
    frames = feature_frames(history)
    demand, session = frames["sku_demand"], frames["user_session"]
    template = demand[demand["sku"] == sku].iloc[[-1]]
    at_decision = template.assign(views_5m=777_777, event_time=decision_ms)
    # The label's time is the view, 1 ms after the decision: plant extremes there and later.
    future = pd.concat([template.assign(views_5m=10**9, event_time=decision_ms + lag) for lag in (1, 2, 60_000)])
    frames["sku_demand"] = pd.concat([demand, at_decision, future], ignore_index=True)
    session_row = session[session["user_key"] == user].iloc[[-1]]
    frames["user_session"] = pd.concat(
        [session, session_row.assign(recent_views=10**9, event_time=decision_ms + 1)], ignore_index=True
    )
    repo = prepare_feature_repo(frames, tmp_path, SETTINGS)
    joined = point_in_time_join(repo, entities, SETTINGS)
    assert len(joined) == len(entities)
    assert (joined["views_5m"] != 10**9).all()
    assert (joined["recent_views"] != 10**9).all()
    chosen = joined[(joined["decision_ms"] == decision_ms) & (joined["sku"] == sku)]
    assert (chosen["views_5m"] == 777_777).all()  # the newest row at or before the decision IS used
    # and nothing newer than each row's own decision time: demand rows are stamped at window ends
    assert ((joined["views_5m"] == 777_777) <= (joined["decision_ms"] >= decision_ms)).all()


def test_is_holiday_comes_from_the_scenario_of_a_simulated_history_else_from_the_jobs_calendar(
    history_dir: Path,
) -> None:
    history = load_history(history_dir)
    assert history.scenario is not None
    rush = history.scenario.model_copy(update={"seasonality": load_scenario("holiday_rush").seasonality})
    calendar = holiday_calendar(dataclasses.replace(history, scenario=rush), SETTINGS)
    assert calendar == rush.holiday_calendar() and len(calendar) >= 2
    configured = load_settings(env={"PRICEWAVE_HOLIDAYS": "[{name: sale, start: 2026-11-27, end: 2026-11-28}]"})
    assert holiday_calendar(dataclasses.replace(history, scenario=None), configured) == configured.holidays


def test_fit_recovers_a_known_elasticity() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    ratio = rng.uniform(-0.3, 0.3, n)
    views = rng.integers(5, 200, n)
    logit = -2.0 + 0.4 * np.log1p(views) - 2.5 * ratio
    frame = pd.DataFrame(
        {
            "views_5m": views, "carts_5m": 1, "purchases_5m": 1, "conversion_5m": 0.1, "views_1h": views * 10,
            "purchases_1h": 5, "conversion_1h": 0.1, "base_price": 10.0,
            "event_time": 1_736_121_600_000 + np.arange(n) * 1000, "log_price_ratio": ratio,
            "purchased": rng.random(n) < 1 / (1 + np.exp(-logit)),
        }
    )  # fmt: skip
    fit = fit_demand_model(frame, epochs=30, patience=4, progress=False)
    assert fit.metrics["mean_elasticity"] == pytest.approx(2.5, abs=0.4)
    assert fit.metrics["val_log_loss"] < fit.metrics["val_constant_log_loss"]
    with pytest.raises(DataError, match="never differ from the list price"):
        fit_demand_model(frame.assign(log_price_ratio=0.0), epochs=1, progress=False)


def test_train_writes_a_loadable_artifact_that_beats_a_constant(history_dir: Path, tmp_path: Path) -> None:
    result = train(history_dir, tmp_path / "models", SETTINGS, epochs=25, patience=4, progress=False)
    artifact = load_artifact(tmp_path / "models", device="cpu")
    assert artifact.version == result.version == (tmp_path / "models" / POINTER).read_text().strip()
    m = artifact.metrics
    assert m["val_log_loss"] < m["val_constant_log_loss"]
    assert 0.5 < m["val_auc"] <= 1 and 0 <= m["val_calibration_error"] < 0.1
    history = load_history(history_dir)
    assert artifact.data_range["start_ms"] == history.time_range[0]
    assert artifact.data_range["end_ms"] == history.time_range[1]
    for name in ("card.md", "calibration.png", "metrics.json", "feature_spec.json"):
        assert (result.path / name).stat().st_size > 0, name
    assert "log loss" in (result.path / "card.md").read_text()
    x = torch.zeros(1, artifact.model.n_features, dtype=torch.float64)
    probs = artifact.model(x, None, torch.tensor([[-0.2, 0.0, 0.2]], dtype=torch.float64))
    assert bool((probs[0, 1:] < probs[0, :-1]).all())


def test_train_rejects_a_directory_that_is_not_a_history(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a simulator history"):
        load_history(tmp_path)


@pytest.mark.parametrize("fault", ["nan-weights", "nan-metric"])
def test_train_refuses_to_publish_a_non_finite_model(
    fault: str, history_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit that diverged (NaN weights or validation metrics) raises one line; LATEST does not move."""
    import pricewave.training as training
    from pricewave.pricing.artifact import save_artifact
    from pricewave.pricing.demand_model import DemandModel

    models = tmp_path / "models"
    previous = save_artifact(DemandModel(hidden=8), None, {"val_auc": 0.7}, {}, models)
    before = sorted(p.name for p in models.iterdir())
    real_fit = training.fit_demand_model

    def diverged(*args: object, **kwargs: object) -> training.FitResult:
        fit = real_fit(*args, **kwargs)  # type: ignore[arg-type]
        if fault == "nan-weights":
            with torch.no_grad():
                next(fit.model.parameters()).fill_(float("nan"))
        else:
            fit.metrics["val_log_loss"] = float("nan")
        return fit

    monkeypatch.setattr(training.fit, "fit_demand_model", diverged)  # where train() calls it
    with pytest.raises(DataError, match="refusing to publish") as raised:
        train(history_dir, models, SETTINGS, epochs=1, patience=1, progress=False)
    assert "\n" not in str(raised.value)
    assert (models / POINTER).read_text().strip() == previous
    assert sorted(p.name for p in models.iterdir()) == before
    assert load_artifact(models, device="cpu").version == previous


def test_cli_train_generates_a_history_and_saves_a_model(tmp_path: Path) -> None:
    out = tmp_path / "models"
    completed = subprocess.run(
        [sys.executable, "-m", "pricewave", "train", "--scenario", "small", "--events", "6000", "--epochs", "3",
         "--out", str(out), "--json", "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": str(Path(sys.executable).parent), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (out / POINTER).read_text().strip() == summary["version"]
    assert summary["metrics"]["train_rows"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "pricewave", "train", "--history", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "not a simulator history" in bad.stderr


def test_scenario_is_saved_with_a_generated_history(history_dir: Path) -> None:
    assert load_history(history_dir).scenario == load_scenario("small")


def test_a_recent_history_ends_now_so_its_time_features_are_the_live_markets(tmp_path: Path) -> None:
    """``train --recent`` (the quickstart's model): trained on the hours the live market runs in."""
    import time

    import pandas as pd

    started_ms = time.time() * 1000
    out = generate_history(
        "small", SETTINGS, tmp_path / "h", events=3_000, seed=1, progress=False, review_texts=["ok"], ending_now=True
    )
    clicks = pd.read_parquet(out / "click_event.parquet")["event_time"]
    default = generate_history("small", SETTINGS, tmp_path / "d", events=3_000, seed=1, progress=False,
                               review_texts=["ok"])  # fmt: skip
    span_ms = clicks.max() - clicks.min()
    assert span_ms > 60_000  # minutes of simulated time, not a point
    # Ends within a few minutes of now (the exploring shop's prices change sessions a little).
    assert abs(clicks.max() - started_ms) < max(0.2 * span_ms, 300_000), (clicks.max(), started_ms)
    assert pd.read_parquet(default / "click_event.parquet")["event_time"].max() < started_ms - 86_400_000 * 300
