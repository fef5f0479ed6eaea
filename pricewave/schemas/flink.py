"""Flink SQL column types of a schema (the streaming job's tables)."""

from __future__ import annotations

from typing import Any

from pricewave.schemas.checks import numeric_limits
from pricewave.schemas.model import INT32, FieldSpec
from pricewave.schemas.registry import load_schema


def _flink_scalar_type(json_type: str, prop: dict[str, Any], is_timestamp: bool) -> str:
    if json_type == "string":
        return "STRING"
    if json_type == "number":
        return "DOUBLE"
    if json_type == "boolean":
        return "BOOLEAN"
    if json_type == "integer":
        low, high = numeric_limits(prop)
        fits_int = (
            not is_timestamp and low is not None and high is not None and INT32[0] <= low[0] and high[0] <= INT32[1]
        )
        return "INT" if fits_int else "BIGINT"
    return "STRING"  # a free-form object travels as its JSON text


def _flink_type(spec: FieldSpec, prop: dict[str, Any]) -> str:
    if spec.is_array:
        item_type = "FLOAT" if spec.json_type == "number" else _flink_scalar_type(spec.json_type, prop["items"], False)
        return f"ARRAY<{item_type}>"
    return _flink_scalar_type(spec.json_type, prop, spec.is_timestamp)


def flink_row_type(name: str, *, version: int | None = None) -> list[tuple[str, str]]:
    """Flink SQL column types of a schema's fields, in declaration order.

    Strings map to ``STRING``, numbers to ``DOUBLE``, integers to ``INT`` when the schema bounds
    them within 32 bits and ``BIGINT`` otherwise (timestamps are ``BIGINT`` epoch milliseconds),
    booleans to ``BOOLEAN``, arrays to ``ARRAY<...>`` (numbers as ``FLOAT``) and free-form
    objects to ``STRING`` holding their JSON text (Flink's ``json`` format reads them so).

    Example:
        >>> flink_row_type("competitor_price")[-3:]
        [('price', 'DOUBLE'), ('in_stock', 'BOOLEAN'), ('event_time', 'BIGINT')]
    """
    schema = load_schema(name, version)
    properties = schema.json["properties"]
    return [(spec.name, _flink_type(spec, properties[spec.name])) for spec in schema.fields]


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def flink_ddl_columns(name: str, *, version: int | None = None) -> str:
    """The column list of a ``CREATE TABLE`` for a schema, one quoted column per line.

    Example:
        >>> print(flink_ddl_columns("review"))
          `review_id` STRING,
          `sku` STRING,
          `rating` INT,
          `text` STRING,
          `user_key` STRING,
          `event_time` BIGINT
    """
    return ",\n".join(f"  {_quote(column)} {sql_type}" for column, sql_type in flink_row_type(name, version=version))
