"""Loading the versioned schema files (``schemas/<name>/v<N>.json``), checked against pricewave's
conventions, once per process."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from pricewave.errors import SchemaError
from pricewave.schemas.checks import CompiledSchema
from pricewave.schemas.model import (
    COMPATIBILITY_POLICIES,
    MIN_EVENT_TIME_MS,
    SCALAR_TYPES,
    TIMESTAMP_UNIT,
    EventSchema,
    FieldSpec,
)

SCHEMAS_DIR_ENV = "PRICEWAVE_SCHEMAS_DIR"


DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")


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
def _compiled(directory: str, name: str, version: int | None) -> CompiledSchema:
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
    return CompiledSchema(schema)


def compiled_for(name: str, version: int | None) -> CompiledSchema:
    return _compiled(str(schemas_dir()), name, version)


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
        if item_type not in SCALAR_TYPES or item_nullable:
            raise _fail(path, f"{where}: array items must be a non-null {'/'.join(SCALAR_TYPES)}")
        json_type = item_type
    elif json_type == "object":
        if prop.get("additionalProperties", True) is not True:
            raise _fail(path, f"{where}: free-form objects only (no additionalProperties constraint)")
    elif json_type not in SCALAR_TYPES:
        raise _fail(path, f"{where}: unsupported type {json_type!r}")
    if "enum" in prop and (json_type != "string" or is_array):
        raise _fail(path, f'{where}: "enum" is only supported on strings')
    return FieldSpec(name, json_type, nullable, required, is_timestamp, is_array)
