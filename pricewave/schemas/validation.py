"""Validating records and raw Kafka values against a schema, with a stable reason for each rejection."""

from __future__ import annotations

import json
import re
from typing import Any

from pricewave.schemas.checks import show, unknown_field_name
from pricewave.schemas.model import MAX_EVENT_BYTES, RECORD_REASON_CODES, InvalidEvent
from pricewave.schemas.registry import compiled_for


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
    reason = compiled_for(name, version).reason(record, now_ms)
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
                raise _BadToken(f"bad_json: duplicate key {unknown_field_name(key)}")
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
        return None, f"bad_json: {show(str(exc))}"
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
    compiled = compiled_for(name, version)
    value, reason = _decode_reason(raw)
    if reason is None:
        reason = compiled.reason(value, now_ms)
    if reason is not None:
        return None, reason
    if not compiled.strict and not compiled.names.issuperset(value):
        value = {key: field for key, field in value.items() if key in compiled.names}
    return value, None


_REASON = re.compile(r"^([a-z_]+)(?::\s*([A-Za-z0-9_]+))?")


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
