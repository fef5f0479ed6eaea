"""A shop's catalog as an input: read and check a CSV or parquet file, write it, load it into the online store.

The file holds one row per sku with the columns of the ``sku_catalog`` schema
(``schemas/sku_catalog/``, through :mod:`pricewave.schemas`): ``sku``, ``base_price``, ``cost``,
``map_price`` (an empty cell: no minimum advertised price), ``ceiling_price``, ``category`` and,
optionally, ``event_time`` (epoch milliseconds or an ISO 8601 time; a row without one becomes valid
when it is loaded). The format follows the file's suffix: ``.csv``, or ``.parquet`` / ``.pq``.

Every row is checked before anything is written. One bad row (a value the schema refuses, a
missing value, a sku that repeats) stops the whole load with ONE :class:`~pricewave.errors.DataError`
that lists the bad rows by their line (CSV: the physical line, the header being line 1) or row
number (parquet: the first row is row 1) and the reason.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> row = {"sku": "A-1", "base_price": 9.5, "cost": 4.0, "map_price": None, "ceiling_price": 14.0,
    ...        "category": "snacks", "event_time": 1_767_225_600_000}
    >>> path = write_catalog([row], folder / "catalog.csv")
    >>> print(path.read_text().strip())
    sku,base_price,cost,map_price,ceiling_price,category,event_time
    A-1,9.5,4.0,,14.0,snacks,1767225600000
    >>> read_catalog(path) == [row]
    True
    >>> _ = (folder / "bad.csv").write_text("sku,base_price,cost,map_price,ceiling_price,category\\nB-1,abc,1,,2,x\\n")
    >>> read_catalog(folder / "bad.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pricewave.errors.DataError: ...bad.csv: 1 bad row (nothing was loaded): line 2: base_price must be a number ('abc')
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricewave.errors import DataError
from pricewave.feature_store.store import open_store
from pricewave.feature_store.writer import FeatureWriter, WriteResult
from pricewave.schemas import FieldSpec, InvalidEvent, load_schema, validate_record

if TYPE_CHECKING:
    from feast import FeatureStore

    from pricewave.config import Settings

VIEW = "sku_catalog"
"""The schema and the feature view a catalog is checked against and loaded into."""
EVENT_TIME = "event_time"
"""The optional column: when a row becomes valid (default: when it is loaded)."""
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_LISTED = 10
"""Bad rows named in an error; the rest are counted."""
BATCH_SIZE = 5_000
"""Rows per online-store write."""

_MISSING = object()
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_REASON = re.compile(r"^(?P<code>[a-z_]+): (?P<field>[A-Za-z0-9_\[\]]+)(?:=(?P<value>.*?))? (?P<rest>.*)$")


@dataclass(frozen=True)
class _Row:
    where: str  # "line 3" or "row 3"
    record: dict[str, Any]
    problem: str | None


def _fields() -> tuple[FieldSpec, ...]:
    return load_schema(VIEW).fields


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    known = ", ".join((*CSV_SUFFIXES, *PARQUET_SUFFIXES))
    raise DataError(f"{path}: unknown catalog format {suffix or '(no suffix)'!r}: name the file {known}")


# --------------------------------------------------------------------------------------------
# values


def _millis(value: datetime | date) -> int:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _from_text(spec: FieldSpec, text: str) -> tuple[Any, str | None]:
    """A CSV cell as the schema's type: ``(value, None)``, or ``(_MISSING, problem)``."""
    cell = text.strip()
    if not cell:
        return (None if spec.nullable else _MISSING), None
    name = spec.name
    if spec.is_array or spec.json_type == "object":
        try:
            return json.loads(cell), None
        except json.JSONDecodeError:
            kind = "a JSON array" if spec.is_array else "a JSON object"
            return _MISSING, f"{name} must be {kind} ({_show(text)})"
    if spec.json_type == "number":
        try:
            return float(cell), None
        except ValueError:
            return _MISSING, f"{name} must be a number ({_show(text)})"
    if spec.json_type == "integer":
        try:
            return int(cell), None
        except ValueError:
            pass
        if spec.is_timestamp:
            try:
                return _millis(datetime.fromisoformat(cell.replace("Z", "+00:00"))), None
            except ValueError:
                return _MISSING, f"{name} must be epoch milliseconds or an ISO 8601 time ({_show(text)})"
        return _MISSING, f"{name} must be a whole number ({_show(text)})"
    if spec.json_type == "boolean":
        lowered = cell.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE, None
        return _MISSING, f"{name} must be true or false ({_show(text)})"
    return text, None


