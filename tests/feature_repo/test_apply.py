"""The Feast feature repo: `feast apply` on a fresh copy, profiles, config errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from pricewave.config import load_settings
from pricewave.errors import ConfigError
from pricewave.feature_store import PROFILE_ENV, FeatureWriter, get_price, load_repo_config, open_store
from pricewave.schemas import feast_fields
from tests.conftest import run_feast

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
VIEWS = {
    "sku_demand": ("sku_demand", ["sku"]),
    "sku_competition": ("sku_competition", ["sku"]),
    "sku_review_summary": ("sku_review_summary", ["sku"]),
    "user_session": ("user_session", ["user_key"]),
    "shopper_profile": ("shopper_profile", ["user_key"]),
    "sku_catalog": ("sku_catalog", ["sku"]),
    "sku_price": ("price_decision", ["sku"]),
    "user_offer": ("price_decision", ["user_key", "sku"]),
}


def fresh_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return repo


@pytest.mark.integration
def test_feast_apply_runs_clean_on_a_fresh_copy(tmp_path: Path) -> None:
    repo = fresh_copy(tmp_path)
    result = run_feast(repo, "apply", env={PROFILE_ENV: "feature_store.yaml"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stdout
    store = FeatureStore(repo_path=str(repo))
    assert sorted(view.name for view in store.list_feature_views()) == sorted(VIEWS)
    assert sorted(service.name for service in store.list_feature_services()) == [
        "ads_bidding",
        "app_pricing",
        "checkout_pricing",
    ]
    assert sorted(entity.name for entity in store.list_entities()) == ["sku", "user"]
    assert store.get_entity("user").join_key == "user_key"
    for name, (schema, keys) in VIEWS.items():
        view = store.get_feature_view(name)
        assert sorted(column.name for column in view.entity_columns) == sorted(keys)
        stored_columns = set(pq.read_schema(repo / "data" / f"{name}.parquet").names)
        assert {*keys, "event_time"} <= stored_columns, name
        # Fields come from the schema registry: same names and types, no hand-written copy.
        expected = {field.name: field.dtype for field in feast_fields(schema) if field.name in
                    {f.name for f in view.features}}  # fmt: skip
        assert {field.name: field.dtype for field in view.features} == expected, name
        assert view.batch_source is not None and view.batch_source.timestamp_field == "event_time"
    ttls = {name: store.get_feature_view(name).ttl for name in VIEWS}
    assert ttls["user_offer"] == timedelta(minutes=15)
    assert ttls["user_offer"] < ttls["user_session"] < ttls["sku_price"] < ttls["sku_catalog"]  # type: ignore[operator]
    assert len([f for f in store.get_feature_view("sku_review_summary").features if f.name == "review_embedding"]) == 1
    again = run_feast(repo, "apply", env={PROFILE_ENV: "feature_store.yaml"})
    assert again.returncode == 0 and "No changes to registry" in again.stdout


@pytest.mark.integration
def test_one_setting_switches_feast_and_pricewave_to_redis(
    feature_repo_copy: Path, redis_env: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Feast expands ${VAR} in feature_store.redis.yaml from the environment: the real CLI proves it.
    env = {
        PROFILE_ENV: "feature_store.redis.yaml",
        "PRICEWAVE_REDIS__HOST": redis_server.host,
        "PRICEWAVE_REDIS__PORT": str(redis_server.port),
        "PRICEWAVE_REDIS_PASSWORD": redis_server.password,
    }
    result = run_feast(feature_repo_copy, "apply", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert redis_server.password not in (feature_repo_copy / "feature_store.redis.yaml").read_text()
    monkeypatch.setenv(PROFILE_ENV, "feature_store.redis.yaml")
    store = open_store(redis_env, repo_path=feature_repo_copy)
    assert store.config.online_store.type == "redis"
    row = {"sku": "SW-1", "base_price": 5.0, "cost": 1.0, "map_price": None, "ceiling_price": 9.0,
           "category": "x", "event_time": 1_790_000_000_000}  # fmt: skip
    FeatureWriter(store).write("sku_catalog", [row])
    assert redis_server.client().dbsize() > 0
    assert get_price(store, "SW-1").source in ("base", "unavailable")
    monkeypatch.delenv(PROFILE_ENV)
    assert open_store(redis_env, repo_path=feature_repo_copy).config.online_store.type == "sqlite"


def test_profiles_keep_secrets_out_of_the_files() -> None:
    redis_yaml = (REPO / "feature_store.redis.yaml").read_text()
    assert "${PRICEWAVE_REDIS_PASSWORD}" in redis_yaml
    config = load_repo_config(
        REPO, "redis", load_settings(env={}), env={"PRICEWAVE_REDIS_PASSWORD": "s3cret", PROFILE_ENV: ""}
    )
    assert config.online_store.connection_string == "127.0.0.1:6379,password=s3cret"
    assert config.entity_key_serialization_version == 3
    sqlite = load_repo_config(REPO, None, load_settings(env={}), env={})
    assert sqlite.online_store.type == "sqlite" and sqlite.offline_store.type == "file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("project: pricewave\nregistry: data/registry.db\nprovider: local\nonline_store:\n  type: nosuchstore\n",
         "invalid feature_store.yaml"),
        ("project: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("project: pricewave\nregistry: data/registry.db\nprovider: local\nonline_store:\n  type: redis\n"
         "  connection_string: ${PRICEWAVE_TEST_UNSET_VAR}\n", "PRICEWAVE_TEST_UNSET_VAR"),
        ("project: pricewave\nregistry: data/registry.db\nprovider: local\nonline_store:\n  type: sqlite\n"
         "  pathh: x.db\n", "invalid feature_store.yaml"),
    ],
)  # fmt: skip
def test_invalid_feature_store_yaml_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "feature_store.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        open_store(load_settings(env={}), repo_path=tmp_path, profile="sqlite")
    assert str(tmp_path / "feature_store.yaml") in str(raised.value)
    assert "\n" not in str(raised.value)


def test_cli_reports_an_invalid_feature_store_yaml_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: pricewave\nonline_store:\n  type: nosuchstore\n")
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "features", "apply", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("pricewave: error: invalid feature_store.yaml")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_unapplied_repo_says_to_apply(tmp_path: Path) -> None:
    repo = fresh_copy(tmp_path)
    with pytest.raises(ConfigError, match="pricewave features apply"):
        open_store(load_settings(env={}), repo_path=repo, profile="sqlite")
