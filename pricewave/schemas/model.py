"""What a schema is and says: its fields, its limits, its compatibility policy and the reasons a record fails it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pricewave.errors import SchemaError

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

HEARTBEAT = "heartbeat"
"""The heartbeat schema (``schemas/heartbeat``: a record that carries only event time, accepted on
every input topic) and the job's verdict on one: it moved the watermark, and is dropped."""


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


INT32 = (-(2**31), 2**31 - 1)


INT64 = (-(2**63), 2**63 - 1)


SCALAR_TYPES = ("string", "integer", "number", "boolean")


COMPATIBILITY_POLICIES = {"full": True, "backward": False}
"""``x-compatibility`` -> the ``additionalProperties`` it goes with.

* ``full``: readers of ``v<N>`` accept ``v<N+1>`` records (they ignore the fields they do not know)
  and readers of ``v<N+1>`` accept ``v<N>`` records (new fields are optional). For the input topics:
  a shop's producers and the pricing job upgrade in either order.
* ``backward``: readers of ``v<N+1>`` accept ``v<N>`` records; an unknown field is an error, which
  catches pricewave's own mistakes in what it writes. Consumers upgrade before producers."""


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
