"""The schema registry: schema files, validation reasons, agreement with jsonschema, evolution."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricewave import schemas
from pricewave.errors import SchemaError
from pricewave.schemas import (
    FIELD_REASON_CODES,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW_MS,
    MIN_EVENT_TIME_MS,
    EventSchema,
    FieldSpec,
    InvalidEvent,
    check_event,
    compatibility_problems,
    feast_fields,
    flink_ddl_columns,
    flink_row_type,
    load_schema,
    parse_event,
    reason_key,
    schema_names,
    schema_versions,
    validate_record,
)

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the validator's clock in these tests
EVENT_SCHEMAS = ["click_event", "competitor_price", "review", "price_decision", "dead_letter"]
INT64 = (-(2**63), 2**63 - 1)
USER_KEY = "0123456789abcdef0123456789abcdef"

CLICK = {
    "event_id": "e-1",
    "event_type": "view",
    "user_key": USER_KEY,
    "session_id": "s-1",
    "sku": "SKU-1",
    "price_seen": 19.99,
    "channel": "web",
    "event_time": 1_735_689_600_000,
}
DECISION = load_schema("price_decision").json["examples"][1]


def reason_for(name: str, record: dict[str, Any]) -> str | None:
    try:
        validate_record(name, record, now_ms=NOW_MS)
    except InvalidEvent as exc:
        return exc.reason
    return None


def raw_reason(name: str, raw: bytes) -> str | None:
    return check_event(name, raw, now_ms=NOW_MS)[1]


def with_(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**record, **changes}


# ------------------------------------------------------------------------------------------
# Schema files


@pytest.mark.parametrize("name", EVENT_SCHEMAS)
def test_event_schema_files_follow_the_conventions(name: str) -> None:
    schema = load_schema(name)
    document = schema.json
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"pricewave/{name}/v{schema.version}"
    assert document["title"] and document["description"]
    assert document["type"] == "object"
    # The input topics a shop's producers write are fully compatible (readers ignore unknown fields);
    # what pricewave writes is backward compatible only (an unknown field is its own bug).
    policy = "full" if name in ("click_event", "competitor_price", "review") else "backward"
    assert (schema.compatibility, document["additionalProperties"]) == (policy, policy == "full")
    assert all(prop["description"] for prop in document["properties"].values())
    assert "event_time" in document["properties"] or name == "dead_letter"
    for spec in schema.fields:
        if spec.is_timestamp:
            assert document["properties"][spec.name]["minimum"] == MIN_EVENT_TIME_MS


def test_contract_fields_are_as_agreed() -> None:
    required = {name: [f.name for f in load_schema(name).fields if f.required] for name in EVENT_SCHEMAS}
    assert required["click_event"] == [
        "event_id",
        "event_type",
        "user_key",
        "session_id",
        "sku",
        "price_seen",
        "channel",
        "event_time",
    ]
    assert load_schema("click_event").field_names == [
        *required["click_event"][:6],
        "quantity",
        "channel",
        "event_time",
        "query",
    ]
    assert load_schema("competitor_price").field_names == required["competitor_price"]
    assert required["review"] == ["review_id", "sku", "rating", "text", "event_time"]
    decision = load_schema("price_decision")
    assert set(decision.field_names) - set(required["price_decision"]) == {"expected_conversion", "explanation"}
    assert decision.field("user_key") == FieldSpec("user_key", "string", True, True, False, False)
    assert decision.field("guardrails") == FieldSpec("guardrails", "string", False, True, False, True)
    assert decision.field("decision_time").is_timestamp
    dead = load_schema("dead_letter")
    assert dead.field("event_time") == FieldSpec("event_time", "integer", True, False, True, False)
    assert dead.field("schema").nullable


@pytest.mark.parametrize("name", schema_names())
def test_every_example_is_accepted(name: str) -> None:
    examples = load_schema(name).json.get("examples", [])
    if name in EVENT_SCHEMAS:
        assert len(examples) >= 2
    for example in examples:
        assert reason_for(name, example) is None
        assert parse_event(name, json.dumps(example).encode(), now_ms=NOW_MS) == example
        jsonschema.Draft202012Validator(load_schema(name).json).validate(example)


def test_schema_names_and_versions() -> None:
    assert set(EVENT_SCHEMAS) <= set(schema_names())
    assert schema_versions("click_event")[0] == 1
    assert schema_versions("no_such_schema") == []


# ------------------------------------------------------------------------------------------
# Reasons, one per class, exactly as documented


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{" + b" " * 1_048_598 + b"}", "too_large: 1048600 bytes > 65536"),
        (b'{"event_id": "\xff"}', "bad_encoding: invalid UTF-8 at byte 14"),
        (b'{"event_id": "\\ud800"}', "bad_encoding: lone surrogate in a \\u escape"),
        (b"", "bad_json: Expecting value at line 1 column 1"),
        (b'{"price_seen": NaN}', "bad_json: NaN is not valid JSON"),
        (b'{"price_seen": Infinity}', "bad_json: Infinity is not valid JSON"),
        (b'{"price_seen": -Infinity}', "bad_json: -Infinity is not valid JSON"),
        (b'{"sku": "a", "sku": "b"}', "bad_json: duplicate key sku"),
        (b'{"a": 1} {"b": 2}', "bad_json: Extra data at line 1 column 10"),
        (b"\xef\xbb\xbf{}", "bad_encoding: starts with a byte order mark"),
        (b"[" * 60_000, "bad_json: nested too deeply"),
        (b"[1, 2]", "not_object: top level is array"),
        (b'"text"', "not_object: top level is string"),
        (b"null", "not_object: top level is null"),
    ],
)
def test_record_level_reasons(raw: bytes, reason: str) -> None:
    assert raw_reason("click_event", raw) == reason
    with pytest.raises(InvalidEvent) as caught:
        parse_event("click_event", raw, now_ms=NOW_MS)
    assert caught.value.reason == reason
    assert caught.value.code == reason.split(":")[0]


def test_size_limit_is_inclusive() -> None:
    body = json.dumps(CLICK).encode()
    padded = body[:-1] + b" " * (MAX_EVENT_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_EVENT_BYTES
    assert raw_reason("click_event", padded) is None
    assert raw_reason("click_event", padded + b" ") == f"too_large: {MAX_EVENT_BYTES + 1} bytes > {MAX_EVENT_BYTES}"


def test_overflowing_numbers_are_rejected() -> None:
    huge_float = json.dumps(CLICK).replace("19.99", "1e400").encode()
    assert raw_reason("click_event", huge_float) == "not_finite: price_seen"
    huge_int = json.dumps(CLICK).replace("1735689600000", "9" * 5000).encode()
    assert (raw_reason("click_event", huge_int) or "").startswith("bad_json: ")


@pytest.mark.parametrize(
    ("name", "record", "reason"),
    [
        ("click_event", {k: v for k, v in CLICK.items() if k != "sku"}, "missing_field: sku"),
        ("price_decision", with_(DECISION, foo=1), "unknown_field: foo"),
        ("price_decision", with_(DECISION, foo=1, bar=2), "unknown_field: bar"),
        ("price_decision", with_(DECISION, **{"bad key\n": 1}), "unknown_field: 'bad key\\n'"),
        (
            "competitor_price",
            with_(load_schema("competitor_price").json["examples"][0], price="9.99"),
            "wrong_type: price expected number, got string",
        ),
        ("click_event", with_(CLICK, price_seen=True), "wrong_type: price_seen expected number, got boolean"),
        ("click_event", with_(CLICK, quantity=True), "wrong_type: quantity expected integer, got boolean"),
        ("click_event", with_(CLICK, quantity=2.0), "wrong_type: quantity expected integer, got number"),
        ("click_event", with_(CLICK, quantity=None), "wrong_type: quantity expected integer, got null"),
        ("click_event", with_(CLICK, sku=None), "wrong_type: sku expected string, got null"),
        ("click_event", with_(CLICK, event_time=1.7e12), "wrong_type: event_time expected integer, got number"),
        ("click_event", with_(CLICK, price_seen=math.nan), "not_finite: price_seen"),
        ("click_event", with_(CLICK, price_seen=-math.inf), "not_finite: price_seen"),
        ("click_event", with_(CLICK, price_seen=-1.0), "out_of_range: price_seen=-1.0 must be > 0"),
        ("click_event", with_(CLICK, price_seen=0), "out_of_range: price_seen=0 must be > 0"),
        ("click_event", with_(CLICK, price_seen=1_000_000.5), "out_of_range: price_seen=1000000.5 must be <= 1000000"),
        ("click_event", with_(CLICK, quantity=0), "out_of_range: quantity=0 must be >= 1"),
        ("click_event", with_(CLICK, event_id=""), "too_short: event_id length 0 < 1"),
        ("click_event", with_(CLICK, event_id="e" * 65), "too_long: event_id length 65 > 64"),
        ("click_event", with_(CLICK, query="q" * 257), "too_long: query length 257 > 256"),
        (
            "click_event",
            with_(CLICK, event_type="x"),
            "bad_enum: event_type 'x' not in [view, click, search, add_to_cart, purchase]",
        ),
        ("click_event", with_(CLICK, user_key="customer-42"), "bad_pattern: user_key"),
        ("click_event", with_(CLICK, user_key=USER_KEY.upper()), "bad_pattern: user_key"),
        ("click_event", with_(CLICK, sku="SKU-1\n"), "bad_pattern: sku"),
        ("click_event", with_(CLICK, sku="SKU 1"), "bad_pattern: sku"),
        ("click_event", with_(CLICK, sku="S" * 65), "bad_pattern: sku"),
        ("click_event", with_(CLICK, event_time=123), "bad_timestamp: event_time=123 before 2000-01-01"),
        (
            "click_event",
            with_(CLICK, event_time=NOW_MS + MAX_FUTURE_SKEW_MS + 1),
            f"bad_timestamp: event_time={NOW_MS + MAX_FUTURE_SKEW_MS + 1} more than 1 day in the future",
        ),
        (
            "review",
            with_(load_schema("review").json["examples"][0], text="t" * 20_001),
            "too_long: text length 20001 > 20000",
        ),
        (
            "price_decision",
            with_(DECISION, guardrails=["floor", 3]),
            "wrong_type: guardrails[1] expected string, got integer",
        ),
        ("price_decision", with_(DECISION, guardrails=["x"] * 65), "too_long: guardrails 65 items > 64"),
        (
            "price_decision",
            with_(DECISION, explanation={f"k{i}": i for i in range(33)}),
            "too_long: explanation 33 properties > 32",
        ),
        ("price_decision", with_(DECISION, explanation={"gap": math.inf}), "not_finite: explanation.gap"),
        (
            "price_decision",
            with_(DECISION, explanation={"gap": {1, 2}}),
            "wrong_type: explanation.gap expected a JSON value, got set",
        ),
        ("price_decision", with_(DECISION, propensity=0.0), "out_of_range: propensity=0.0 must be > 0"),
        ("price_decision", {k: v for k, v in DECISION.items() if k != "user_key"}, "missing_field: user_key"),
        (
            "dead_letter",
            with_(load_schema("dead_letter").json["examples"][0], offset=2**63),
            f"out_of_range: offset={2**63} must be <= {2**63 - 1}",
        ),
        (
            "dead_letter",
            with_(load_schema("dead_letter").json["examples"][0], partition=-2),
            "out_of_range: partition=-2 must be >= -1",
        ),
    ],
)
def test_field_reasons(name: str, record: dict[str, Any], reason: str) -> None:
    assert reason_for(name, record) == reason
    if all(not isinstance(v, float) or math.isfinite(v) for v in record.values()) and "explanation" not in record:
        assert raw_reason(name, json.dumps(record).encode()) == reason


def test_nullable_fields_accept_null_and_optional_fields_may_be_absent() -> None:
    assert reason_for("price_decision", with_(DECISION, user_key=None, guardrail=None)) is None
    dead = load_schema("dead_letter").json["examples"][1]
    assert "schema" not in dead and reason_for("dead_letter", with_(dead, schema=None, event_time=None)) is None


def test_fields_are_checked_in_schema_order() -> None:
    record = with_(CLICK, event_id="", price_seen=-1, foo=1)
    del record["sku"]
    assert reason_for("click_event", record) == "too_short: event_id length 0 < 1"
    record["event_id"] = "e-1"
    assert reason_for("click_event", record) == "missing_field: sku"
    record["sku"] = "SKU-1"
    assert reason_for("click_event", record) == "out_of_range: price_seen=-1 must be > 0"
    record["price_seen"] = 1
    assert reason_for("click_event", record) is None  # a fully compatible input ignores unknown fields
    strict = with_(DECISION, decision_id="", foo=1)
    assert reason_for("price_decision", strict) == "too_short: decision_id length 0 < 1"
    strict["decision_id"] = "d-1"
    assert reason_for("price_decision", strict) == "unknown_field: foo"


def test_reasons_are_short_single_lines() -> None:
    reason = reason_for("click_event", with_(CLICK, event_type="x\n" * 1000)) or ""
    assert "\n" not in reason and len(reason) < 200


def test_validate_record_and_check_event_agree_on_the_default_clock() -> None:
    validate_record("click_event", CLICK)  # now_ms defaults to the wall clock
    assert check_event("click_event", json.dumps(CLICK).encode()) == (CLICK, None)


def test_reason_key() -> None:
    assert reason_key("missing_field: sku") == "missing_field: sku"
    assert reason_key("wrong_type: guardrails[1] expected string, got integer") == "wrong_type: guardrails"
    assert reason_key("not_finite: explanation.gap") == "not_finite: explanation"
    assert reason_key("bad_json: duplicate key sku") == "bad_json"
    assert reason_key("not_object: top level is array") == "not_object"


# ------------------------------------------------------------------------------------------
# Property tests: valid records generated from the schema; one field mutated per class


def _anchored(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def _limits(prop: dict[str, Any], default: tuple[Any, Any]) -> tuple[Any, bool, Any, bool]:
    low, low_excl = prop.get("minimum", default[0]), False
    if "exclusiveMinimum" in prop:
        low, low_excl = prop["exclusiveMinimum"], True
    high, high_excl = prop.get("maximum", default[1]), False
    if "exclusiveMaximum" in prop:
        high, high_excl = prop["exclusiveMaximum"], True
    return low, low_excl, high, high_excl


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)


def scalar_values(json_type: str, prop: dict[str, Any], is_timestamp: bool) -> st.SearchStrategy[Any]:
    if json_type == "string":
        if "enum" in prop:
            return st.sampled_from(prop["enum"])
        if "pattern" in prop:
            return st.from_regex(_anchored(prop["pattern"]))
        low = prop.get("minLength", 0)
        return st.text(min_size=low, max_size=min(prop.get("maxLength", 40), max(low, 40)))
    if json_type == "boolean":
        return st.booleans()
    if is_timestamp:
        return st.integers(MIN_EVENT_TIME_MS, NOW_MS + MAX_FUTURE_SKEW_MS)
    low, low_excl, high, high_excl = _limits(prop, INT64 if json_type == "integer" else (-(10**12), 10**12))
    if json_type == "integer":
        return st.integers(low + low_excl, high - high_excl)
    ints = st.integers(
        math.floor(low) + 1 if low_excl else math.ceil(low), math.ceil(high) - 1 if high_excl else math.floor(high)
    )
    floats = st.floats(low, high, exclude_min=low_excl, exclude_max=high_excl, allow_nan=False)
    return floats | ints.filter(
        lambda v: (v > low if low_excl else v >= low) and (v < high if high_excl else v <= high)
    )


def field_values(spec: FieldSpec, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    if spec.is_array:
        items = scalar_values(spec.json_type, prop["items"], False)
        low = prop.get("minItems", 0)
        values: st.SearchStrategy[Any] = st.lists(
            items, min_size=low, max_size=max(low, min(prop.get("maxItems", 5), 5))
        )
    elif spec.json_type == "object":
        values = st.dictionaries(st.text(max_size=8), JSON_LEAVES, max_size=min(prop.get("maxProperties", 5), 5))
    else:
        values = scalar_values(spec.json_type, prop, spec.is_timestamp)
    return st.none() | values if spec.nullable else values


def records(schema: EventSchema) -> st.SearchStrategy[dict[str, Any]]:
    props = schema.json["properties"]
    required = {f.name: field_values(f, props[f.name]) for f in schema.fields if f.required}
    optional = {f.name: field_values(f, props[f.name]) for f in schema.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


ALL_SCHEMAS = [load_schema(name) for name in schema_names()]
MUTATION_CLASSES = [code for code in FIELD_REASON_CODES]


def _wrong_type_values(spec: FieldSpec) -> list[Any]:
    candidates: list[tuple[str, Any]] = [
        ("boolean", True),
        ("string", "1"),
        ("integer", 1),
        ("number", 1.5),
        ("array", []),
        ("object", {}),
    ]
    accepted = {"array"} if spec.is_array else {spec.json_type}
    if spec.json_type == "number" and not spec.is_array:
        accepted.add("integer")
    values = [value for kind, value in candidates if kind not in accepted]
    return values if spec.nullable else [None, *values]


def bad_values(spec: FieldSpec, prop: dict[str, Any], code: str) -> st.SearchStrategy[Any] | None:
    """Values that make ``spec`` fail with ``code`` (None when the field cannot fail so)."""
    scalar = not spec.is_array and spec.json_type != "object"
    if code == "wrong_type":
        return st.sampled_from(_wrong_type_values(spec))
    if code == "not_finite" and scalar and spec.json_type == "number":
        return st.sampled_from([math.inf, -math.inf, math.nan])
    if code == "out_of_range" and scalar and spec.json_type in ("integer", "number") and not spec.is_timestamp:
        # Integers are also bounded to 64 bits; numbers only where the schema says.
        low, low_excl, high, high_excl = _limits(prop, INT64 if spec.json_type == "integer" else (None, None))
        sides = []
        if low is not None:
            top = math.floor(low) - (0 if low_excl or low != math.floor(low) else 1)
            sides.append(st.integers(min_value=-(2**70), max_value=top))
        if high is not None:
            bottom = math.ceil(high) + (0 if high_excl or high != math.ceil(high) else 1)
            sides.append(st.integers(min_value=bottom, max_value=2**70))
        return st.one_of(sides) if sides else None
    if code == "bad_timestamp" and spec.is_timestamp:
        return st.integers(-(2**63), MIN_EVENT_TIME_MS - 1) | st.integers(NOW_MS + MAX_FUTURE_SKEW_MS + 1, 2**63)
    if code == "too_short" and scalar and spec.json_type == "string" and prop.get("minLength", 0) > 0:
        return st.text(max_size=prop["minLength"] - 1)
    if code == "too_long":
        if scalar and spec.json_type == "string" and "maxLength" in prop:
            return st.integers(1, 3).map(lambda extra: "z" * (prop["maxLength"] + extra))
        if spec.is_array and "maxItems" in prop:
            item = scalar_values(spec.json_type, prop["items"], False)
            return item.map(lambda value: [value] * (prop["maxItems"] + 1))
        if spec.json_type == "object" and "maxProperties" in prop:
            return st.just({f"k{i}": i for i in range(prop["maxProperties"] + 1)})
    if code == "bad_enum" and scalar and "enum" in prop:
        return st.text(max_size=12).filter(lambda value: value not in prop["enum"])
    if code == "bad_pattern" and scalar and "pattern" in prop:
        pattern = re.compile(_anchored(prop["pattern"]), re.ASCII)
        low, high = prop.get("minLength", 0), prop.get("maxLength", 100)
        arbitrary = st.text(min_size=low, max_size=min(high, 100)).filter(lambda value: not pattern.search(value))
        with_newline = st.from_regex(_anchored(prop["pattern"])).map(lambda value: value + "\n")
        return (arbitrary | with_newline).filter(lambda value: low <= len(value) <= high)
    return None


def mutated(
    draw: Callable[[st.SearchStrategy[Any]], Any], schema: EventSchema, code: str
) -> tuple[dict[str, Any], str]:
    """A valid record with one field broken so that it fails with ``code``; and the expected key."""
    record = draw(records(schema))
    props = schema.json["properties"]
    if code == "missing_field":
        spec = draw(st.sampled_from([f for f in schema.fields if f.required]))
        del record[spec.name]
        return record, f"missing_field: {spec.name}"
    if code == "unknown_field":
        key = draw(st.from_regex(r"\A[a-z_]{1,20}\Z").filter(lambda key: key not in props))
        record[key] = draw(JSON_LEAVES)
        return record, f"unknown_field: {key}"
    candidates = [(f, bad_values(f, props[f.name], code)) for f in schema.fields]
    spec, values = draw(st.sampled_from([(f, v) for f, v in candidates if v is not None]))
    record[spec.name] = draw(values)
    return record, f"{code}: {spec.name}"


def applicable(schema: EventSchema, code: str) -> bool:
    if code in ("missing_field", "unknown_field"):
        return not schema.ignores_unknown_fields if code == "unknown_field" else any(f.required for f in schema.fields)
    return any(bad_values(f, schema.json["properties"][f.name], code) is not None for f in schema.fields)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_valid_records_are_accepted(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from(ALL_SCHEMAS))
    record = data.draw(records(schema))
    assert reason_for(schema.name, record) is None
    if "explanation" not in record:  # free-form floats may not round-trip exactly through repr
        assert parse_event(schema.name, json.dumps(record).encode(), now_ms=NOW_MS) == record


@pytest.mark.parametrize("code", MUTATION_CLASSES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_one_broken_field_gives_its_reason_code(code: str, data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from([s for s in ALL_SCHEMAS if applicable(s, code)]))
    record, expected = mutated(data.draw, schema, code)
    reason = reason_for(schema.name, record)
    assert reason is not None and reason_key(reason) == expected, (record, reason)
    if code == "unknown_field":
        assert reason == expected


def _strict_validator(document: dict[str, Any]) -> jsonschema.protocols.Validator:
    """jsonschema's validator with pricewave's one deliberate difference: 1.0 is not an integer."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)(document)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