def _from_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """A parquet value as the schema's type (strings are read like CSV cells)."""
    if isinstance(value, float) and math.isnan(value):
        value = None  # pandas' missing value
    if value is None:
        return (None if spec.nullable else _MISSING), None
    if isinstance(value, str) and spec.json_type != "string":
        return _from_text(spec, value)
    if spec.json_type == "number" and not spec.is_array and (value.__class__ is int or isinstance(value, Decimal)):
        return float(value), None  # an integer or decimal column: the schema's numbers are floats
    if spec.json_type == "integer" and not spec.is_array:
        if spec.is_timestamp and isinstance(value, datetime | date):
            return _millis(value), None
        if isinstance(value, float) and value.is_integer():
            return int(value), None  # an integer column with nulls, written by pandas
    return value, None


def _readable(reason: str, record: Mapping[str, Any]) -> str:
    """A schema reason (``out_of_range: cost=-1.0 must be >= 0``) in words (``cost must be >= 0 (-1.0)``)."""
    code, _, detail = reason.partition(": ")
    field = detail.split(" ", 1)[0].split("=", 1)[0]
    if code == "missing_field":
        return f"{field} is missing"
    if code == "unknown_field":
        return f"{field} is not a {VIEW} column"
    if code == "not_finite":
        return f"{field} must be a finite number ({_show(record.get(field))})"
    if code == "bad_pattern":
        pattern = load_schema(VIEW).json["properties"].get(field, {}).get("pattern", "")
        return f"{field} must match {pattern} ({_show(record.get(field))})"
    match = _REASON.match(reason)
    if match is None:
        return detail or reason
    value, rest = match["value"], match["rest"]
    if code == "wrong_type":
        expected, _, got = rest.removeprefix("expected ").partition(", got ")
        article = "an" if expected[:1] in "aeiou" else "a"
        return f"{field} must be {article} {expected}, not {got or 'something else'}"
    if code in ("too_short", "too_long"):
        return f"{field} is {code.replace('_', ' ')} ({rest})"
    if code == "bad_timestamp":
        return f"{field} must not be {rest} ({value})"
    if value is not None:
        return f"{field} {rest} ({value})"
    return f"{field} {rest}"


def _check(raw: Mapping[str, Any], where: str, from_cell: bool, now_ms: int) -> _Row:
    """Coerce and validate one row; the first problem found wins."""
    record: dict[str, Any] = {}
    for spec in _fields():
        if spec.name not in raw:
            continue
        value, problem = (_from_text if from_cell else _from_value)(spec, raw[spec.name])
        if problem is not None:
            return _Row(where, record, problem)
        if value is not _MISSING:
            record[spec.name] = value
    if record.get(EVENT_TIME) is None:
        record[EVENT_TIME] = now_ms
    try:
        validate_record(VIEW, record, now_ms=now_ms)
    except InvalidEvent as exc:
        return _Row(where, record, _readable(exc.reason, record))
    return _Row(where, record, None)


# --------------------------------------------------------------------------------------------
# reading


def _check_columns(path: Path, columns: Sequence[str], where: str) -> None:
    names = [spec.name for spec in _fields()]
    listing = ", ".join(names)
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataError(f"{path}: column {column!r} appears twice{where}")
        seen.add(column)
    unknown = [column for column in columns if column not in names]
    if unknown:
        raise DataError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))}{where}: the {VIEW} columns are {listing}"
        )
    missing = [spec.name for spec in _fields() if spec.required and spec.name != EVENT_TIME and spec.name not in seen]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}{where}: the {VIEW} columns are {listing} "
            f"({EVENT_TIME} optional; an empty map_price cell means no minimum advertised price)"
        )


def _csv_rows(path: Path, now_ms: int) -> Iterator[_Row]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                names = ",".join(spec.name for spec in _fields())
                raise DataError(f"{path} is empty: a catalog starts with the header line {names}")
            columns = [name.strip() for name in header]
            _check_columns(path, columns, " (line 1)")
            line = reader.line_num
            for cells in reader:
                where = f"line {line + 1}"
                line = reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                if len(cells) != len(columns):
                    problem = f"{len(cells)} cells, but the header has {len(columns)} columns"
                    yield _Row(where, {}, problem)
                    continue
                yield _check(dict(zip(columns, cells, strict=True)), where, True, now_ms)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num} is not valid CSV: {exc}") from None


