"""A checker per field, compiled once from the schema: fast enough for every record, and in agreement
with :mod:`jsonschema`."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pricewave.schemas.model import INT64, MAX_FUTURE_SKEW_MS, MIN_EVENT_TIME_MS, EventSchema, FieldSpec

_PLAIN_TEXT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


_MAX_NESTING = 32


_Check = Callable[[Any, int], "str | None"]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def show(value: Any) -> str:
    """A short printable form of a value for a reason (reasons end up in the dead-letter topic)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit
        text = "<huge integer>"
    return text if len(text) <= 40 else text[:37] + "..."


def _number_text(bound: float) -> str:
    return repr(bound)


def _wrong_type(name: str, expected: str, value: Any) -> str:
    return f"wrong_type: {name} expected {expected}, got {type_name(value)}"


def _millis_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _skew_text(ms: int) -> str:
    for unit_ms, unit in ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute")):
        if ms % unit_ms == 0:
            count = ms // unit_ms
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{ms} ms"


def numeric_limits(prop: dict[str, Any]) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """The lower and upper bound of a numeric property, each as (bound, exclusive) or None."""
    low = high = None
    if "minimum" in prop:
        low = (prop["minimum"], False)
    if "exclusiveMinimum" in prop and (low is None or prop["exclusiveMinimum"] >= low[0]):
        low = (prop["exclusiveMinimum"], True)
    if "maximum" in prop:
        high = (prop["maximum"], False)
    if "exclusiveMaximum" in prop and (high is None or prop["exclusiveMaximum"] <= high[0]):
        high = (prop["exclusiveMaximum"], True)
    return low, high


def _range_check(
    name: str, low: tuple[float, bool] | None, high: tuple[float, bool] | None
) -> Callable[[Any], str | None]:
    low_value, low_strict = low if low is not None else (None, False)
    high_value, high_strict = high if high is not None else (None, False)
    low_text = "" if low is None else f"must be {'>' if low_strict else '>='} {_number_text(low[0])}"
    high_text = "" if high is None else f"must be {'<' if high_strict else '<='} {_number_text(high[0])}"

    def check(value: Any) -> str | None:
        if low_value is not None and (value <= low_value if low_strict else value < low_value):
            return f"out_of_range: {name}={show(value)} {low_text}"
        if high_value is not None and (value >= high_value if high_strict else value > high_value):
            return f"out_of_range: {name}={show(value)} {high_text}"
        return None

    return check


def _string_check(name: str, prop: dict[str, Any], nullable: bool) -> _Check:
    min_length = prop.get("minLength", 0)
    max_length = prop.get("maxLength")
    enum = prop.get("enum")
    enum_set = frozenset(enum) if enum is not None else None
    enum_text = f"[{', '.join(str(v) for v in enum)}]" if enum is not None else ""
    pattern = _python_pattern(prop["pattern"]) if "pattern" in prop else None

    def check(value: Any, now_ms: int) -> str | None:
        if not isinstance(value, str):
            if value is None and nullable:
                return None
            return _wrong_type(name, "string", value)
        length = len(value)
        if length < min_length:
            return f"too_short: {name} length {length} < {min_length}"
        if max_length is not None and length > max_length:
            return f"too_long: {name} length {length} > {max_length}"
        if enum_set is not None and value not in enum_set:
            return f"bad_enum: {name} {show(value)} not in {enum_text}"
        if pattern is not None and pattern.search(value) is None:
            return f"bad_pattern: {name}"  # no value: it may be personal data
        return None

    return check


def _is_integer(value: Any) -> bool:
    return value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool))


def _integer_check(name: str, prop: dict[str, Any], nullable: bool, is_timestamp: bool) -> _Check:
    if is_timestamp:
        before = f"before {_millis_text(MIN_EVENT_TIME_MS)}"
        ahead = f"more than {_skew_text(MAX_FUTURE_SKEW_MS)} in the future"

        def check_timestamp(value: Any, now_ms: int) -> str | None:
            if not _is_integer(value):
                if value is None and nullable:
                    return None
                return _wrong_type(name, "integer", value)
            if value < MIN_EVENT_TIME_MS:
                return f"bad_timestamp: {name}={show(value)} {before}"
            if value > now_ms + MAX_FUTURE_SKEW_MS:
                return f"bad_timestamp: {name}={show(value)} {ahead}"
            return None

        return check_timestamp

    low, high = numeric_limits(prop)
    # Integers beyond 64 bits cannot reach Flink (BIGINT) or most consumers.
    in_range = _range_check(name, low or (INT64[0], False), high or (INT64[1], False))

    def check(value: Any, now_ms: int) -> str | None:
        if not _is_integer(value):
            if value is None and nullable:
                return None
            return _wrong_type(name, "integer", value)
        return in_range(value)

    return check