VALIDATORS = {schema.name: _strict_validator(schema.json) for schema in ALL_SCHEMAS}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_compiled_checker_agrees_with_jsonschema(data: st.DataObject) -> None:
    # not_finite and the future-timestamp window are beyond JSON Schema (and NaN beyond JSON).
    code = data.draw(st.sampled_from(["valid", *[c for c in MUTATION_CLASSES if c != "not_finite"]]))
    schema = data.draw(st.sampled_from([s for s in ALL_SCHEMAS if code == "valid" or applicable(s, code)]))
    record = data.draw(records(schema)) if code == "valid" else mutated(data.draw, schema, code)[0]
    ours = reason_for(schema.name, record)
    theirs = [error.message for error in VALIDATORS[schema.name].iter_errors(record)]
    outside_window = any(
        f.is_timestamp
        and _is_int(record.get(f.name))
        and not MIN_EVENT_TIME_MS <= record[f.name] <= NOW_MS + MAX_FUTURE_SKEW_MS
        for f in schema.fields
    )
    beyond_int64 = any(_is_int(v) and not INT64[0] <= v <= INT64[1] for v in record.values())
    # jsonschema's Python regex lets '$' match before a final newline; ECMA-262 (and we) do not.
    newline_before_end = any(
        "pattern" in prop and isinstance(record.get(field), str) and record[field].endswith("\n")
        for field, prop in schema.json["properties"].items()
    )
    if outside_window or beyond_int64 or newline_before_end:
        assert ours is not None
    else:
        assert (ours is None) == (not theirs), (record, ours, theirs)


