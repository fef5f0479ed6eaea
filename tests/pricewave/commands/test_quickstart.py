"""``pricewave quickstart``'s model and catalog steps: it trains unless it finds a model fresh enough to price
with (``models.max_age_h``), and it loads the catalog of the seed it streams."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pricewave.commands import quickstart
from pricewave.config import load_settings
from pricewave.pricing.artifact import save_artifact
from pricewave.pricing.demand_model import DemandModel


@pytest.mark.parametrize(
    ("model_age_s", "trains"),
    [(None, True), (60.0, False), (load_settings(env={}).models.max_age_s + 600, True)],
    ids=["no-model", "fresh-model", "stale-model"],
)
def test_trains_when_the_model_is_missing_or_past_the_kill_switch_age(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model_age_s: float | None,
    trains: bool,
) -> None:
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    if model_age_s is not None:
        save_artifact(DemandModel(), None, {}, {}, settings.model_dir, created_at=time.time() - model_age_s)
    calls: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(quickstart.subprocess, "run", fake_run)
    quickstart.ensure_model(settings, "holiday_rush")
    assert bool(calls) is trains
    if calls:
        assert calls[0][2:4] == ["pricewave", "train"]
        assert calls[0][4:6] == ["--scenario", "holiday_rush"]  # the market the quickstart streams
    said = capsys.readouterr().out
    if model_age_s is not None and trains:
        assert "h old" in said and "kill switch" in said


def test_trains_when_a_fresh_model_reads_an_older_feature_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from pricewave.pricing.artifact import SPEC
    from pricewave.pricing.features import FEATURE_SPEC_VERSION

    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    version = save_artifact(DemandModel(), None, {}, {}, settings.model_dir, created_at=time.time() - 60)
    version_dir = Path(settings.model_dir) / version
    spec = json.loads((version_dir / SPEC).read_text())
    (version_dir / SPEC).write_text(json.dumps({**spec, "version": FEATURE_SPEC_VERSION - 1}))
    calls: list[list[str]] = []
    monkeypatch.setattr(
        quickstart.subprocess,
        "run",
        lambda command, **_: calls.append(command) or subprocess.CompletedProcess(command, 0),
    )
    quickstart.ensure_model(settings, "small")
    assert calls and calls[0][2:4] == ["pricewave", "train"]  # the job would refuse the old model
    assert f"feature spec v{FEATURE_SPEC_VERSION - 1}" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 7])
def test_the_catalog_written_covers_every_sku_the_simulator_of_that_seed_clicks(
    feature_repo_copy: Path, seed: int
) -> None:
    from pricewave.feature_store import open_store
    from pricewave.simulator.runner import Simulator
    from udfs.pricing import STORE_CONTEXT, read_online

    settings = load_settings().model_copy(update={"feature_repo": str(feature_repo_copy)})
    quickstart.prepare_store(settings, "small", seed)
    simulator = Simulator("small", settings, seed=seed, review_texts=["fine"])
    clicked = sorted(
        {
            emission.record["sku"]
            for emission in simulator.iter_events(max_events=3_000)
            if emission.name == "click_event" and emission.record is not None
        }
    )
    assert len(clicked) >= 10
    catalog = read_online(open_store(settings), [{"sku": sku} for sku in clicked], STORE_CONTEXT)
    unpriceable = [
        sku for sku, base in zip(clicked, catalog["base_price"], strict=True) if base is None or base != base
    ]
    assert unpriceable == [], f"clicked skus without a catalog row: {unpriceable}"
