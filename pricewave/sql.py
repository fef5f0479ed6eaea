"""Writing Flink SQL text: quoted names, string and interval literals.

Example:
    >>> from pricewave.sql import interval, quote, sql_string
    >>> quote("sku"), sql_string("it's")
    ('`sku`', "'it''s'")
    >>> interval(90.5)
    "INTERVAL '0 00:01:30.500' DAY TO SECOND(3)"
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
