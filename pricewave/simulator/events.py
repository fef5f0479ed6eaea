"""From simulated activity to wire bytes: event records and transport faults.

Each clean record (a ``click_event``, ``competitor_price`` or ``review`` dict, see
``schemas/``) passes through a :class:`FaultInjector`, which, from independent draws, replaces
it by malformed bytes (share ``malformed_share``), or shifts its event time back within the
bounded out-of-orderness (``out_of_order_share``) or beyond watermark + allowed lateness
(``late_share``), and sends it twice (``duplicate_share``). Shares are of source events.

Malformed classes (each fails :func:`pricewave.schemas.check_event`): truncated JSON, wrong
types, a ``NaN`` token, a negative price (or rating), an unknown field, a bad timestamp, bytes
that are not UTF-8, an oversize record (> 64 KiB), a missing required field.

Example:
    >>> import random
    >>> from pricewave.simulator.scenario import FaultsSpec
    >>> faults = FaultInjector(FaultsSpec(malformed_share=1.0, out_of_order_share=0, late_share=0), random.Random(0))
    >>> record = {"event_id": "r1", "sku": "A-1", "rating": 5, "text": "great", "event_time": 1735689600000}
    >>> [emission] = faults.apply("review", record, now_ms=1735689600000)
    >>> emission.malformed is not None, emission.record is None
    (True, True)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from pricewave.kafka_io import encode_json
from pricewave.simulator.scenario import FaultsSpec, MalformedKind

EventName = Literal["click_event", "competitor_price", "review"]
EVENT_NAMES: tuple[EventName, ...] = ("click_event", "competitor_price", "review")
Timing = Literal["on_time", "out_of_order", "late"]

OVERSIZE_BYTES = 70_000  # above pricewave.schemas.MAX_EVENT_BYTES (64 KiB), below Kafka's 1 MB
_ID_FIELD = {"click_event": "event_id", "competitor_price": "event_id", "review": "review_id"}
# The numeric field each kind's 'negative', 'nan' and 'wrong_type' faults corrupt.
_VALUE_FIELD = {"click_event": "price_seen", "competitor_price": "price", "review": "rating"}
# A string field with a schema length limit, blown up by 'oversize'.
_LONG_FIELD = {"click_event": "query", "competitor_price": "competitor", "review": "text"}
_BAD_TIMESTAMPS: tuple[Any, ...] = (-1, 1_234, 10**16, "2025-01-01T00:00:00Z", 1.7e12 + 0.5)


@dataclass(frozen=True)
class Emission:
    """One message for Kafka.

    Attributes:
        name: The event schema name (which also picks the topic).
        key: The message key (the sku as UTF-8 bytes).
        value: The message value, exactly as sent.
        record: The record encoded in ``value``; None when malformed.
        timing: ``on_time``, ``out_of_order`` (shifted back within the out-of-orderness) or
            ``late`` (shifted back beyond watermark + allowed lateness).
        duplicate: True for the second copy of a duplicated event.
        malformed: The malformed class, or None.
    """

    name: EventName
    key: bytes
    value: bytes
    record: dict[str, Any] | None
    timing: Timing = "on_time"
    duplicate: bool = False
    malformed: MalformedKind | None = None


def malformed_bytes(name: EventName, record: dict[str, Any], kind: MalformedKind, rng: random.Random) -> bytes:
    """Corrupt a valid ``record`` of event ``name`` into raw bytes of malformed class ``kind``.

    Example:
        >>> import random
        >>> malformed_bytes("review", {"review_id": "r", "sku": "A", "rating": 4, "text": "", "event_time": 0},
        ...                 "nan", random.Random(0))
        b'{"review_id":"r","sku":"A","rating":NaN,"text":"","event_time":0}'
    """
    bad = dict(record)
    field = _VALUE_FIELD[name]
    if kind == "truncated_json":
        raw = encode_json(bad)
        return raw[: rng.randint(1, len(raw) - 1)]
    if kind == "wrong_type":
        bad[field] = str(bad[field])
    elif kind == "nan":
        bad[field] = float("nan")
        return json.dumps(bad, separators=(",", ":"), allow_nan=True).encode("utf-8")
    elif kind == "negative_price":
        bad[field] = -abs(bad[field]) if name != "review" else -rng.randint(0, 5)
    elif kind == "bad_timestamp":
        bad["event_time"] = rng.choice(_BAD_TIMESTAMPS)
    elif kind == "non_utf8":
        raw = encode_json(bad)
        return raw[:2] + b"\xff\xfe" + raw[2:]  # inside the first key: only the encoding is wrong
    elif kind == "oversize":
        bad[_LONG_FIELD[name]] = "x" * OVERSIZE_BYTES
    elif kind == "missing_field":
        del bad["sku"]
    return encode_json(bad)


class FaultInjector:
    """Decides, per clean record, how it reaches the wire (see the module docstring).

    Args:
        faults: Shares and bounds (usually ``scenario.faults``).
        rng: The random stream for fault decisions (own stream: faults never shift the market).
    """

    def __init__(self, faults: FaultsSpec, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self._late_threshold_ms = faults.max_out_of_orderness_ms + faults.allowed_lateness_ms

    def apply(self, name: EventName, record: dict[str, Any], now_ms: int) -> list[Emission]:
        """Turn one clean record, produced at simulated time ``now_ms``, into 1 or 2 emissions."""
        faults, rng = self.faults, self.rng
        key = str(record.get("sku", "")).encode("utf-8")
        u = rng.random()
        duplicate = rng.random() < faults.duplicate_share
        if u < faults.malformed_share:
            kind = rng.choice(faults.malformed_kinds)
            value = malformed_bytes(name, record, kind, rng)
            first = Emission(name, key, value, None, malformed=kind)
            return [first, Emission(name, key, value, None, duplicate=True, malformed=kind)] if duplicate else [first]
        timing: Timing = "on_time"
        u -= faults.malformed_share
        if u < faults.late_share:
            timing = "late"
            # Beyond watermark (max seen − out-of-orderness) + allowed lateness, by 1 s to 10 min.
            shift = self._late_threshold_ms + rng.randint(1_000, 600_000)
            record = {**record, "event_time": now_ms - shift}
        elif u < faults.late_share + faults.out_of_order_share and faults.max_out_of_orderness_ms > 1:
            timing = "out_of_order"
            # Strictly inside the bound, so a watermark with this out-of-orderness keeps it.
            shift = rng.randint(1, faults.max_out_of_orderness_ms - 1)
            record = {**record, "event_time": now_ms - shift}
        value = encode_json(record)
        first = Emission(name, key, value, record, timing=timing)
        if duplicate:
            return [first, Emission(name, key, value, record, timing=timing, duplicate=True)]
        return [first]


def event_id(prefix: str, run_id: str, counter: int) -> str:
    """A unique, deterministic event id, e.g. ``c-s7-000000042`` (at most 64 characters)."""
    return f"{prefix}-{run_id}-{counter:09d}"[:64]
