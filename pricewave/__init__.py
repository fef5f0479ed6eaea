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


def _feast_imports_torch_when_used() -> None:
    """Feast without its eager ``import torch``: torch is imported the first time Feast asks for it.

    ``feast.torch_wrapper`` imports torch when ``feast`` is imported (about 4 s here, 2026-12-07), for
    the few methods that return tensors (``to_tensor``, the RAG retriever), which call its
    ``get_torch()``. This puts a module with the same interface in its place whose ``get_torch()``
    imports torch then, so a process that never asks Feast for a tensor (``pricewave price``, a
    catalog load, ``feast serve``) does not pay for torch. Does nothing once ``feast`` is imported.
    """
    name = "feast.torch_wrapper"
    if "feast" in sys.modules or name in sys.modules:
        return
    import importlib
    import types

    wrapper = types.ModuleType(name, "feast.torch_wrapper, importing torch on first use (pricewave)")
    state: dict[str, Any] = {}

    def load() -> dict[str, Any]:
        if not state:
            try:
                state["torch"], state["error"] = importlib.import_module("torch"), None
            except Exception as exc:  # as Feast's own wrapper: a broken CUDA install is reported on use
                state["torch"], state["error"] = None, exc
        return state

    def get_torch() -> Any:
        loaded = load()
        if loaded["torch"] is None:
            raise ImportError(f"Torch is not available or failed to import: {loaded['error']}") from loaded["error"]
        return loaded["torch"]

    def __getattr__(attribute: str) -> Any:  # TORCH_AVAILABLE and the private names of Feast's module
        if attribute not in ("TORCH_AVAILABLE", "_torch", "_torch_import_error"):  # e.g. the import system's __path__
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        loaded = load()
        return {"TORCH_AVAILABLE": loaded["torch"] is not None, "_torch": loaded["torch"],
                "_torch_import_error": loaded["error"]}[attribute]  # fmt: skip

    wrapper.get_torch = get_torch  # type: ignore[attr-defined]
    wrapper.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = wrapper


_feast_without_runtime_type_checks()
_feast_imports_torch_when_used()
