"""``pricewave price`` and ``pricewave features push`` through the real CLI on an applied repo copy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pricewave.privacy import pseudonymize_user
from pricewave.stack.process import child_environment

SECRET = "cli-test-secret"


def pricewave(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricewave", *args],
        capture_output=True,
        text=True,
        check=False,
        env=child_environment({"PRICEWAVE_USER_KEY_SECRET": SECRET, **(env or {})}),
    )


def decision(sku: str, event_time: int, price: float, user_key: str | None) -> dict[str, Any]:
    return {
        "decision_id": f"d-{sku}-{user_key}",
        "kind": "offer" if user_key else "sku",
        "sku": sku,
        "user_key": user_key,
        "price": price,
        "base_price": 20.0,
        "guardrail": None,
        "guardrails": ["floor"],
        "model_version": "demand-v3",
        "propensity": 1.0,
        "personalized": user_key is not None,
        "decision_time": event_time,
        "event_time": event_time,
    }


def test_help_explains_the_fallback_and_pseudonymization() -> None:
    result = pricewave("price", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for phrase in ("personalized offer", "base price", "pseudonymized", "--user-key", "--channel", "--json"):
        assert phrase in text


def test_user_key_must_be_pseudonymous() -> None:
    result = pricewave("price", "--sku", "A", "--user-key", "alice")
    assert result.returncode == 2
    assert (
        result.stderr.startswith("pricewave: error: --user-key must be a 32-hex") and "Traceback" not in result.stderr
    )


@pytest.mark.integration
@pytest.mark.isolated  # a private copy of the feature repo on SQLite: runs beside the shared-stack tests
def test_push_then_price_for_a_raw_user(feature_repo_copy: Path, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    key = pseudonymize_user("alice@example.com", SECRET.encode())
    offers = tmp_path / "offers.parquet"
    pd.DataFrame([decision("CLI-1", now, 15.5, key)]).to_parquet(offers)
    prices = tmp_path / "prices.parquet"
    pd.DataFrame([decision(f"CLI-{i}", now - i, 18.0, None) for i in range(1, 301)]).to_parquet(prices)
    repo = ["--repo", str(feature_repo_copy), "--profile", "sqlite"]

    pushed = pricewave("features", "push", "--view", "sku_price", "--file", str(prices), "--batch-size", "128", *repo)
    assert pushed.returncode == 0, pushed.stderr
    assert "300 rows read, 300 written" in pushed.stdout
    again = pricewave("features", "push", "--view", "sku_price", "--file", str(prices), *repo)
    assert "300 rows read, 0 written, 300 not newer" in again.stdout
    assert pricewave("features", "push", "--view", "user_offer", "--file", str(offers), *repo).returncode == 0

    shown = pricewave("price", "--sku", "CLI-1", "--user", "alice@example.com", "--json", *repo)
    assert shown.returncode == 0, shown.stderr
    quote = json.loads(shown.stdout)
    assert quote["user_key"] == key and "alice" not in shown.stdout
    assert (quote["price"], quote["source"], quote["personalized"], quote["model_version"]) == (
        15.5,
        "offer",
        True,
        "demand-v3",
    )
    text = pricewave("price", "--sku", "CLI-1", "--user", "alice@example.com", "--channel", "ads_bidding", *repo)
    assert text.returncode == 0
    assert "18.00" in text.stdout and "source        sku" in text.stdout and "personalized  no" in text.stdout
    missing = pricewave("price", "--sku", "NOPE", *repo)
    assert missing.returncode == 1 and "no fresh price" in missing.stdout


@pytest.mark.integration
@pytest.mark.isolated
def test_push_reports_bad_input_clearly(feature_repo_copy: Path, tmp_path: Path) -> None:
    repo = ["--repo", str(feature_repo_copy), "--profile", "sqlite"]
    missing = pricewave("features", "push", "--view", "sku_price", "--file", str(tmp_path / "none.parquet"), *repo)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    rows = tmp_path / "rows.parquet"
    pd.DataFrame([{"sku": "A", "price": 1.0}]).to_parquet(rows)
    lacking = pricewave("features", "push", "--view", "sku_price", "--file", str(rows), *repo)
    assert lacking.returncode == 2 and "event_time" in lacking.stderr
    unknown = pricewave("features", "push", "--view", "nope", "--file", str(rows), *repo)
    assert unknown.returncode == 2 and "unknown feature view" in unknown.stderr
