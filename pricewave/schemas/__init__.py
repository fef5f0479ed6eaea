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

Modules: :mod:`~pricewave.schemas.model` (what a schema says), :mod:`~pricewave.schemas.registry`
(loading), :mod:`~pricewave.schemas.checks` (the compiled field checkers),
:mod:`~pricewave.schemas.validation` (records and raw values), :mod:`~pricewave.schemas.compatibility`,
:mod:`~pricewave.schemas.flink` and :mod:`~pricewave.schemas.feast` (the types derived from a schema).

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

from pricewave.schemas.compatibility import compatibility_problems
from pricewave.schemas.feast import feast_fields
from pricewave.schemas.flink import flink_ddl_columns, flink_row_type
from pricewave.schemas.model import (
    COMPATIBILITY_POLICIES,
    DEFAULT_INPUT_CLOCK_SKEW_S,
    FIELD_REASON_CODES,
    HEARTBEAT,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW_MS,
    MIN_EVENT_TIME_MS,
    REASON_CODES,
    RECORD_REASON_CODES,
    TIMESTAMP_UNIT,
    EventSchema,
    FieldSpec,
    InvalidEvent,
)
from pricewave.schemas.registry import (
    DEFAULT_SCHEMAS_DIR,
    SCHEMAS_DIR_ENV,
    clear_schema_cache,
    load_schema,
    schema_names,
    schema_versions,
    schemas_dir,
)
from pricewave.schemas.validation import check_event, parse_event, reason_key, validate_record

# A rejected record raises pricewave.schemas.InvalidEvent, whichever module checked it.
InvalidEvent.__module__ = __name__

__all__ = [
    "COMPATIBILITY_POLICIES",
    "DEFAULT_INPUT_CLOCK_SKEW_S",
    "DEFAULT_SCHEMAS_DIR",
    "FIELD_REASON_CODES",
    "HEARTBEAT",
    "MAX_EVENT_BYTES",
    "MAX_FUTURE_SKEW_MS",
    "MIN_EVENT_TIME_MS",
    "REASON_CODES",
    "RECORD_REASON_CODES",
    "SCHEMAS_DIR_ENV",
    "TIMESTAMP_UNIT",
    "EventSchema",
    "FieldSpec",
    "InvalidEvent",
    "check_event",
    "clear_schema_cache",
    "compatibility_problems",
    "feast_fields",
    "flink_ddl_columns",
    "flink_row_type",
    "load_schema",
    "parse_event",
    "reason_key",
    "schema_names",
    "schema_versions",
    "schemas_dir",
    "validate_record",
]
