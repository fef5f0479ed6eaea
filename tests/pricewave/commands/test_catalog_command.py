"""``pricewave catalog export`` and ``load`` through the real CLI, into real SQLite and Redis online stores."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pricewave.config import Settings, load_settings
from pricewave.feature_store import get_price, open_store
from pricewave.simulator.runner import Simulator
from pricewave.stack.process import child_environment

pytestmark = pytest.mark.integration

COLUMNS = ["sku", "base_price", "cost", "map_price", "ceiling_price", "category"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pricewave catalog ARGS`` in a child process with this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "pricewave", "catalog", *args],
        capture_output=True,
        text=True,
        check=False,
        env=child_environment(),
        timeout=300,
    )


def exported(path: Path) -> list[dict[str, Any]]:
    """The rows of an exported file, read without pricewave (plain csv / pyarrow)."""
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and list(rows[0]) == COLUMNS
        numbers = ("base_price", "cost", "map_price", "ceiling_price")
        return [
            {k: (float(v) if k in numbers and v else (None if k in numbers else v)) for k, v in row.items()}
            for row in rows
        ]
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    return table.to_pylist()


def stored(store: Any, skus: list[str]) -> list[dict[str, Any]]:
    """The sku_catalog rows of ``skus`` as the online store holds them."""
    refs = [f"sku_catalog:{column}" for column in COLUMNS[1:]]
    found = store.get_online_features(features=refs, entity_rows=[{"sku": sku} for sku in skus]).to_dict()
    return [{column: found[column][i] for column in COLUMNS} for i in range(len(skus))]


def check_loaded(store: Any, rows: list[dict[str, Any]]) -> None:
    """Every row is in the store, and a channel reads its base price."""
    skus = [row["sku"] for row in rows]
    assert stored(store, skus) == rows
    for row in rows:
        quote = get_price(store, row["sku"])
        assert (quote.source, quote.price) == ("base", row["base_price"]), row["sku"]


def test_export_then_load_into_sqlite(feature_repo_copy: Path, tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "my_catalog.csv"
    result = cli("export", "--scenario", "small", "--out", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sku_catalog: 12 skus of scenario small (seed 7) written to {path}"
    rows = exported(path)
    expected = Simulator("small", settings, seed=7).catalog_records()
    assert rows == [{k: v for k, v in record.items() if k != "event_time"} for record in expected]
    assert any(row["map_price"] is None for row in rows) and any(row["map_price"] for row in rows)

    result = cli("load", str(path), "--repo", str(feature_repo_copy), "--profile", "sqlite")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"sku_catalog: 12 skus loaded into the sqlite online store ({feature_repo_copy.resolve()})"
    )
    check_loaded(open_store(load_settings(), repo_path=feature_repo_copy, profile="sqlite"), rows)


def test_export_then_load_into_redis(feature_repo_copy: Path, tmp_path: Path, redis_env: Settings) -> None:
    path = tmp_path / "catalog.parquet"
    result = cli("export", "--scenario", "default", "--seed", "3", "--out", str(path))
    assert result.returncode == 0, result.stderr
    rows = exported(path)
    assert len(rows) == 500
    assert [row["sku"] for row in rows] == [r["sku"] for r in Simulator("default", redis_env, seed=3).catalog_records()]

    result = cli("load", str(path), "--repo", str(feature_repo_copy), "--profile", "redis")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"sku_catalog: 500 skus loaded into the redis online store ({feature_repo_copy.resolve()})"
    )
    check_loaded(open_store(redis_env, repo_path=feature_repo_copy, profile="redis"), rows)


@pytest.mark.parametrize("profile", ["sqlite", "redis"])
def test_a_bad_file_exits_non_zero_with_line_numbers_and_loads_nothing(
    request: pytest.FixtureRequest, feature_repo_copy: Path, tmp_path: Path, profile: str
) -> None:
    settings = request.getfixturevalue("redis_env") if profile == "redis" else load_settings()
    good = tmp_path / "good.csv"
    assert cli("export", "--scenario", "small", "--out", str(good)).returncode == 0
    lines = good.read_text().splitlines()
    skus = [line.split(",")[0] for line in lines[1:]]
    third, seventh = lines[2].split(","), lines[6].split(",")
    third[1] = "12,99"  # a decimal comma: one cell too many
    seventh[1] = "-" + seventh[1]  # a negative base price
    lines[2], lines[6] = ",".join(third), ",".join(seventh)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")

    result = cli("load", str(bad), "--repo", str(feature_repo_copy), "--profile", profile)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"pricewave: error: {bad}: 2 bad rows (nothing was loaded): line 3: 7 cells, ")
    assert "; line 7: base_price must be > 0 (-" in result.stderr

    store = open_store(settings, repo_path=feature_repo_copy, profile=profile)
    assert {get_price(store, sku).source for sku in skus} == {"unavailable"}


def test_load_errors_are_one_line(feature_repo_copy: Path, tmp_path: Path) -> None:
    missing = cli("load", str(tmp_path / "nope.csv"), "--repo", str(feature_repo_copy))
    assert (missing.returncode, missing.stderr) == (2, f"pricewave: error: {tmp_path / 'nope.csv'} does not exist\n")
    scenario = cli("export", "--scenario", "no-such-scenario", "--out", str(tmp_path / "c.csv"))
    assert scenario.returncode == 2 and scenario.stderr.count("\n") == 1
    assert scenario.stderr.startswith("pricewave: error: ") and "no-such-scenario" in scenario.stderr
    assert not (tmp_path / "c.csv").exists()


def test_help_explains_the_format_and_the_seed() -> None:
    load = " ".join(cli("load", "--help").stdout.split())
    for phrase in ("sku_catalog schema", "map_price", "line", "--profile", "before anything is written", "FILE.csv"):
        assert phrase in load, phrase
    export = " ".join(cli("export", "--help").stdout.split())
    for phrase in ("seed the simulator streams with", "default 7", "--out", "no event_time column"):
        assert phrase in export, phrase
