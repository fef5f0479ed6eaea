"""Writing Flink SQL text: quoted names, string and interval literals.

Example:
    >>> from pricewave.sql import interval, quote, sql_string
    >>> quote("sku"), sql_string("it's")
    ('`sku`', "'it''s'")
    >>> interval(90.5)
    "INTERVAL '0 00:01:30.500' DAY TO SECOND(3)"
    >>> seconds_between("`first`", "`event_time`").startswith("CAST(EXTRACT(EPOCH FROM `event_time`) * 1000")
    True
"""

from __future__ import annotations


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return f"`{name}`"


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def millis(seconds: float) -> int:
    """Seconds as whole milliseconds (Flink's durations and epoch times)."""
    return round(seconds * 1000)


def interval(seconds: float) -> str:
    """A SQL interval literal of any length (plain ``SECOND`` literals stop at 99 s)."""
    days, rest = divmod(millis(seconds), 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, rest = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{secs:02d}.{rest:03d}' DAY TO SECOND(3)"


def epoch_millis(timestamp: str) -> str:
    """SQL: a ``TIMESTAMP_LTZ(3)`` expression as epoch milliseconds (in the job's UTC session time zone)."""
    return f"EXTRACT(EPOCH FROM {timestamp}) * 1000 + EXTRACT(MILLISECOND FROM {timestamp})"


def seconds_between(start: str, end: str) -> str:
    """SQL: the seconds from ``start`` to ``end`` (two ``TIMESTAMP_LTZ(3)`` expressions), to the millisecond.

    Flink's ``TIMESTAMPDIFF`` counts whole seconds, even as ``MILLISECOND`` (2026-12, Flink 2.2.1:
    ``TIMESTAMPDIFF(MILLISECOND, 0.005 s, 2.5 s)`` is 2000) and returns an INT: the epoch
    milliseconds of each side instead, subtracted as BIGINT.
    """
    return f"CAST({epoch_millis(end)} - ({epoch_millis(start)}) AS DOUBLE) / 1000"