def test_jsonschema_alone_would_accept_a_trailing_newline() -> None:
    # Why the checker anchors '$' at the very end: Python's re (used by jsonschema) does not.
    record = with_(CLICK, sku="SKU-1\n")
    assert not list(VALIDATORS["click_event"].iter_errors(record))
    assert reason_for("click_event", record) == "bad_pattern: sku"


# ------------------------------------------------------------------------------------------
# Evolution


@pytest.mark.parametrize("name", schema_names())
def test_each_version_only_adds_optional_fields(name: str) -> None:
    versions = schema_versions(name)
    assert versions == list(range(1, len(versions) + 1)), f"{name}: versions must be v1..vN without gaps"
    for old, new in itertools.pairwise(versions):
        assert compatibility_problems(load_schema(name, old), load_schema(name, new)) == []


def _write(
    directory: Path,
    name: str,
    version: int,
    properties: dict[str, Any],
    required: list[str],
    policy: str = "backward",
) -> None:
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"pricewave/{name}/v{version}",
        "title": name,
        "description": f"{name} v{version}",
        "type": "object",
        "additionalProperties": policy == "full",
        "x-compatibility": policy,
        "required": required,
        "properties": properties,
    }
    (folder / f"v{version}.json").write_text(json.dumps(document))


@pytest.fixture
def schema_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(schemas.SCHEMAS_DIR_ENV, str(tmp_path))
    return tmp_path