def _number_check(name: str, prop: dict[str, Any], nullable: bool) -> _Check:
    in_range = _range_check(name, *numeric_limits(prop))
    isfinite = math.isfinite

    def check(value: Any, now_ms: int) -> str | None:
        cls = value.__class__
        if cls is float or (cls is not int and isinstance(value, float)):
            if not isfinite(value):
                return f"not_finite: {name}"
        elif not _is_integer(value):
            if value is None and nullable:
                return None
            return _wrong_type(name, "number", value)
        return in_range(value)

    return check


def _boolean_check(name: str, nullable: bool) -> _Check:
    def check(value: Any, now_ms: int) -> str | None:
        if value is True or value is False or (value is None and nullable):
            return None
        return _wrong_type(name, "boolean", value)

    return check


def _scalar_check(name: str, prop: dict[str, Any], json_type: str, nullable: bool, is_timestamp: bool) -> _Check:
    if json_type == "string":
        return _string_check(name, prop, nullable)
    if json_type == "integer":
        return _integer_check(name, prop, nullable, is_timestamp)
    if json_type == "number":
        return _number_check(name, prop, nullable)
    return _boolean_check(name, nullable)


def _array_check(name: str, prop: dict[str, Any], spec: FieldSpec) -> _Check:
    min_items = prop.get("minItems", 0)
    max_items = prop.get("maxItems")
    items = prop["items"]
    item_checks: dict[int, _Check] = {}

    def item_check(index: int) -> _Check:
        check = item_checks.get(index)
        if check is None:
            check = item_checks[index] = _scalar_check(f"{name}[{index}]", items, spec.json_type, False, False)
        return check

    def check(value: Any, now_ms: int) -> str | None:
        if not isinstance(value, list):
            if value is None and spec.nullable:
                return None
            return _wrong_type(name, "array", value)
        count = len(value)
        if count < min_items:
            return f"too_short: {name} {count} items < {min_items}"
        if max_items is not None and count > max_items:
            return f"too_long: {name} {count} items > {max_items}"
        for index, item in enumerate(value):
            reason = item_check(index)(item, now_ms)
            if reason is not None:
                return reason
        return None

    return check


def _json_value_problem(path: str, value: Any, depth: int) -> str | None:
    """Why a free-form value would not survive JSON encoding (None when it would)."""
    if value is None or value is True or value is False or isinstance(value, str) or _is_integer(value):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"not_finite: {path}"
    if depth >= _MAX_NESTING:
        return f"too_long: {path} nested deeper than {_MAX_NESTING}"
    if isinstance(value, list):
        for index, item in enumerate(value):
            reason = _json_value_problem(f"{path}[{index}]", item, depth + 1)
            if reason is not None:
                return reason
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"wrong_type: {path} key {show(key)} expected string, got {type_name(key)}"
            reason = _json_value_problem(f"{path}.{key}", item, depth + 1)
            if reason is not None:
                return reason
        return None
    return f"wrong_type: {path} expected a JSON value, got {type_name(value)}"


def _object_check(name: str, prop: dict[str, Any], nullable: bool) -> _Check:
    max_properties = prop.get("maxProperties")

    def check(value: Any, now_ms: int) -> str | None:
        if not isinstance(value, dict):
            if value is None and nullable:
                return None
            return _wrong_type(name, "object", value)
        if max_properties is not None and len(value) > max_properties:
            return f"too_long: {name} {len(value)} properties > {max_properties}"
        return _json_value_problem(name, value, 0)

    return check


def _python_pattern(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262: '$' matches only at the very end, '\d' only ASCII digits.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def _field_check(spec: FieldSpec, prop: dict[str, Any]) -> _Check:
    if spec.is_array:
        return _array_check(spec.name, prop, spec)
    if spec.json_type == "object":
        return _object_check(spec.name, prop, spec.nullable)
    return _scalar_check(spec.name, prop, spec.json_type, spec.nullable, spec.is_timestamp)


def unknown_field_name(key: Any) -> str:
    return key if isinstance(key, str) and _PLAIN_TEXT.match(key) else show(key)


class CompiledSchema:
    """A schema and its per-field checkers, in declaration order."""

    def __init__(self, schema: EventSchema) -> None:
        self.schema = schema
        properties = schema.json["properties"]
        self.checks = tuple(
            (spec.name, spec.required, _field_check(spec, properties[spec.name])) for spec in schema.fields
        )
        self.names = frozenset(spec.name for spec in schema.fields)
        self.strict = not schema.ignores_unknown_fields

    def reason(self, record: Any, now_ms: int | None) -> str | None:
        if not isinstance(record, dict):
            return f"not_object: top level is {type_name(record)}"
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        get = record.get
        missing = _MISSING
        for name, required, check in self.checks:
            value = get(name, missing)
            if value is missing:
                if required:
                    return f"missing_field: {name}"
                continue
            reason = check(value, now_ms)
            if reason is not None:
                return reason
        if self.strict and not self.names.issuperset(record):
            unknown = sorted((key for key in record if key not in self.names), key=str)
            return f"unknown_field: {unknown_field_name(unknown[0])}"
        return None


_MISSING = object()
