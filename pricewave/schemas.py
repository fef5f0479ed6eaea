"""The one schema registry: versioned JSON Schemas for every event, and what is derived from them.

Each event type has JSON Schema (draft 2020-12) files ``schemas/<name>/v<N>.json`` in the
repository (override the directory with ``PRICEWAVE_SCHEMAS_DIR``). The same file drives:

* Python validation of records and raw Kafka values (:func:`validate_record`,
  :func:`parse_event`, :func:`check_event`), by a checker compiled once per schema that agrees
  with :mod:`jsonschema` and is fast enough for every record;
* Flink SQL column types for the streaming job's tables (:func:`flink_row_type`,
  :func:`flink_ddl_columns`); the job validates records with :func:`check_event` itself, in a
  pandas UDF (:mod:`udfs.validation`), so Python and Flink can never disagree;
* Feast field types (:func:`feast_fields`).

Schema conventions: an integer field with ``"x-unit": "epoch-millis"`` is a timestamp (between
2000-01-01 and one day after now); an array of numbers is a float array; a nullable field has
``"type": [<type>, "null"]``. Each schema declares its compatibility policy, ``"x-compatibility"``
(:data:`COMPATIBILITY_POLICIES`): ``"full"`` for the input topics a shop's producers write (a
reader ignores fields it does not know, ``"additionalProperties": true``, so a producer may move to
a newer version before or after the job), ``"backward"`` for what pricewave writes itself (an
unknown field is an error, ``"additionalProperties": false``). Integers are strict: ``1.0`` is not
an integer and ``true`` is neither an integer nor a number.

A rejected record's reason starts with a stable code, then the field, then details:
``missing_field: sku``, ``out_of_range: price=-1.0 must be > 0``. :func:`reason_key` reduces a
reason to ``code: field`` (what the monitor and the tests group reasons by).

Example:
    >>> from pricewave.schemas import check_event, flink_row_type, load_schema, reason_key
    >>> load_schema("review").version
    1
    >>> raw = b'{"review_id": "r1", "sku": "A-1", "rating": 5, "text": "", "event_time": 1735689600000}'
    >>> check_event("review", raw)
    ({'review_id': 'r1', 'sku': 'A-1', 'rating': 5, 'text': '', 'event_time': 1735689600000}, None)
    >>> record, reason = check_event("review", b'{"review_id": "r1", "sku": "A-1", "rating": 9, "text": ""}')
    >>> reason, reason_key(reason)
    ('out_of_range: rating=9 must be <= 5', 'out_of_range: rating')
    >>> flink_row_type("review")[:3]
    [('review_id', 'STRING'), ('sku', 'STRING'), ('rating', 'INT')]
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricewave.errors import SchemaError

if TYPE_CHECKING:  # feast is heavy: imported only where Feast fields are built
    from feast import Field

SCHEMAS_DIR_ENV = "PRICEWAVE_SCHEMAS_DIR"
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"

MAX_EVENT_BYTES = 65536
"""Largest raw event accepted by :func:`parse_event`, in bytes."""
MIN_EVENT_TIME_MS = 946_684_800_000
"""Earliest accepted timestamp: 2000-01-01T00:00:00Z in epoch milliseconds."""
MAX_FUTURE_SKEW_MS = 86_400_000
"""How far (1 day) a timestamp may lie ahead of the validator's clock.

The contract of every record, derived ones included (a bounded run's last windows end up to an hour
after its data). The pricing job bounds its *inputs* much tighter before they can move the
watermark (``JobOptions.max_clock_skew_s``, 5 minutes)."""
DEFAULT_INPUT_CLOCK_SKEW_S = 300.0
"""The pricing job's default bound on how far an input event time may lie ahead of its clock."""
TIMESTAMP_UNIT = "epoch-millis"