ID = {"type": "string", "maxLength": 8, "description": "id"}
SCORE = {"type": "number", "minimum": 0, "description": "score"}


@pytest.mark.parametrize(
    ("v2_properties", "v2_required", "problems"),
    [
        ({"id": ID, "score": SCORE, "note": {"type": "string", "description": "new"}}, ["id"], []),
        ({"id": {**ID, "description": "reworded"}, "score": SCORE}, ["id"], []),
        ({"id": ID}, ["id"], ["field 'score' was removed"]),
        ({"id": {**ID, "maxLength": 4}, "score": SCORE}, ["id"], ["field 'id' changed its definition"]),
        ({"id": ID, "score": SCORE}, ["id", "score"], ["field 'score' became required"]),
        ({"id": ID, "score": SCORE}, [], ["field 'id' became optional"]),
        (
            {"id": ID, "score": SCORE, "note": {"type": "string", "description": "new"}},
            ["id", "note"],
            ["new field 'note' is required"],
        ),
    ],
)
def test_compatibility_problems_detects_breaking_changes(
    schema_dir: Path, v2_properties: dict[str, Any], v2_required: list[str], problems: list[str]
) -> None:
    _write(schema_dir, "thing", 1, {"id": ID, "score": SCORE}, ["id"])
    _write(schema_dir, "thing", 2, v2_properties, v2_required)
    assert compatibility_problems(load_schema("thing", 1), load_schema("thing", 2)) == problems


