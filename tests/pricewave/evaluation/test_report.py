"""Closed-loop evaluation on `small`, any scenario file, and the Ta Feng real-data check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pricewave.cli import main
from pricewave.config import load_settings
from pricewave.errors import DataError
from pricewave.evaluation import POLICIES, evaluate, evaluate_ta_feng
from pricewave.pricing.features import assert_no_protected_inputs

SETTINGS = load_settings(env={})
torch.set_num_threads(1)
POLICY_KEYS = {
    "revenue", "margin", "expected_margin", "conversion", "regret", "regret_personalized", "price_error",
    "paired_margin_vs_static", "margin_vs_static",
}  # fmt: skip


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("eval-small")
    # 25,000 and 50,000 until 2026-12-07 (133 s of CI); at these sizes (seed 0) the network is +9.7 % over static
    # on paired margin, regret -3.6 % vs linear 13.2 %, 86 % of views at an offer: far from every bound below.
    report = evaluate("small", out, SETTINGS, seed=0, events=15_000, warmup_events=30_000, progress=False)
    return report, out


def test_network_beats_static_margin_and_linear_regret_on_small(small_report: tuple[dict[str, Any], Path]) -> None:
    report, _ = small_report
    policies = report["policies"]
    # margin on the same views (common random numbers): what the static list price earns on them
    assert policies["network"]["paired_margin_vs_static"] > 0
    assert policies["static"]["paired_margin_vs_static"] == 0
    assert policies["network"]["regret"] < policies["static"]["regret"]
    assert policies["network"]["regret"] < policies["linear"]["regret"]
    assert report["checks"]["network_margin_above_static"] and report["checks"]["network_regret_below_linear"]


def test_report_files_and_keys(small_report: tuple[dict[str, Any], Path]) -> None:
    report, out = small_report
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["policies"].keys() == set(POLICIES)
    for figures in on_disk["policies"].values():
        assert figures.keys() >= POLICY_KEYS
        assert figures["views"] > 0 and 0 < figures["conversion"] < 1
    assert {"price_error", "regret"} <= on_disk["definitions"].keys()
    elasticity = on_disk["elasticity"]
    assert elasticity["n"] > 0 and -1 <= elasticity["pearson"] <= 1
    for name in ("report.md", *report["plots"]):
        assert (out / name).stat().st_size > 0, name
    assert "| network |" in (out / "report.md").read_text()
    # The network's run prices the job's offers too; on `small` shoppers come back to the same skus.
    network = on_disk["policies"]["network"]
    assert 0 < network["offers_discounted"] <= network["offers_priced"]
    assert 0.3 < network["views_at_offer_share"] < 1
    assert "offers_priced" not in on_disk["policies"]["static"]
    assert "personalized offers" in (out / "report.md").read_text()


def test_any_scenario_file_works(tmp_path: Path) -> None:
    scenario = {
        "name": "tiny-no-competitors",
        "catalog": {"n_skus": 3, "categories": [{"name": "tea", "cost_min": 2, "cost_max": 4}]},
        "users": {"n_users": 20, "sessions_per_hour": 900, "segments": [{"name": "all"}]},
        "competitors": {"names": []},
        "seasonality": {"holidays": [{"name": "sale", "start_day": 0, "duration_days": 1}]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(scenario))
    report = evaluate(
        path, tmp_path / "out", SETTINGS, events=2_000, warmup_events=3_000, policies=["competitor_match"],
        progress=False,
    )  # fmt: skip
    assert report["policies"].keys() == {"static", "competitor_match"}
    # without competitors the rule keeps the list price
    assert report["policies"]["competitor_match"]["margin"] == pytest.approx(report["policies"]["static"]["margin"])
    assert (tmp_path / "out" / "report.json").is_file()


def test_evaluate_real_ta_feng_subset_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate-real", "ta-feng", "--out", str(tmp_path), "--limit", "150", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report["products"] == 150 and report["held_out_month"] == "2001-02"
    assert report["train_months"] == ["2000-11", "2000-12", "2001-01"]
    assert report["model"]["mae"] < report["baseline"]["mae"]
    assert 0 <= report["negative_elasticity_share"] <= 1
    assert not {"age_group", "pin_code"} & set(report["design_columns"])
    with pytest.raises(DataError, match="protected"):
        assert_no_protected_inputs([*report["design_columns"], "age_group"])


@pytest.mark.slow
def test_evaluate_real_ta_feng_all_products(tmp_path: Path) -> None:
    report = evaluate_ta_feng(SETTINGS, tmp_path, progress=False)
    assert report["products"] > 10_000
    assert report["model"]["mae"] < report["baseline"]["mae"]
    assert report["model"]["rmse"] < report["baseline"]["rmse"]


def test_the_network_prices_price_sensitive_shoppers_lower_from_their_profile(
    small_report: tuple[dict[str, Any], Path],
) -> None:
    report, out = small_report
    response = report["shopper_response"]
    by_segment = {row["segment"]: row for row in response["segments"]}
    assert by_segment.keys() == {"bargain", "premium"}
    # The oracle prices bargain hunters lower; the model, which never sees the segment, learns the same
    # from the shoppers' profiles, and without a profile prices every shopper alike.
    assert by_segment["bargain"]["oracle"] < by_segment["premium"]["oracle"]
    assert by_segment["bargain"]["with_profile"] < by_segment["premium"]["with_profile"]
    assert by_segment["bargain"]["without_profile"] == pytest.approx(by_segment["premium"]["without_profile"])
    assert response["spread_captured"] > 0.1 and response["spread_captured_without_profile"] == pytest.approx(0)
    assert "Between-segment spread reproduced" in (out / "report.md").read_text()
