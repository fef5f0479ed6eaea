"""The network policy through the real Kafka + Flink pipeline agrees with the in-process evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricewave.config import Settings
from pricewave.evaluation.pipeline import (
    DEFAULT_TOLERANCE,
    PERSONALIZATION_ALLOWANCE,
    add_to_report,
    evaluate_through_pipeline,
)

pytestmark = pytest.mark.integration


def test_pipeline_margin_agrees_with_the_in_process_run(
    kafka_stack: Settings, feature_repo_copy: Path, trained_model_dir: Path, tmp_path: Path
) -> None:
    check = evaluate_through_pipeline(
        "small", kafka_stack, model=trained_model_dir, seed=0, events=4000, rate=100.0,
        feature_repo=feature_repo_copy, progress=False,
    )  # fmt: skip
    pipe, local = check["pipeline"], check["in_process"]
    # The shop showed prices the pipeline published (committed), both sku-level and personalized.
    assert pipe["price_sources"].get("sku", 0) > 0, check
    assert pipe["price_sources"].get("offer", 0) > 0, check
    assert check["priced_by_pipeline"]
    # Both runs cover the same simulated minutes with a comparable number of views.
    assert check["window"]["minutes"] >= 5
    assert 0.8 < pipe["views_compared"] / local["views_compared"] < 1.25
    # The stated agreement: the pipeline's paired expected-margin ratio is at most the tolerance
    # below the in-process one (and at most the personalization allowance above it)...
    assert check["tolerance"] == DEFAULT_TOLERANCE
    assert -DEFAULT_TOLERANCE <= check["signed_difference"] <= PERSONALIZATION_ALLOWANCE, check
    assert check["agrees"]
    # ...and that band excludes list prices everywhere (a pipeline that never reached the shop).
    assert check["list_price_difference"] > DEFAULT_TOLERANCE, check

    # The section lands in an existing report under "through_pipeline".
    (tmp_path / "report.json").write_text(json.dumps({"scenario": "small"}))
    (tmp_path / "report.md").write_text("# report\n")
    add_to_report(tmp_path, check)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["through_pipeline"]["relative_difference"] == check["relative_difference"]
    assert "through the real pipeline" in (tmp_path / "report.md").read_text()