def test_a_policy_change_is_a_breaking_change(schema_dir: Path) -> None:
    _write(schema_dir, "thing", 1, {"id": ID}, ["id"], policy="full")
    _write(schema_dir, "thing", 2, {"id": ID}, ["id"], policy="backward")
    problems = compatibility_problems(load_schema("thing", 1), load_schema("thing", 2))
    assert problems == ["the compatibility policy changed from 'full' to 'backward'"]


@pytest.mark.parametrize("policy", ["full", "backward"])
def test_readers_across_versions_follow_the_policy(schema_dir: Path, policy: str) -> None:
    """v1 and v2 (one optional field added) read each other's records as the policy promises."""
    note = {"type": "string", "maxLength": 4, "description": "new in v2"}
    _write(schema_dir, "thing", 1, {"id": ID}, ["id"], policy=policy)
    _write(schema_dir, "thing", 2, {"id": ID, "note": note}, ["id"], policy=policy)
    assert compatibility_problems(load_schema("thing", 1), load_schema("thing", 2)) == []
    v1_record, v2_record = b'{"id": "a"}', b'{"id": "a", "note": "hi"}'
    assert check_event("thing", v1_record, version=2) == ({"id": "a"}, None)  # backward: a v2 reader reads v1
    forward = check_event("thing", v2_record, version=1)  # forward: a v1 reader reads v2 ...
    if policy == "full":  # ... under full only, keeping the fields it knows
        assert forward == ({"id": "a"}, None)
    else:
        assert forward == (None, "unknown_field: note")
    # what a v2 reader checks still holds for the new field, whatever reads it
    assert check_event("thing", b'{"id": "a", "note": "too long"}', version=2)[1] == "too_long: note length 8 > 4"