def _parquet_rows(path: Path, now_ms: int) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid & co for a file that is not parquet
        raise DataError(f"{path} is not a readable parquet file: {exc}") from None
    # pandas stores a DataFrame's (non-default) index as extra columns: not catalog columns
    _check_columns(path, [name for name in parquet.schema_arrow.names if not name.startswith("__index_level_")], "")
    number = 0
    for batch in parquet.iter_batches(batch_size=BATCH_SIZE):
        for raw in batch.to_pylist():
            number += 1
            yield _check(raw, f"row {number}", False, now_ms)


def _bad_rows_error(path: Path, problems: list[str]) -> DataError:
    count = len(problems)
    listed = "; ".join(problems[:MAX_LISTED])
    more = f"; and {count - MAX_LISTED} more" if count > MAX_LISTED else ""
    return DataError(f"{path}: {count} bad row{'s' if count != 1 else ''} (nothing was loaded): {listed}{more}")


def read_catalog(path: str | Path, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Read a catalog file and check every row against the ``sku_catalog`` schema.

    CSV cells become the schema's types (numbers, whole numbers, booleans; an empty cell is null
    where the schema allows null, else a missing value). A row without ``event_time`` gets the load
    time. Blank CSV lines are skipped.

    Args:
        path: A ``.csv``, ``.parquet`` or ``.pq`` file.
        now_ms: The load time in epoch milliseconds (default: now): the ``event_time`` of rows
            without one, and the clock of the schema's future-timestamp check.

    Returns:
        One ``sku_catalog`` record per row, in file order.

    Raises:
        DataError: The file is missing, unreadable, empty, of an unknown format, has unknown or
            missing columns, or has bad rows (all listed in one message, with their line numbers,
            up to :data:`MAX_LISTED`), including skus that repeat.

    Example:
        >>> read_catalog("catalog.txt")
        Traceback (most recent call last):
        ...
        pricewave.errors.DataError: catalog.txt: unknown catalog format '.txt': name the file .csv, .parquet, .pq
    """
    path = Path(path)
    kind = _format(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    now = _now_ms() if now_ms is None else now_ms
    rows = _csv_rows(path, now) if kind == "csv" else _parquet_rows(path, now)
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for row in rows:
        problem = row.problem
        if problem is None:
            sku = row.record["sku"]
            if sku in first_seen:
                problem = f"sku {sku!r} repeats {first_seen[sku]}"
            else:
                first_seen[sku] = row.where
        if problem is not None:
            problems.append(f"{row.where}: {problem}")
        else:
            records.append(row.record)
    if problems:
        raise _bad_rows_error(path, problems)
    if not records:
        raise DataError(f"{path} has no rows: a catalog needs one row per sku")
    return records


# --------------------------------------------------------------------------------------------
# writing


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The schema's columns; ``event_time`` only when some record has one."""
    with_time = any(record.get(EVENT_TIME) is not None for record in records)
    return [spec.name for spec in _fields() if spec.name != EVENT_TIME or with_time]


