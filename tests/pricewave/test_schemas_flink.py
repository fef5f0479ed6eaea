"""The schema-compiled Flink SQL run in a real (batch, local) Flink: same verdicts as Python.

Raw JSON lines go through Flink's own ``json`` format into the columns of
:func:`flink_ddl_columns`, then :func:`flink_sql_reason` and :func:`flink_sql_predicate` judge
each row; Python judges the same bytes with :func:`check_event`. Only field-level classes that a
typed row can show are compared (types and unknown fields are the deserializer's business).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pricewave.schemas import (
    MAX_FUTURE_SKEW_MS,
    MIN_EVENT_TIME_MS,
    EventSchema,
    check_event,
    flink_ddl_columns,
    flink_row_type,
    flink_sql_predicate,
    flink_sql_reason,
    load_schema,
    reason_key,
)

pytestmark = pytest.mark.integration

SCHEMAS = ["click_event", "competitor_price", "review", "price_decision", "dead_letter"]
INT32_MAX = 2**31 - 1


def _bad_values(schema: EventSchema, field: str, flink_type: str) -> Iterator[tuple[str, Any]]:
    """(expected code, value) pairs that break ``field`` in a way a typed row can still carry."""
    prop = schema.json["properties"][field]
    spec = schema.field(field)
    if spec.is_array:
        if "maxItems" in prop:
            yield "too_long", ["x"] * (prop["maxItems"] + 1)
        return
    if spec.is_timestamp:
        yield "bad_timestamp", MIN_EVENT_TIME_MS - 1
        yield "bad_timestamp", int(time.time() * 1000) + 2 * MAX_FUTURE_SKEW_MS
        return
    if spec.json_type == "number":
        yield "not_finite", math.inf  # written as 1e400, which JSON allows and no double holds
    if spec.json_type in ("number", "integer"):
        limit = INT32_MAX if flink_type == "INT" else 2**63 - 1
        low = prop.get("exclusiveMinimum", prop.get("minimum"))
        high = prop.get("exclusiveMaximum", prop.get("maximum"))
        if low is not None and abs(low) < limit:
            yield "out_of_range", low - (0 if "exclusiveMinimum" in prop else 1)
        if high is not None and abs(high) < limit:
            yield "out_of_range", high + (0 if "exclusiveMaximum" in prop else 1)
    if spec.json_type == "string" and spec.json_type != "object":
        if prop.get("minLength", 0) > 0:
            yield "too_short", ""
        if "maxLength" in prop:
            yield "too_long", "x" * (prop["maxLength"] + 1)
        if "enum" in prop:
            yield "bad_enum", "nope"
        if "pattern" in prop:
            yield "bad_pattern", "not valid!"
            yield "bad_pattern", "ok\n"  # Java's and Python's '$' would both allow it


def _lines(schema: EventSchema) -> list[bytes]:
    """Every example, then one line per (field, class): the first example with one field broken."""
    examples = schema.json["examples"]
    lines = [json.dumps(example).encode() for example in examples]
    base = examples[0]
    types = dict(flink_row_type(schema.name))
    for spec in schema.fields:
        if spec.required and not spec.nullable:
            lines.append(json.dumps({k: v for k, v in base.items() if k != spec.name}).encode())
        for _, value in _bad_values(schema, spec.name, types[spec.name]):
            record = {**base, spec.name: value}
            lines.append(json.dumps(record).replace("Infinity", "1e400").encode())
    return lines


@pytest.fixture(scope="module")
def table_env() -> Any:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    env.get_config().set("parallelism.default", "1")  # one split per file: rows come back in order
    return env


def test_flink_reasons_equal_python_reasons(table_env: Any, tmp_path: Path) -> None:
    mismatches = []
    checked = 0
    for name in SCHEMAS:
        schema = load_schema(name)
        lines = _lines(schema)
        folder = tmp_path / name
        folder.mkdir()
        (folder / "rows.json").write_bytes(b"\n".join(lines) + b"\n")
        table = f"src_{name}"
        table_env.execute_sql(
            f"CREATE TEMPORARY TABLE {table} (\n{flink_ddl_columns(name)}\n) WITH ("
            f"'connector' = 'filesystem', 'path' = '{folder}', 'format' = 'json')"
        )
        query = (
            f"SELECT {flink_sql_reason(name, column_prefix='t.')} AS reason, "
            f"{flink_sql_predicate(name, column_prefix='t.')} AS ok FROM {table} AS t"
        )
        with table_env.execute_sql(query).collect() as results:
            rows = [(row[0], row[1]) for row in results]
        assert len(rows) == len(lines), name
        for line, (sql_reason, ok) in zip(lines, rows, strict=True):
            _, python_reason = check_event(name, line)
            expected = None if python_reason is None else reason_key(python_reason)
            checked += 1
            if sql_reason != expected or ok != (sql_reason is None):
                mismatches.append((name, line[:200], python_reason, sql_reason, ok))
    assert not mismatches, "\n".join(map(str, mismatches))
    assert checked > 100