# ------------------------------------------------------------------------------------------
# Loading errors


def test_latest_version_is_the_highest_number(schema_dir: Path) -> None:
    for version in (1, 2, 10):
        _write(schema_dir, "thing", version, {"id": ID}, ["id"])
    assert load_schema("thing").version == 10
    assert load_schema("thing", 2).id == "pricewave/thing/v2"
    assert schema_versions("thing") == [1, 2, 10]


@pytest.mark.parametrize(
    ("setup", "call", "message"),
    [
        (None, ("missing", None), "unknown schema 'missing'"),
        (None, ("../etc", None), "invalid schema name '../etc'"),
        ("ok", ("thing", 3), "schema thing has no version 3"),
        ("not_json", ("thing", None), "is not valid JSON: Expecting"),
        ("bad_schema", ("thing", None), "not a valid JSON Schema"),
        ("bad_id", ("thing", None), '"$id" must be "pricewave/thing/v1"'),
        ("unsupported", ("thing", None), "unsupported keywords ['format']"),
        ("no_description", ("thing", None), "field 'id' needs a \"description\""),
        ("open", ("thing", None), '"additionalProperties": false ("x-compatibility": "backward")'),
        ("closed_full", ("thing", None), '"additionalProperties": true ("x-compatibility": "full")'),
        ("no_policy", ("thing", None), "needs \"x-compatibility\": one of ['backward', 'full'], not None"),
        ("bad_timestamp", ("thing", None), "a timestamp may only declare"),
    ],
)
def test_malformed_schemas_raise_schema_error(
    schema_dir: Path, setup: str | None, call: tuple[str, int | None], message: str
) -> None:
    folder = schema_dir / "thing"
    folder.mkdir()
    path = folder / "v1.json"
    good = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "pricewave/thing/v1",
        "title": "t",
        "description": "d",
        "type": "object",
        "additionalProperties": False,
        "x-compatibility": "backward",
        "required": [],
        "properties": {"id": dict(ID)},
    }
    if setup == "not_json":
        path.write_text("{nope")
    else:
        document = json.loads(json.dumps(good))
        if setup == "bad_schema":
            document["properties"]["id"]["type"] = "text"
        elif setup == "bad_id":
            document["$id"] = "thing"
        elif setup == "unsupported":
            document["properties"]["id"]["format"] = "email"
        elif setup == "no_description":
            del document["properties"]["id"]["description"]
        elif setup == "open":
            document["additionalProperties"] = True
        elif setup == "closed_full":
            document["x-compatibility"] = "full"
        elif setup == "no_policy":
            del document["x-compatibility"]
        elif setup == "bad_timestamp":
            document["properties"]["t"] = {
                "type": "integer",
                "x-unit": "epoch-millis",
                "maximum": 5,
                "description": "t",
            }
        path.write_text(json.dumps(document))
    with pytest.raises(SchemaError, match=re.escape(message)):
        load_schema(*call)
    with pytest.raises(SchemaError):
        check_event(call[0], b"{}", version=call[1])