def _arrow_type(spec: FieldSpec) -> Any:
    import pyarrow as pa

    scalar = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}
    item = scalar.get(spec.json_type, pa.string())
    return pa.list_(item) if spec.is_array else item


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def write_catalog(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``sku_catalog`` records as a catalog file that :func:`read_catalog` reads back exactly.

    The columns are the schema's, in its order; ``event_time`` is written only when a record has
    one (a file without it becomes valid when it is loaded). Every record is checked first: a bad
    record writes nothing.

    Args:
        records: ``sku_catalog`` records (``event_time`` optional).
        path: The file to write: ``.csv``, ``.parquet`` or ``.pq`` (its folder is created).

    Returns:
        The path written.

    Raises:
        DataError: Unknown format, no records, a record the schema refuses, or a sku that repeats.

    Example:
        >>> write_catalog([{"sku": "A-1"}], "catalog.csv")
        Traceback (most recent call last):
        ...
        pricewave.errors.DataError: catalog.csv: 1 bad record (nothing was written): record 1: base_price is missing
    """
    path = Path(path)
    kind = _format(path)
    rows = [dict(record) for record in records]
    now = _now_ms()
    problems: list[str] = []
    first_seen: dict[Any, int] = {}
    for number, record in enumerate(rows, start=1):
        candidate = record if record.get(EVENT_TIME) is not None else {**record, EVENT_TIME: now}
        try:
            validate_record(VIEW, candidate, now_ms=now)
        except InvalidEvent as exc:
            problems.append(f"record {number}: {_readable(exc.reason, candidate)}")
            continue
        if record["sku"] in first_seen:
            problems.append(f"record {number}: sku {record['sku']!r} repeats record {first_seen[record['sku']]}")
        first_seen.setdefault(record["sku"], number)
    if problems:
        count = len(problems)
        more = f"; and {count - MAX_LISTED} more" if count > MAX_LISTED else ""
        plural = "s" if count != 1 else ""
        raise DataError(
            f"{path}: {count} bad record{plural} (nothing was written): {'; '.join(problems[:MAX_LISTED])}{more}"
        )
    if not rows:
        raise DataError(f"{path}: no records to write")
    columns = _columns(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_cell(record.get(column)) for column in columns] for record in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        specs = {spec.name: spec for spec in _fields()}
        table = pa.table(
            {
                column: pa.array([record.get(column) for record in rows], type=_arrow_type(specs[column]))
                for column in columns
            }
        )
        pq.write_table(table, path)
    return path


# --------------------------------------------------------------------------------------------
# loading


def store_catalog(store: FeatureStore, records: Sequence[Mapping[str, Any]], *, progress: bool = True) -> WriteResult:
    """Write checked catalog records to the ``sku_catalog`` view through :class:`FeatureWriter`.

    Batches of :data:`BATCH_SIZE` rows, with a progress bar on a terminal. A row whose event time
    is not newer than the stored one is left out (counted in ``stale``).

    Returns:
        The counts of all batches together.

    Raises:
        StackError: The online store cannot be reached (batches written before stay written).
    """
    from tqdm import tqdm

    writer = FeatureWriter(store)
    totals = {"received": 0, "written": 0, "stale": 0, "collapsed": 0}
    with tqdm(total=len(records), unit="sku", desc=f"load {VIEW}", disable=None if progress else True) as bar:
        for start in range(0, len(records), BATCH_SIZE):
            batch = records[start : start + BATCH_SIZE]
            result = writer.write(VIEW, batch)
            for name in totals:
                totals[name] += getattr(result, name)
            bar.update(len(batch))
    return WriteResult(VIEW, **totals)


def load_catalog(
    settings: Settings | None,
    path: str | Path,
    *,
    repo: str | Path | None = None,
    profile: str | None = None,
) -> int:
    """Read and check a catalog file, then write it to the configured online store.

    Nothing is written when any row is bad: the whole file is checked before the store is opened.

    Args:
        settings: pricewave settings (the feature repo, the store profile, the Redis address).
        path: The catalog file (see :func:`read_catalog`).
        repo: The Feast feature repo (default: the settings' or the checkout's ``feature_repo/``).
        profile: ``"sqlite"``, ``"redis"`` or a feature_store yaml (default: the settings').

    Returns:
        The rows written (rows not newer than the store's are left out).

    Raises:
        DataError: The file or a row is bad (see :func:`read_catalog`).
        ConfigError: The repo or profile is invalid, or the repo was never applied.
        StackError: The online store cannot be reached.

    Example:
        >>> load_catalog(None, "my_catalog.csv", profile="redis")   # doctest: +SKIP
        1200
    """
    records = read_catalog(path)
    store = open_store(settings, repo_path=repo, profile=profile)
    return store_catalog(store, records).written


def export_scenario_catalog(settings: Settings, scenario: str, seed: int, path: str | Path) -> tuple[int, str]:
    """Write a simulator scenario's catalog in the format :func:`read_catalog` reads.

    The rows carry no event time: the simulated clock's start is no time for a live catalog, so
    they become valid when they are loaded.

    Args:
        settings: pricewave settings (the simulator needs them).
        scenario: A shipped scenario name or a YAML file.
        seed: The simulator's seed: it draws the sku ids, so use the seed the simulator streams with.
        path: A ``.csv`` or ``.parquet`` file.

    Returns:
        The number of skus written and the scenario's name.
    """
    from pricewave.simulator.runner import Simulator

    simulator = Simulator(scenario, settings, seed=seed)
    records = [
        {name: value for name, value in record.items() if name != EVENT_TIME} for record in simulator.catalog_records()
    ]
    write_catalog(records, Path(path))
    return len(records), simulator.scenario.name