RECORD_REASON_CODES = ("too_large", "bad_encoding", "bad_json", "not_object")
"""Codes about the whole record; their reasons name no field."""
FIELD_REASON_CODES = (
    "missing_field",
    "unknown_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "too_short",
    "too_long",
    "bad_enum",
    "bad_pattern",
    "bad_timestamp",
)
"""Codes about one field; their reasons read ``code: field`` followed by details."""
REASON_CODES = RECORD_REASON_CODES + FIELD_REASON_CODES

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")
_PLAIN_TEXT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REASON = re.compile(r"^([a-z_]+)(?::\s*([A-Za-z0-9_]+))?")
_MAX_NESTING = 32
_SCALAR_TYPES = ("string", "integer", "number", "boolean")
_TOP_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "title",
        "description",
        "type",
        "additionalProperties",
        "x-compatibility",
        "required",
        "properties",
        "examples",
    }
)
COMPATIBILITY_POLICIES = {"full": True, "backward": False}
"""``x-compatibility`` -> the ``additionalProperties`` it goes with.

* ``full``: readers of ``v<N>`` accept ``v<N+1>`` records (they ignore the fields they do not know)
  and readers of ``v<N+1>`` accept ``v<N>`` records (new fields are optional). For the input topics:
  a shop's producers and the pricing job upgrade in either order.
* ``backward``: readers of ``v<N+1>`` accept ``v<N>`` records; an unknown field is an error, which
  catches pricewave's own mistakes in what it writes. Consumers upgrade before producers."""
_FIELD_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "enum",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "items",
        "minItems",
        "maxItems",
        "maxProperties",
        "additionalProperties",
        "x-unit",
        "examples",
    }
)
_ITEM_KEYWORDS = _FIELD_KEYWORDS - {"items", "minItems", "maxItems", "maxProperties", "additionalProperties", "x-unit"}


class InvalidEvent(Exception):
    """A record that does not satisfy its schema.

    Attributes:
        reason: Why, starting with a stable code (see :data:`REASON_CODES`), e.g.
            ``"missing_field: sku"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def code(self) -> str:
        """The stable code the reason starts with, e.g. ``"missing_field"``."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class FieldSpec:
    """One top-level field of an event schema.

    Attributes:
        name: The field name.
        json_type: The JSON type of the value (``string``, ``integer``, ``number``, ``boolean``,
            ``object``); for an array, the JSON type of its items.
        nullable: Whether ``null`` is allowed.
        required: Whether the field must be present.
        is_timestamp: An integer in epoch milliseconds (``"x-unit": "epoch-millis"``).
        is_array: An array of ``json_type`` values.
    """

    name: str
    json_type: str
    nullable: bool
    required: bool
    is_timestamp: bool
    is_array: bool


@dataclass(frozen=True)
class EventSchema:
    """One version of one event schema.

    Attributes:
        name: The schema name, e.g. ``"click_event"``.
        version: The version number (``N`` of ``v<N>.json``).
        json: The JSON Schema document as loaded.
        fields: The top-level fields in declaration order.
    """

    name: str
    version: int
    json: dict[str, Any]
    fields: tuple[FieldSpec, ...]

    @property
    def id(self) -> str:
        """The schema's ``$id``, e.g. ``"pricewave/click_event/v1"``."""
        return str(self.json["$id"])

    @property
    def compatibility(self) -> str:
        """The schema's compatibility policy (``"full"`` or ``"backward"``, see ``COMPATIBILITY_POLICIES``)."""
        return str(self.json["x-compatibility"])

    @property
    def ignores_unknown_fields(self) -> bool:
        """Whether a reader accepts (and drops) fields the schema does not declare."""
        return bool(self.json["additionalProperties"])

    @property
    def field_names(self) -> list[str]:
        """The field names in declaration order."""
        return [spec.name for spec in self.fields]

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``.

        Raises:
            SchemaError: The schema has no such field.
        """
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise SchemaError(f"schema {self.name} v{self.version} has no field {name!r}: fields are {self.field_names}")


# --------------------------------------------------------------------------------------------
# Loading


def schemas_dir() -> Path:
    """The directory holding ``<name>/v<N>.json``: ``$PRICEWAVE_SCHEMAS_DIR`` or the repo's ``schemas/``."""
    override = os.environ.get(SCHEMAS_DIR_ENV)
    return Path(override).expanduser().resolve() if override else DEFAULT_SCHEMAS_DIR


def _names_in(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        child.name
        for child in directory.iterdir()
        if child.is_dir() and _NAME.match(child.name) and any(_VERSION_FILE.match(f.name) for f in child.iterdir())
    )


def _versions_in(directory: Path, name: str) -> list[int]:
    folder = directory / name
    if not folder.is_dir():
        return []
    return sorted(int(match.group(1)) for f in folder.iterdir() if (match := _VERSION_FILE.match(f.name)))


def schema_names() -> list[str]:
    """Names of all schemas in :func:`schemas_dir`, sorted.

    Example:
        >>> schema_names()[:3]
        ['click_event', 'competitor_price', 'dead_letter']
    """
    return _names_in(schemas_dir())


def schema_versions(name: str) -> list[int]:
    """The versions of schema ``name``, ascending (empty when there is no such schema)."""
    return _versions_in(schemas_dir(), name)