def test_override_directory_is_used(schema_dir: Path) -> None:
    assert schema_names() == []
    _write(schema_dir, "thing", 1, {"id": ID}, ["id"])
    assert schema_names() == ["thing"]
    assert check_event("thing", b'{"id": "123456789"}')[1] == "too_long: id length 9 > 8"


# ------------------------------------------------------------------------------------------
# Flink and Feast mappings (the job plans the Flink DDL in tests/pricewave/job/)


def test_flink_row_types() -> None:
    assert dict(flink_row_type("price_decision")) == {
        "decision_id": "STRING",
        "kind": "STRING",
        "sku": "STRING",
        "user_key": "STRING",
        "price": "DOUBLE",
        "base_price": "DOUBLE",
        "guardrail": "STRING",
        "guardrails": "ARRAY<STRING>",
        "model_version": "STRING",
        "propensity": "DOUBLE",
        "personalized": "BOOLEAN",
        "expected_conversion": "DOUBLE",
        "explanation": "STRING",
        "decision_time": "BIGINT",
        "event_time": "BIGINT",
    }
    assert dict(flink_row_type("click_event"))["quantity"] == "INT"
    assert dict(flink_row_type("dead_letter"))["offset"] == "BIGINT"
    assert flink_ddl_columns("dead_letter").splitlines()[2] == "  `partition` INT,"


def test_float_arrays_map_to_float(schema_dir: Path) -> None:
    vector = {"type": "array", "items": {"type": "number"}, "description": "embedding"}
    _write(schema_dir, "thing", 1, {"vector": vector}, ["vector"])
    assert flink_row_type("thing") == [("vector", "ARRAY<FLOAT>")]
    assert str(feast_fields("thing")[0].dtype) == "Array(Float32)"


def test_feast_fields() -> None:
    fields = {f.name: str(f.dtype) for f in feast_fields("price_decision", exclude=["sku", "user_key"])}
    assert "sku" not in fields and "user_key" not in fields
    assert fields["price"] == "Float64"
    assert fields["guardrails"] == "Array(String)"
    assert fields["personalized"] == "Bool"
    assert fields["event_time"] == "UnixTimestamp"
    assert fields["explanation"] == "String"
    assert str(feast_fields("click_event")[6].dtype) == "Int64"  # quantity
    with pytest.raises(SchemaError, match="cannot exclude"):
        feast_fields("click_event", exclude=["nope"])
