"""argparse types shared by the subcommands: numbers checked as they are parsed.

A bad value is argparse's usual one-line error (``pricewave: error: argument --rate: expected a
finite number > 0, got '-1'``), exit code 2.

Example:
    >>> positive_int("3"), non_negative_float("0"), share("0.25")
    (3, 0.0, 0.25)
    >>> int_at_least(100)("99")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a whole number >= 100, got '99'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A type for whole numbers ``>= minimum``."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"  # argparse names the type in some messages
    return parse


positive_int = int_at_least(1)
"""A whole number >= 1."""
non_negative_int = int_at_least(0)
"""A whole number >= 0."""


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def share(text: str) -> float:
    """A share between 0 and 1, both included."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def open_share(text: str) -> float:
    """A share strictly between 0 and 1 (e.g. a test split)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1), got {text!r}")
    return value
