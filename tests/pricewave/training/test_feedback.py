"""``pricewave train --from-log``: a decision log joined to the clicks that saw its prices, trained on, gated.

The log is the serving model's closed-loop run on ``small`` with exploration, written row by row
with the job's own decision-log function (:func:`udfs.pricing.decisions_frame`); the clicks are
that run's clickstream, so every attributed view and purchase can be checked against the run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricewave.config import Settings
from pricewave.evaluation.closed_loop import run_policy
from pricewave.evaluation.policies import Pricer
from pricewave.job.sinks import DECISION_LOG_COLUMNS
from pricewave.pricing.artifact import load_artifact
from pricewave.pricing.guardrails import job_guardrails
from pricewave.simulator.scenario import load_scenario
from pricewave.stack.process import child_environment
from pricewave.training.feedback import (
    decision_log_frame,
    decisions_with_outcomes,
    split_by_time,
    training_rows,
)
from pricewave.training.promotion import GATE_FILE
from udfs.pricing import decisions_frame

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Logged:
    run: pd.DataFrame  # the closed loop's own per-decision figures
    log_dir: Path
    history: Path
    serving_dir: Path


@pytest.fixture(scope="module")
def logged(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Logged:
    work = tmp_path_factory.mktemp("feedback")
    serving = load_artifact(trained_model_dir, device="cpu")
    # The job's guardrails, without the staleness kill switch (the log is replayed long after training).
    guardrails = dataclasses.replace(job_guardrails(settings), max_model_age_s=365 * 86_400.0)
    pricer = Pricer("network", guardrails, artifact=serving, exploration_epsilon=0.2)
    trace = run_policy(
        pricer, load_scenario("small"), settings, seed=3, warmup_events=20_000, interval_s=300, steps=150,
        progress=False, keep_clicks=True, offers=False,  # the log below holds the sku decisions only
    )  # fmt: skip
    log_dir = work / "decision_log" / "2026-12-06--10"
    log_dir.mkdir(parents=True)
    with (log_dir / "part-0-0").open("w") as part:
        for frame in trace.decisions:
            decided = pricer.network.decide(frame)  # the same decisions again: exploration is keyed
            np.testing.assert_array_equal(decided["price"].to_numpy(dtype=float), frame["price"].to_numpy())
            rows = decisions_frame("sku", frame, decided, now_ms=int(frame["event_time"].iloc[0]) + 50)
            for row in rows.to_dict("records"):
                part.write(json.dumps({name: row[name] for name in DECISION_LOG_COLUMNS}) + "\n")
    history = work / "history"
    history.mkdir()
    pd.concat(trace.clicks, ignore_index=True).to_parquet(history / "click_event.parquet")
    first = trace.decisions[0]
    first[["sku", "base_price", "cost", "map_price"]].assign(ceiling_price=first["ceiling"]).to_parquet(
        history / "catalog.parquet"
    )
    return Logged(pd.concat(trace.decisions, ignore_index=True), work / "decision_log", history, trained_model_dir)


def _joined(logged: Logged) -> pd.DataFrame:
    clicks = pd.read_parquet(logged.history / "click_event.parquet")
    catalog = pd.read_parquet(logged.history / "catalog.parquet")
    return decisions_with_outcomes(decision_log_frame(logged.log_dir), clicks, catalog)


def test_every_view_and_purchase_is_attributed_to_the_decision_it_saw(logged: Logged) -> None:
    joined = _joined(logged).set_index(["sku", "event_time"]).sort_index()
    run = logged.run.set_index(["sku", "event_time"]).sort_index()
    assert len(joined) == len(run) and joined.index.equals(run.index)
    # A view sees the price in force, so views match the run's interval by interval. A purchase goes
    # to the decision whose price its shopper saw, the run counts it in the interval it fell in; in
    # total they agree, less purchases at prices shown before the first decision.
    np.testing.assert_array_equal(joined["views"], run["views"])
    assert 0.98 * run["purchases"].sum() <= joined["purchases"].sum() <= run["purchases"].sum()
    assert 0.98 * run["margin"].sum() <= joined["margin"].sum() <= run["margin"].sum() + 1e-6
    np.testing.assert_allclose(joined["propensity"], run["propensity"], rtol=1e-12)
    # The features the decision was priced on came back from features_json, and the guardrails' inputs
    # from the catalog and the sku's previous decision.
    np.testing.assert_allclose(joined["views_5m"], run["views_5m"])
    np.testing.assert_allclose(joined["last_published"].fillna(-1), run["last_published"].fillna(-1))
    assert joined["views"].sum() > 10_000 and joined["purchases"].sum() > 500


def test_training_rows_label_as_many_views_bought_as_the_decision_sold() -> None:
    logged = pd.DataFrame(
        {"sku": ["a", "b"], "price": [9.0, 11.0], "base_price": [10.0, 10.0], "views": [3, 2], "purchases": [1, 2]}
    )
    rows = training_rows(logged)
    assert rows["sku"].tolist() == ["a", "a", "a", "b", "b"]
    assert rows["purchased"].tolist() == [True, False, False, True, True]
    assert rows["user_key"].isna().all()
    np.testing.assert_allclose(rows["log_price_ratio"], np.log([0.9, 0.9, 0.9, 1.1, 1.1]))
    early, late = split_by_time(pd.DataFrame({"event_time": [0, 10, 70, 100]}), 0.3)
    assert early["event_time"].tolist() == [0, 10] and late["event_time"].tolist() == [70, 100]


def test_a_log_with_no_decision_shown_yet_is_too_short_and_says_so(tmp_path: Path) -> None:
    """A job that just started: decisions logged, none seen by a click yet. Nothing is trained."""
    from pricewave.errors import DataError
    from pricewave.training.feedback import train_from_log

    unseen = pd.DataFrame(
        {"sku": ["a", "b"], "base_price": [10.0, 10.0], "cost": [6.0, 6.0], "event_time": [0, 60_000],
         "price": [9.5, 10.5], "propensity": [0.5, 0.5], "views": [0, 0], "purchases": [0, 0], "margin": [0.0, 0.0]}
    )  # fmt: skip
    with pytest.raises(DataError, match=r"holds 0 shown sku decisions.*let the job run longer"):
        train_from_log(unseen, tmp_path / "models", guardrails=job_guardrails(Settings()))
    assert not (tmp_path / "models").exists()


def _train(args: list[str], state: Path) -> subprocess.CompletedProcess[str]:
    env = child_environment({"PRICEWAVE_STATE_DIR": str(state), "OMP_NUM_THREADS": "1"})
    return subprocess.run(
        [sys.executable, "-m", "pricewave", "train", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_train_from_log_gates_the_candidate_and_moves_latest_only_when_it_passes(
    logged: Logged, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(logged.serving_dir, models)
    serving = (models / "LATEST").read_text().strip()
    common = ["--from-log", str(logged.log_dir), "--clicks-from", str(logged.history), "--out", str(models)]
    done = _train([*common, "--epochs", "4", "--no-progress", "--json"], tmp_path / "state")
    assert done.returncode in (0, 3), done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    gate = json.loads((models / result["version"] / GATE_FILE).read_text())
    assert gate == result["gate"]
    assert result["promoted"] == (done.returncode == 0) == gate["promote"]
    assert (models / "LATEST").read_text().strip() == (result["version"] if result["promoted"] else serving)
    assert result["train_decisions"] + result["gate_decisions"] == len(logged.run[logged.run["views"] > 0])
    assert gate["decisions"] == result["gate_decisions"]
    for name in ("candidate", "serving"):
        assert set(gate[name]) == {"ips", "snips", "doubly_robust"}
    assert gate["difference"]["low"] <= gate["difference"]["value"] <= gate["difference"]["high"]

    # Readable output, and a refusal by the calibration limit leaves LATEST where it was.
    before = (models / "LATEST").read_text().strip()
    strict = _train([*common, "--epochs", "2", "--no-progress", "--max-calibration-error", "0.000001"], tmp_path)
    assert strict.returncode == 3, strict.stdout + strict.stderr
    assert "REFUSE" in strict.stdout and "calibration error" in strict.stdout
    assert f"refused: LATEST still names {before}" in strict.stdout
    assert (models / "LATEST").read_text().strip() == before


def test_continuous_mode_runs_rounds_on_a_schedule_and_bad_arguments_say_what_to_do(
    logged: Logged, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(logged.serving_dir, models)
    versions = set(p.name for p in models.iterdir())
    args = ["--from-log", str(logged.log_dir), "--clicks-from", str(logged.history), "--out", str(models)]
    done = _train([*args, "--epochs", "2", "--no-progress", "--json", "--every", "1", "--rounds", "2"], tmp_path)
    assert done.returncode in (0, 3), done.stderr
    rounds = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert len(rounds) == 2
    new = set(p.name for p in models.iterdir()) - versions - {"LATEST"}
    assert new == {r["version"] for r in rounds}
    assert all((models / v / GATE_FILE).is_file() for v in new)

    wrong = _train(["--history", str(logged.history), "--from-log", str(logged.log_dir)], tmp_path)
    assert wrong.returncode != 0 and "--history and --from-log are two sources" in wrong.stderr
    empty = _train(["--from-log", str(tmp_path / "nothing"), "--out", str(models)], tmp_path)
    assert empty.returncode != 0 and "no decision log at" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1


def test_the_log_reader_keeps_published_sku_decisions_once_and_says_when_there_are_none(tmp_path: Path) -> None:
    from pricewave.errors import DataError

    def row(decision_id: str, kind: str, price: float | None) -> str:
        features = json.dumps({"views_5m": 3})
        return json.dumps(
            {"decision_id": decision_id, "kind": kind, "sku": "A", "price": price, "propensity": 0.9,
             "base_price": 10.0, "event_time": 1_700_000_000_000, "features_json": features}
        )  # fmt: skip

    with pytest.raises(DataError, match="no decision log at"):
        decision_log_frame(tmp_path / "absent")
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / ".part-0.inprogress").write_text(row("a", "sku", 9.99) + "\n")  # not committed yet
    (tmp_path / "log" / "part-0").write_text(row("b", "offer", 8.99) + "\n" + row("c", "sku", None) + "\n")
    with pytest.raises(DataError, match="holds no published sku decision yet"):
        decision_log_frame(tmp_path / "log")
    (tmp_path / "log" / "part-1").write_text(row("d", "sku", 9.49) + "\n" + row("d", "sku", 9.49) + "\nnot json\n")
    frame = decision_log_frame(tmp_path / "log")
    assert frame["decision_id"].tolist() == ["d"]
    assert frame["views_5m"].tolist() == [3] and "features_json" not in frame.columns
