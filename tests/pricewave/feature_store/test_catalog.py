"""Catalog files (pricewave.feature_store.catalog): exact round trips, bad rows by line, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pricewave.errors import DataError
from pricewave.feature_store import catalog
from pricewave.feature_store.catalog import load_catalog, read_catalog, write_catalog
from pricewave.feature_store.writer import WriteResult

NOW = 1_790_000_000_000  # the load time the tests read with (2026)
HEADER = "sku,base_price,cost,map_price,ceiling_price,category"
GOOD = "A-1,10,5,,15,snacks"


def record(sku: str, **overrides: Any) -> dict[str, Any]:
    """A valid sku_catalog record."""
    row: dict[str, Any] = {
        "sku": sku,
        "base_price": 12.5,
        "cost": 6.25,
        "map_price": None,
        "ceiling_price": 18.75,
        "category": "snacks",
        "event_time": NOW - 1000,
    }
    row.update(overrides)
    return row


AWKWARD = [
    record("A-1"),
    record("b.2_x", base_price=0.1 + 0.2, cost=0.0, map_price=0.30000000000000004, category='crème, "brûlée"'),
    record("C-3", base_price=1e-7, cost=123456789.123456789, ceiling_price=2e9, category="line\nbreak", event_time=NOW),
    record("D-4", base_price=7, cost=3, map_price=5, ceiling_price=9, category=" spaced "),
]


def csv_file(tmp_path: Path, *lines: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bad_rows(path: Path) -> str:
    with pytest.raises(DataError) as caught:
        read_catalog(path, now_ms=NOW)
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.parquet", "catalog.pq"])
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    path = write_catalog(AWKWARD, tmp_path / "sub" / name)
    back = read_catalog(path, now_ms=NOW)
    assert back == AWKWARD
    assert [type(row[field]) for row in back for field in ("base_price", "cost", "event_time")] == [
        float,
        float,
        int,
    ] * len(AWKWARD)


def test_csv_columns_are_the_schema_s_in_order(tmp_path: Path) -> None:
    path = write_catalog([record("A-1")], tmp_path / "c.csv")
    assert path.read_text().splitlines()[0] == HEADER + ",event_time"


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.parquet"])
def test_rows_without_event_time_get_the_load_time(tmp_path: Path, name: str) -> None:
    rows = [{k: v for k, v in record(sku).items() if k != "event_time"} for sku in ("A-1", "A-2")]
    path = write_catalog(rows, tmp_path / name)
    if name.endswith(".csv"):
        assert path.read_text().splitlines()[0] == HEADER
    else:
        assert "event_time" not in pq.read_schema(path).names
    assert read_catalog(path, now_ms=NOW) == [{**row, "event_time": NOW} for row in rows]


def test_a_shop_csv_is_coerced_to_the_schema_types(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    text = "\ufeff" + HEADER + ",event_time\r\nA-1, 10 ,5,4.5,15,snacks,2026-01-01T00:00:00Z\r\n\r\nA-2,3,1,,4,x,\r\n"
    path.write_text(text, encoding="utf-8")
    assert read_catalog(path, now_ms=NOW) == [
        record("A-1", base_price=10.0, cost=5.0, map_price=4.5, ceiling_price=15.0, event_time=1_767_225_600_000),
        record("A-2", base_price=3.0, cost=1.0, ceiling_price=4.0, category="x", event_time=NOW),
    ]


def test_a_pandas_parquet_is_coerced_to_the_schema_types(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "sku": ["A-1", "A-2"],
            "base_price": [10, 3],  # integers
            "cost": [5.0, 1.0],
            "map_price": [4.5, None],
            "ceiling_price": [15, 4],
            "category": ["snacks", "x"],
            "event_time": pd.to_datetime(["2026-01-01T00:00:00Z", None], utc=True),  # timestamps, one missing
        },
        index=[7, 3],  # stored as an __index_level_0__ column
    )
    frame.to_parquet(tmp_path / "shop.parquet")
    back = read_catalog(tmp_path / "shop.parquet", now_ms=NOW)
    assert back == [
        record("A-1", base_price=10.0, cost=5.0, map_price=4.5, ceiling_price=15.0, event_time=1_767_225_600_000),
        record("A-2", base_price=3.0, cost=1.0, ceiling_price=4.0, category="x", event_time=NOW),
    ]
    assert [type(row["base_price"]) for row in back] == [float, float]


# --------------------------------------------------------------------------------------------
# bad rows: one message, every bad row by its physical line


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("A-2,abc,5,,15,snacks", "base_price must be a number ('abc')"),
        (",10,5,,15,snacks", "sku is missing"),
        ("A-2,10,,,15,snacks", "cost is missing"),
        ("A 2,10,5,,15,snacks", "sku must match ^[A-Za-z0-9_.-]{1,64}$ ('A 2')"),
        ("A-2,0,5,,15,snacks", "base_price must be > 0 (0.0)"),
        ("A-2,10,-1,,15,snacks", "cost must be >= 0 (-1.0)"),
        ("A-2,10,5,none,15,snacks", "map_price must be a number ('none')"),
        ("A-2,10,5,,inf,snacks", "ceiling_price must be a finite number (inf)"),
        ("A-2,10,5,,15,", "category is missing"),
        ("A-2,10,5,,15", "5 cells, but the header has 6 columns"),
        ("A-1,10,5,,15,snacks", "sku 'A-1' repeats line 2"),
    ],
)
def test_each_bad_row_is_named_by_its_line(tmp_path: Path, row: str, reason: str) -> None:
    # line 3 is blank and lines 4-5 hold one quoted cell: the bad row is on physical line 6
    path = csv_file(tmp_path, HEADER, GOOD, "", 'B-1,10,5,,15,"two', 'lines"', row, "C-1,10,5,,15,snacks")
    assert bad_rows(path) == f"{path}: 1 bad row (nothing was loaded): line 6: {reason}"


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("yesterday", "event_time must be epoch milliseconds or an ISO 8601 time ('yesterday')"),
        ("12", "event_time must not be before 2000-01-01 (12)"),
        ("1.5e12", "event_time must be epoch milliseconds or an ISO 8601 time ('1.5e12')"),
        (str(NOW + 2 * 86_400_000), f"event_time must not be more than 1 day in the future ({NOW + 2 * 86_400_000})"),
    ],
)
def test_bad_event_times(tmp_path: Path, cell: str, reason: str) -> None:
    path = csv_file(tmp_path, HEADER + ",event_time", GOOD + ",", f"A-2,10,5,,15,snacks,{cell}")
    assert bad_rows(path) == f"{path}: 1 bad row (nothing was loaded): line 3: {reason}"


def test_all_bad_rows_in_one_message_capped_at_ten(tmp_path: Path) -> None:
    rows = [GOOD, *(f"B-{i},abc,5,,15,snacks" for i in range(14)), "A-1,10,5,,15,snacks"]
    message = bad_rows(csv_file(tmp_path, HEADER, *rows))
    assert message.startswith(f"{tmp_path / 'catalog.csv'}: 15 bad rows (nothing was loaded): line 3: ")
    assert message.count("must be a number") == 10
    assert "line 12: base_price must be a number ('abc'); and 5 more" in message
    assert "line 13" not in message


def test_parquet_bad_rows_are_named_by_row_number(tmp_path: Path) -> None:
    path = tmp_path / "catalog.parquet"
    table = pa.table(
        {
            "sku": ["A-1", "A-2", "A-3", "A-1"],
            "base_price": [10.0, None, 10.0, 10.0],
            "cost": [5.0, 5.0, -2.0, 5.0],
            "map_price": [None, None, None, None],
            "ceiling_price": [15.0, 15.0, 15.0, 15.0],
            "category": ["snacks", "snacks", "snacks", "snacks"],
        },
        schema=pa.schema(
            [
                ("sku", pa.string()),
                ("base_price", pa.float64()),
                ("cost", pa.float64()),
                ("map_price", pa.float64()),
                ("ceiling_price", pa.float64()),
                ("category", pa.string()),
            ]
        ),
    )
    pq.write_table(table, path)
    assert bad_rows(path) == (
        f"{path}: 3 bad rows (nothing was loaded): row 2: base_price is missing; "
        "row 3: cost must be >= 0 (-2.0); row 4: sku 'A-1' repeats row 1"
    )


# --------------------------------------------------------------------------------------------
# files that are not catalogs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert bad_rows(path) == f"{path} does not exist"


@pytest.mark.parametrize("name", ["catalog.txt", "catalog.json", "catalog"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = csv_file(tmp_path, HEADER, GOOD, name=name)
    message = bad_rows(path)
    assert message.startswith(f"{path}: unknown catalog format") and message.endswith(".csv, .parquet, .pq")
    with pytest.raises(DataError, match="unknown catalog format"):
        write_catalog([record("A-1")], tmp_path / "out" / name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), "is empty: a catalog starts with the header line sku,base_price,cost,map_price,ceiling_price,category"),
        ((HEADER,), "has no rows"),
        ((HEADER, "", ""), "has no rows"),
        ((HEADER + ",brand", GOOD + ",acme"), "unknown column(s) 'brand' (line 1): the sku_catalog columns are"),
        (("sku,base_price,cost,ceiling_price,category", "A-1,10,5,15,x"), "no column 'map_price' (line 1)"),
        ((HEADER + ",sku", GOOD + ",A-1"), "column 'sku' appears twice (line 1)"),
    ],
)
def test_files_that_are_not_catalogs(tmp_path: Path, lines: tuple[str, ...], expected: str) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text("".join(line + "\n" for line in lines))
    assert expected in bad_rows(path)


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER, GOOD, name="catalog.parquet")
    assert bad_rows(path).startswith(f"{path} is not a readable parquet file")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_bytes((HEADER + "\nA-1,10,5,,15,caf\xe9\n").encode("latin-1"))
    assert bad_rows(path).startswith(f"{path} is not UTF-8 text")


def test_write_refuses_bad_records_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    with pytest.raises(DataError) as caught:
        write_catalog([record("A-1"), record("A-2", cost=-1.0), record("A-1")], path)
    assert str(caught.value) == (
        f"{path}: 2 bad records (nothing was written): record 2: cost must be >= 0 (-1.0); "
        "record 3: sku 'A-1' repeats record 1"
    )
    assert not path.exists()


# --------------------------------------------------------------------------------------------
# load_catalog: checked first, then written in batches through the one FeatureWriter


class RecordingWriter:
    """Stands in for FeatureWriter: records each write."""

    writes: ClassVar[list[tuple[str, list[dict[str, Any]]]]] = []

    def __init__(self, store: Any) -> None:
        assert store == "store"

    def write(self, view: str, rows: Any) -> WriteResult:
        RecordingWriter.writes.append((view, list(rows)))
        return WriteResult(view, len(rows), len(rows), 0, 0)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the store and its writer in the catalog module; returns the list of open_store calls."""
    opened: list[Any] = []

    def fake_open_store(settings: Any, *, repo_path: Any = None, profile: Any = None) -> str:
        opened.append((settings, repo_path, profile))
        return "store"

    RecordingWriter.writes = []
    monkeypatch.setattr(catalog, "open_store", fake_open_store)
    monkeypatch.setattr(catalog, "FeatureWriter", RecordingWriter)
    monkeypatch.setattr(catalog, "BATCH_SIZE", 5)
    return opened


def test_load_writes_every_row_in_batches(tmp_path: Path, recording: list[Any]) -> None:
    rows = [record(f"S-{i}") for i in range(12)]
    path = write_catalog(rows, tmp_path / "catalog.parquet")
    assert load_catalog(None, path, repo="/some/repo", profile="redis") == 12
    assert recording == [(None, "/some/repo", "redis")]
    assert [view for view, _ in RecordingWriter.writes] == ["sku_catalog"] * 3
    assert [row for _, batch in RecordingWriter.writes for row in batch] == rows


def test_load_writes_nothing_when_a_row_is_bad(tmp_path: Path, recording: list[Any]) -> None:
    path = csv_file(tmp_path, HEADER, GOOD, "A-2,10,5,,15,snacks", "A-3,10,5,,-15,snacks")
    with pytest.raises(DataError, match=r"1 bad row \(nothing was loaded\): line 4: ceiling_price must be > 0"):
        load_catalog(None, path)
    assert recording == [] and RecordingWriter.writes == []