def load_schema(name: str, version: int | None = None) -> EventSchema:
    """Load (once, then from a cache) one version of a schema.

    Args:
        name: The schema name, e.g. ``"click_event"``.
        version: The version; ``None`` means the latest.

    Returns:
        The schema.

    Raises:
        SchemaError: There is no such schema or version, or the file is not a valid JSON Schema
            following pricewave's conventions. The message names the file and the problem.

    Example:
        >>> schema = load_schema("click_event")
        >>> schema.id, schema.fields[0]
        ('pricewave/click_event/v1', FieldSpec(name='event_id', json_type='string', nullable=False, \
required=True, is_timestamp=False, is_array=False))
    """
    return _compiled(str(schemas_dir()), name, version).schema


def clear_schema_cache() -> None:
    """Forget loaded schemas (after editing schema files in a running process, or in tests)."""
    _compiled.cache_clear()


@functools.cache
def _compiled(directory: str, name: str, version: int | None) -> _Compiled:
    root = Path(directory)
    if not isinstance(name, str) or not _NAME.match(name):
        raise SchemaError(f"invalid schema name {name!r}: use lowercase letters, digits and '_', e.g. click_event")
    versions = _versions_in(root, name)
    if not versions:
        known = ", ".join(_names_in(root)) or "none"
        raise SchemaError(
            f"unknown schema {name!r} in {root} (known: {known}); set {SCHEMAS_DIR_ENV} to use another directory"
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        available = ", ".join(f"v{v}" for v in versions)
        raise SchemaError(f"schema {name} has no version {version} in {root / name} (available: {available})")
    path = root / name / f"v{version}.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"schema file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    schema = _build_schema(path, name, version, document)
    return _Compiled(schema)


def _fail(path: Path, message: str) -> SchemaError:
    return SchemaError(f"schema file {path}: {message}")


def _build_schema(path: Path, name: str, version: int, document: Any) -> EventSchema:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as JsonSchemaError

    if not isinstance(document, dict):
        raise _fail(path, "must hold a JSON object")
    try:
        Draft202012Validator.check_schema(document)
    except JsonSchemaError as exc:
        where = "/".join(str(part) for part in exc.path) or "(root)"
        raise _fail(path, f"not a valid JSON Schema at {where}: {exc.message}") from None
    unsupported = sorted(set(document) - _TOP_KEYWORDS)
    if unsupported:
        raise _fail(path, f"unsupported top-level keywords {unsupported} (supported: {sorted(_TOP_KEYWORDS)})")
    expected_id = f"pricewave/{name}/v{version}"
    if document.get("$id") != expected_id:
        raise _fail(path, f'"$id" must be "{expected_id}", not {document.get("$id")!r}')
    for key in ("title", "description"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise _fail(path, f'needs a non-empty "{key}"')
    policy = document.get("x-compatibility")
    if policy not in COMPATIBILITY_POLICIES:
        raise _fail(path, f'needs "x-compatibility": one of {sorted(COMPATIBILITY_POLICIES)}, not {policy!r}')
    allows_unknown = COMPATIBILITY_POLICIES[policy]
    if document.get("type") != "object" or document.get("additionalProperties") is not allows_unknown:
        raise _fail(
            path,
            f'must have "type": "object" and "additionalProperties": {str(allows_unknown).lower()} '
            f'("x-compatibility": "{policy}")',
        )
    properties = document.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise _fail(path, 'needs a non-empty "properties" object')
    required = document.get("required", [])
    missing = [field for field in required if field not in properties]
    if missing:
        raise _fail(path, f"required fields {missing} are not in properties")
    fields = tuple(_field_spec(path, field, prop, field in required) for field, prop in properties.items())
    return EventSchema(name=name, version=version, json=document, fields=fields)


def _types_of(path: Path, where: str, prop: dict[str, Any]) -> tuple[str, bool]:
    declared = prop.get("type")
    types = [declared] if isinstance(declared, str) else declared
    if not isinstance(types, list) or not types:
        raise _fail(path, f'{where} needs a "type"')
    nullable = "null" in types
    rest = [t for t in types if t != "null"]
    if len(rest) != 1:
        raise _fail(path, f'{where} must have one type, optionally with "null" (got {declared})')
    return rest[0], nullable


def _field_spec(path: Path, name: str, prop: Any, required: bool) -> FieldSpec:
    where = f"field {name!r}"
    if not isinstance(prop, dict):
        raise _fail(path, f"{where} must be an object")
    unsupported = sorted(set(prop) - _FIELD_KEYWORDS)
    if unsupported:
        raise _fail(path, f"{where} uses unsupported keywords {unsupported}")
    if not isinstance(prop.get("description"), str) or not prop["description"]:
        raise _fail(path, f'{where} needs a "description"')
    json_type, nullable = _types_of(path, where, prop)
    is_timestamp = prop.get("x-unit") is not None
    if is_timestamp:
        if prop["x-unit"] != TIMESTAMP_UNIT or json_type != "integer":
            raise _fail(path, f'{where}: "x-unit" is only supported as "{TIMESTAMP_UNIT}" on integers')
        if set(prop) & {"maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"} or prop.get(
            "minimum", MIN_EVENT_TIME_MS
        ) != (MIN_EVENT_TIME_MS):
            raise _fail(path, f'{where}: a timestamp may only declare "minimum": {MIN_EVENT_TIME_MS}')
    is_array = json_type == "array"
    if is_array:
        items = prop.get("items")
        if not isinstance(items, dict) or set(items) - _ITEM_KEYWORDS:
            raise _fail(path, f'{where} needs "items" with a scalar type and supported keywords')
        item_type, item_nullable = _types_of(path, f"{where} items", items)
        if item_type not in _SCALAR_TYPES or item_nullable:
            raise _fail(path, f"{where}: array items must be a non-null {'/'.join(_SCALAR_TYPES)}")
        json_type = item_type
    elif json_type == "object":
        if prop.get("additionalProperties", True) is not True:
            raise _fail(path, f"{where}: free-form objects only (no additionalProperties constraint)")
    elif json_type not in _SCALAR_TYPES:
        raise _fail(path, f"{where}: unsupported type {json_type!r}")
    if "enum" in prop and (json_type != "string" or is_array):
        raise _fail(path, f'{where}: "enum" is only supported on strings')
    return FieldSpec(name, json_type, nullable, required, is_timestamp, is_array)


# --------------------------------------------------------------------------------------------
# Validation: a checker per field, compiled once from the schema

_Check = Callable[[Any, int], "str | None"]


def _type_name(value: Any) -> str:
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


def _show(value: Any) -> str:
    """A short printable form of a value for a reason (reasons end up in the dead-letter topic)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit
        text = "<huge integer>"
    return text if len(text) <= 40 else text[:37] + "..."


def _number_text(bound: float) -> str:
    return repr(bound)


def _wrong_type(name: str, expected: str, value: Any) -> str:
    return f"wrong_type: {name} expected {expected}, got {_type_name(value)}"


def _millis_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _skew_text(ms: int) -> str:
    for unit_ms, unit in ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute")):
        if ms % unit_ms == 0:
            count = ms // unit_ms
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{ms} ms"


def _limits(prop: dict[str, Any]) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
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
            return f"out_of_range: {name}={_show(value)} {low_text}"
        if high_value is not None and (value >= high_value if high_strict else value > high_value):
            return f"out_of_range: {name}={_show(value)} {high_text}"
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
            return f"bad_enum: {name} {_show(value)} not in {enum_text}"
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
                return f"bad_timestamp: {name}={_show(value)} {before}"
            if value > now_ms + MAX_FUTURE_SKEW_MS:
                return f"bad_timestamp: {name}={_show(value)} {ahead}"
            return None

        return check_timestamp

    low, high = _limits(prop)
    # Integers beyond 64 bits cannot reach Flink (BIGINT) or most consumers.
    in_range = _range_check(name, low or (_INT64[0], False), high or (_INT64[1], False))

    def check(value: Any, now_ms: int) -> str | None:
        if not _is_integer(value):
            if value is None and nullable:
                return None
            return _wrong_type(name, "integer", value)
        return in_range(value)

    return check


def _number_check(name: str, prop: dict[str, Any], nullable: bool) -> _Check:
    in_range = _range_check(name, *_limits(prop))
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
                return f"wrong_type: {path} key {_show(key)} expected string, got {_type_name(key)}"
            reason = _json_value_problem(f"{path}.{key}", item, depth + 1)
            if reason is not None:
                return reason
        return None
    return f"wrong_type: {path} expected a JSON value, got {_type_name(value)}"


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


def _unknown_field_name(key: Any) -> str:
    return key if isinstance(key, str) and _PLAIN_TEXT.match(key) else _show(key)


class _Compiled:
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
            return f"not_object: top level is {_type_name(record)}"
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
            return f"unknown_field: {_unknown_field_name(unknown[0])}"
        return None


_MISSING = object()


def _compiled_for(name: str, version: int | None) -> _Compiled:
    return _compiled(str(schemas_dir()), name, version)


def validate_record(
    name: str, record: dict[str, Any], *, now_ms: int | None = None, version: int | None = None
) -> None:
    """Check a decoded record against a schema.

    Fields are checked in schema order; the first problem found is reported. Within a field the
    order is: type, finiteness, range or timestamp window, length, enum, pattern. Unknown fields
    are reported after all declared fields, under the ``backward`` policy only (a ``full`` schema's
    reader ignores them).

    Args:
        name: The schema name.
        record: The record, as decoded from JSON.
        now_ms: The clock for the future-timestamp check, in epoch milliseconds (default: now).
        version: The schema version (default: the latest).

    Raises:
        InvalidEvent: The record does not satisfy the schema; ``reason`` says why.
        SchemaError: There is no such schema, or its file is malformed.

    Example:
        >>> validate_record("competitor_price", {"event_id": "c1", "sku": "A-1", "competitor": "acme",
        ...                 "price": "9.99", "in_stock": True, "event_time": 1735689600000})
        Traceback (most recent call last):
        ...
        pricewave.schemas.InvalidEvent: wrong_type: price expected number, got string
    """
    reason = _compiled_for(name, version).reason(record, now_ms)
    if reason is not None:
        raise InvalidEvent(reason)


class _BadToken(ValueError):
    pass


def _reject_constant(token: str) -> Any:
    raise _BadToken(f"bad_json: {token} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadToken(f"bad_json: duplicate key {_unknown_field_name(key)}")
            seen.add(key)
    return record


_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)


def _decode_reason(raw: bytes | bytearray | memoryview) -> tuple[Any, str | None]:
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        return None, f"too_large: {size} bytes > {MAX_EVENT_BYTES}"
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"bad_encoding: invalid UTF-8 at byte {exc.start}"
    if text.startswith("\ufeff"):
        return None, "bad_encoding: starts with a byte order mark"
    try:
        value = _DECODER.decode(text)
    except _BadToken as exc:
        return None, str(exc)
    except json.JSONDecodeError as exc:
        return None, f"bad_json: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return None, f"bad_json: {_show(str(exc))}"
    except RecursionError:
        return None, "bad_json: nested too deeply"
    if "\\u" in text:  # an escaped lone surrogate decodes to a str that is not valid Unicode
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, "bad_encoding: lone surrogate in a \\u escape"
    return value, None


def parse_event(
    name: str, raw: bytes | bytearray | memoryview, *, now_ms: int | None = None, version: int | None = None
) -> dict[str, Any]:
    """Decode and validate one raw event (a Kafka record value).

    Checks, in order: size (at most :data:`MAX_EVENT_BYTES`), strict UTF-8, strict JSON (no
    ``NaN``/``Infinity`` tokens, no duplicate keys), a JSON object at the top level, then the
    schema (:func:`validate_record`).

    Args:
        name: The schema name.
        raw: The raw bytes.
        now_ms: The clock for the future-timestamp check (default: now).
        version: The schema version (default: the latest).

    Returns:
        The decoded record: its declared fields only (fields a ``full`` schema's reader does not
        know are dropped here, so they travel no further than the reader).

    Raises:
        InvalidEvent: The bytes are not a valid event; ``reason`` says why.
        SchemaError: There is no such schema, or its file is malformed.

    Example:
        >>> parse_event("review", b'{"review_id": "r1", "review_id": "r2"}')
        Traceback (most recent call last):
        ...
        pricewave.schemas.InvalidEvent: bad_json: duplicate key review_id
    """
    record, reason = check_event(name, raw, now_ms=now_ms, version=version)
    if reason is not None:
        raise InvalidEvent(reason)
    assert record is not None
    return record


def check_event(
    name: str, raw: bytes | bytearray | memoryview, *, now_ms: int | None = None, version: int | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """Like :func:`parse_event`, without raising for a bad event.

    Returns:
        ``(record, None)`` for a valid event, ``(None, reason)`` otherwise.

    Raises:
        SchemaError: There is no such schema, or its file is malformed.

    Example:
        >>> check_event("review", b'{"rating": NaN}')
        (None, 'bad_json: NaN is not valid JSON')
    """
    compiled = _compiled_for(name, version)
    value, reason = _decode_reason(raw)
    if reason is None:
        reason = compiled.reason(value, now_ms)
    if reason is not None:
        return None, reason
    if not compiled.strict and not compiled.names.issuperset(value):
        value = {key: field for key, field in value.items() if key in compiled.names}
    return value, None


def reason_key(reason: str) -> str:
    """Reduce a reason to its stable part: ``code: field`` (or ``code`` for a record-level code).

    Example:
        >>> reason_key("out_of_range: price=-1.0 must be > 0"), reason_key("too_large: 70000 bytes > 65536")
        ('out_of_range: price', 'too_large')
    """
    match = _REASON.match(reason)
    if match is None:
        return reason
    code, field = match.groups()
    if code in RECORD_REASON_CODES or field is None:
        return code
    return f"{code}: {field}"


def compatibility_problems(old: EventSchema, new: EventSchema) -> list[str]:
    """Why ``new`` is not a backward-compatible successor of ``old`` (empty when it is).

    The evolution rule: a new version may only add optional fields. Every field of ``old`` keeps
    its definition (descriptions and examples may change) and the required fields stay the same.

    Example:
        >>> compatibility_problems(load_schema("review", 1), load_schema("review", 1))
        []
    """
    problems = []
    old_properties, new_properties = old.json["properties"], new.json["properties"]
    annotations = {"description", "examples"}
    for field, definition in old_properties.items():
        if field not in new_properties:
            problems.append(f"field {field!r} was removed")
            continue
        strip = {k: v for k, v in definition.items() if k not in annotations}
        new_strip = {k: v for k, v in new_properties[field].items() if k not in annotations}
        if strip != new_strip:
            problems.append(f"field {field!r} changed its definition")
    old_required, new_required = set(old.json.get("required", [])), set(new.json.get("required", []))
    for field in sorted(new_required - old_required):
        problems.append(
            f"field {field!r} became required" if field in old_properties else f"new field {field!r} is required"
        )
    for field in sorted(old_required - new_required):
        problems.append(f"field {field!r} became optional")
    if old.compatibility != new.compatibility:
        problems.append(f"the compatibility policy changed from {old.compatibility!r} to {new.compatibility!r}")
    return problems


# --------------------------------------------------------------------------------------------
# Flink SQL


def _flink_scalar_type(json_type: str, prop: dict[str, Any], is_timestamp: bool) -> str:
    if json_type == "string":
        return "STRING"
    if json_type == "number":
        return "DOUBLE"
    if json_type == "boolean":
        return "BOOLEAN"
    if json_type == "integer":
        low, high = _limits(prop)
        fits_int = (
            not is_timestamp and low is not None and high is not None and _INT32[0] <= low[0] and high[0] <= _INT32[1]
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


# --------------------------------------------------------------------------------------------
# Feast


def feast_fields(name: str, *, exclude: Iterable[str] = (), version: int | None = None) -> list[Field]:
    """Feast fields for a schema's fields, in declaration order.

    Strings map to ``String``, integers to ``Int64``, timestamps (epoch millis) to
    ``UnixTimestamp``, numbers to ``Float64``, booleans to ``Bool``, arrays of numbers to
    ``Array(Float32)``, arrays of strings to ``Array(String)``, free-form objects to ``String``
    (their JSON text). Each field carries the schema's description.

    Args:
        name: The schema name.
        exclude: Fields to leave out (entity keys, the event timestamp, ...).
        version: The schema version (default: the latest).

    Raises:
        SchemaError: ``exclude`` names a field the schema does not have.

    Example:
        >>> [f.name for f in feast_fields("competitor_price", exclude=["event_id", "sku", "event_time"])]
        ['competitor', 'price', 'in_stock']
    """
    from feast import Field
    from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp

    schema = load_schema(name, version)
    excluded = set(exclude)
    unknown = sorted(excluded - set(schema.field_names))
    if unknown:
        raise SchemaError(f"feast_fields({name}): cannot exclude {unknown}: fields are {schema.field_names}")
    scalar = {"string": String, "integer": Int64, "number": Float64, "boolean": Bool, "object": String}
    items = {"string": String, "integer": Int64, "number": Float32, "boolean": Bool}
    fields = []
    for spec in schema.fields:
        if spec.name in excluded:
            continue
        if spec.is_array:
            dtype: Any = Array(items[spec.json_type])
        elif spec.is_timestamp:
            dtype = UnixTimestamp
        else:
            dtype = scalar[spec.json_type]
        description = schema.json["properties"][spec.name]["description"]
        fields.append(Field(name=spec.name, dtype=dtype, description=description))
    return fields
