"""pricewave."""

from __future__ import annotations

import sys
from typing import Any


def _feast_without_runtime_type_checks() -> None:
    """Feast's classes as written, without typeguard's import-time instrumentation.

    Feast decorates about twenty of its classes (``FeatureView``, ``Field``, ``OnDemandFeatureView``,
    …) with typeguard's ``@typechecked``, which parses, rewrites and compiles each of their methods
    again when ``feast`` is imported: measured here, ``import feast`` took 11.8-12.9 s with it and
    6.7-8.6 s without (2026-12-07, 2 busy cores), in every process that imports it (each
    ``pricewave`` command, each Python worker of the job, each test subprocess). pricewave's own calls
    into Feast are type-checked statically (mypy), so Feast's classes are kept as written; a
    decoration from any other package still gets typeguard's checks. Does nothing once ``feast`` is
    imported (its classes are decorated by then) or without typeguard.
    """
    if "feast" in sys.modules:
        return
    try:
        import typeguard
    except ImportError:
        return
    checked = typeguard.typechecked
    if getattr(checked, "_pricewave_skips_feast", False):
        return

    def typechecked(target: Any = None, **options: Any) -> Any:
        if target is None:  # @typechecked(...) with options: decorate later
            return lambda later: typechecked(later, **options)
        if str(getattr(target, "__module__", "")).split(".")[0] == "feast":
            return target
        return checked(target, **options)

    typechecked._pricewave_skips_feast = True  # type: ignore[attr-defined]
    typeguard.typechecked = typechecked


_feast_without_runtime_type_checks()
