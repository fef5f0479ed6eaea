"""``pricewave profile show|delete`` through the real CLI on an applied repo copy (SQLite)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from pricewave.privacy import pseudonymize_user
from tests.pricewave.commands.test_price import SECRET, pricewave


def test_help_says_what_a_profile_is_and_what_delete_leaves() -> None:
    result = pricewave("profile", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for phrase in ("shopper_profile", "user_session", "pseudonymized", "--shopper-horizon", "delete"):
        assert phrase in text


def test_a_raw_id_passed_as_a_key_is_one_line() -> None:
    result = pricewave("profile", "delete", "--user-key", "alice")
    assert result.returncode == 2
    assert (
        result.stderr.startswith("pricewave: error: --user-key must be a 32-hex") and "Traceback" not in result.stderr
    )


@pytest.mark.integration
@pytest.mark.isolated  # a private copy of the feature repo on SQLite: runs beside the shared-stack tests
def test_show_then_delete_a_shoppers_profile(feature_repo_copy: Path, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    alice, bob = (pseudonymize_user(name, SECRET.encode()) for name in ("alice@example.com", "bob@example.com"))
    rows = tmp_path / "profiles.parquet"
    pd.DataFrame(
        [
            {
                "user_key": key,
                "shopper_views": views,
                "shopper_clicks": 9,
                "shopper_carts": 2,
                "shopper_purchases": 1,
                "shopper_paid_ratio": 0.8,
                "event_time": now,
            }
            for key, views in ((alice, 30), (bob, 12))
        ]
    ).to_parquet(rows)
    repo = ["--repo", str(feature_repo_copy), "--profile", "sqlite"]
    pushed = pricewave("features", "push", "--view", "shopper_profile", "--file", str(rows), *repo)
    assert pushed.returncode == 0, pushed.stderr

    shown = pricewave("profile", "show", "--user", "alice@example.com", "--json", *repo)
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert profile["user_key"] == alice and "alice" not in shown.stdout
    assert profile["shopper_profile"]["shopper_views"] == 30 and profile["user_session"] is None

    deleted = pricewave("profile", "delete", "--user", "alice@example.com", *repo)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"user {alice}: deleted shopper_profile"
    after = json.loads(pricewave("profile", "show", "--user-key", alice, "--json", *repo).stdout)
    assert after["shopper_profile"] is None
    other = json.loads(pricewave("profile", "show", "--user-key", bob, "--json", *repo).stdout)
    assert other["shopper_profile"]["shopper_views"] == 12  # only the asked-for shopper is gone
    again = pricewave("profile", "delete", "--user", "alice@example.com", *repo)
    assert again.returncode == 0 and again.stdout.strip() == f"user {alice}: no profile stored"
