"""Versioned model artifacts, and a watcher that hot-swaps a new version without a restart.

Layout under a model directory (``Settings.models.model_dir``)::

    <model_dir>/<version>/weights.pt         state dict + model constructor config
    <model_dir>/<version>/feature_spec.json  the feature spec the model was trained on
    <model_dir>/<version>/metrics.json       version, created_at, data range, metrics
    <model_dir>/LATEST                       the version to serve (written last, atomically)

A version directory is written under a temporary name and renamed into place, and ``LATEST`` is
replaced atomically, so a reader never sees a half-written artifact. The model's age for the
kill switch is measured from ``created_at``.

Model faults fail safe:

* :func:`save_artifact` refuses (``DataError``, ``LATEST`` untouched) a model whose weights or
  metrics hold NaN/inf, so no publisher can move ``LATEST`` to a model known to be broken.
* :func:`load_artifact` turns every failure (missing, truncated or garbage files, a pickle of the
  wrong type, missing keys, wrong tensor shapes, non-finite weights, a model that does not take
  this code's feature row) into one ``DataError``.
* :class:`ArtifactWatcher` never raises: a version that fails to load is logged and counted
  (``load_failures``) and the last good model keeps serving; a worker that never loaded one
  serves None, so the policy's kill switch prices at base. No ``LATEST`` means no model: the
  kill switch prices at base in every worker, running (within one check interval) or restarted.

Example:
    >>> import tempfile
    >>> from pricewave.pricing.demand_model import DemandModel
    >>> model_dir = tempfile.mkdtemp()
    >>> version = save_artifact(DemandModel(), None, {"auc": 0.71}, {"start_ms": 0, "end_ms": 1}, model_dir)
    >>> artifact = load_artifact(model_dir)
    >>> artifact.version == version, artifact.metrics["auc"]
    (True, 0.71)
    >>> ArtifactWatcher(model_dir).current().version == version
    True
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch

from pricewave.errors import DataError
from pricewave.pricing.demand_model import DemandModel, default_device
from pricewave.pricing.features import (
    EMBEDDING_DIM,
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    assert_no_protected_inputs,
    feature_spec,
)

POINTER = "LATEST"
WEIGHTS = "weights.pt"
SPEC = "feature_spec.json"
METRICS = "metrics.json"

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded model version, ready to serve (in eval mode, on its device)."""

    version: str
    model: DemandModel
    spec: dict[str, Any]
    metrics: dict[str, Any]
    data_range: dict[str, Any]
    created_at: float  # epoch seconds
    path: Path = field(compare=False)

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the artifact was created (``now`` in epoch seconds; default: the clock)."""
        return (time.time() if now is None else now) - self.created_at


def non_finite_weights(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or inf (``[]`` = all finite).

    Example:
        >>> non_finite_weights({"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(2), "n": torch.tensor(3)})
        ['w']
    """
    return [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value.detach()).all())
    ]


def non_finite_metrics(metrics: Any, prefix: str = "") -> list[str]:
    """Keys (dotted for nested mappings and lists) of the numbers in ``metrics`` that are NaN or inf.

    Example:
        >>> non_finite_metrics({"auc": 0.7, "val_log_loss": float("nan"), "curve": [1.0, float("inf")]})
        ['val_log_loss', 'curve.1']
    """
    if isinstance(metrics, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in metrics.items()]
    elif isinstance(metrics, list | tuple):
        items = [(str(i), v) for i, v in enumerate(metrics)]
    else:
        is_number = isinstance(metrics, int | float) and not isinstance(metrics, bool)
        return [prefix] if is_number and not math.isfinite(metrics) else []
    return [bad for key, value in items for bad in non_finite_metrics(value, f"{prefix}.{key}" if prefix else key)]


def _listing(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_publishable(model: DemandModel, metrics: Mapping[str, Any] | None) -> None:
    """Refuse a model whose weights or metrics hold NaN/inf (what :func:`save_artifact` checks first).

    Raises:
        DataError: One line naming what is non-finite.
    """
    bad_weights = non_finite_weights(model.state_dict())
    if bad_weights:
        raise DataError(
            f"refusing to publish the model: its weights hold NaN/inf ({_listing(bad_weights)}); "
            "LATEST still names the previous model; check the training data and retrain"
        )
    bad_metrics = non_finite_metrics(dict(metrics or {}))
    if bad_metrics:
        raise DataError(
            f"refusing to publish the model: its metrics are not finite ({_listing(bad_metrics)}); "
            "LATEST still names the previous model; check the training data and retrain"
        )


def save_artifact(
    model: DemandModel,
    spec: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    data_range: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    created_at: float | None = None,
    publish: bool = True,
) -> str:
    """Write a new model version under ``out_dir`` and point ``LATEST`` at it.

    Args:
        model: The trained demand model.
        spec: Its feature spec; None = the current :func:`~pricewave.pricing.features.feature_spec`.
        metrics: Evaluation metrics (JSON-serializable).
        data_range: What the model was trained on (e.g. ``{"start_ms": ..., "end_ms": ...}``).
        out_dir: The model directory.
        created_at: Creation time in epoch seconds (default: now).
        publish: Point ``LATEST`` at the new version; False leaves ``LATEST`` alone (a candidate
            that a promotion gate publishes later with :func:`publish_version`, or never).

    Returns:
        The new version name, e.g. ``demand-20250101T120000123456Z``.

    Raises:
        DataError: The spec names protected attributes or does not fit the model, or the model's
            weights or metrics hold NaN/inf (:func:`check_publishable`). Nothing is written then
            and ``LATEST`` does not move.
    """
    check_publishable(model, metrics)
    spec_d = dict(feature_spec() if spec is None else spec)
    names = list(spec_d.get("feature_names", []))
    assert_no_protected_inputs(names)
    if len(names) != model.n_features:
        raise DataError(f"feature spec lists {len(names)} features but the model takes {model.n_features}")
    created = time.time() if created_at is None else float(created_at)
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    version, suffix = f"demand-{stamp}", 0
    while (root / version).exists():
        suffix += 1
        version = f"demand-{stamp}-{suffix}"
    staging = root / f".tmp-{version}-{os.getpid()}"
    staging.mkdir()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": dict(model.config), "state_dict": state}, staging / WEIGHTS)
    (staging / SPEC).write_text(json.dumps(spec_d, indent=2, sort_keys=True))
    manifest = {
        "version": version,
        "created_at": created,
        "created_at_iso": datetime.fromtimestamp(created, UTC).isoformat(),
        "data_range": dict(data_range or {}),
        "metrics": dict(metrics or {}),
    }
    (staging / METRICS).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    staging.rename(root / version)
    if publish:
        publish_version(root, version)
    return version


def publish_version(out_dir: str | Path, version: str) -> None:
    """Point ``LATEST`` in ``out_dir`` at ``version`` (atomically: a reader sees the old or the new name).

    Raises:
        DataError: ``version`` is not a model version directory in ``out_dir``.
    """
    root = Path(out_dir)
    if "/" in version or version.startswith(".") or not (root / version / WEIGHTS).is_file():
        raise DataError(f"{root / version} is not a model version: nothing published")
    pointer_tmp = root / f".{POINTER}.{os.getpid()}.tmp"
    pointer_tmp.write_text(version + "\n")
    os.replace(pointer_tmp, root / POINTER)


def _resolve(path_or_dir: str | Path) -> Path:
    path = Path(path_or_dir)
    if (path / POINTER).is_file():
        version = (path / POINTER).read_text().strip()
        if not version or "/" in version or version.startswith("."):
            raise DataError(f"{path / POINTER} does not name a model version; retrain or fix the pointer")
        return path / version
    if (path / WEIGHTS).is_file():
        return path
    raise DataError(
        f"no model artifact at {path}: expected {POINTER} or {WEIGHTS}; train a model or set models.model_dir"
    )


def artifact_age_s(path_or_dir: str | Path, now: float | None = None) -> float | None:
    """Seconds since the model ``LATEST`` names was trained, without loading it; None when there is none.

    Example:
        >>> import tempfile
        >>> artifact_age_s(tempfile.mkdtemp()) is None
        True
    """
    created_at = _latest_field(path_or_dir, METRICS, "created_at", float)
    return None if created_at is None else (time.time() if now is None else now) - created_at


def artifact_spec_version(path_or_dir: str | Path) -> int | None:
    """The feature spec version the model ``LATEST`` names was trained on, without loading it; None when none.

    A model of another version than :data:`FEATURE_SPEC_VERSION` is refused by :func:`load_artifact`.

    Example:
        >>> import tempfile
        >>> artifact_spec_version(tempfile.mkdtemp()) is None
        True
    """
    return _latest_field(path_or_dir, SPEC, "version", int)


def _latest_field(path_or_dir: str | Path, file_name: str, key: str, kind: Callable[[Any], T]) -> T | None:
    """One field of a JSON file of the version ``LATEST`` names, as ``kind``; None when any of it is missing."""
    try:
        return kind(json.loads((_resolve(path_or_dir) / file_name).read_text())[key])
    except (DataError, OSError, ValueError, KeyError, TypeError):
        return None


SERVING_DTYPE = torch.float64
"""The dtype a loaded model computes in (training runs in float32): float64 rounding error, ~1e-16,
is far below any gap between two candidates' values, so batch composition cannot change a price."""


def load_artifact(path_or_dir: str | Path, *, device: torch.device | str | None = None) -> ModelArtifact:
    """Load the version ``LATEST`` names in a model directory, or a version directory itself.

    Args:
        path_or_dir: A model directory (with ``LATEST``) or one version's directory.
        device: Where to put the model (default: CUDA when present, else CPU); it computes in
            :data:`SERVING_DTYPE`.

    Raises:
        DataError: Whatever is wrong: nothing there, files missing, unreadable or malformed (a
            truncated or garbage weights file, a pickle of the wrong type, missing keys, wrong
            tensor shapes), non-finite weights, or trained on another feature spec. No other
            exception leaves this function (a caller can rely on that to fail safe).
    """
    target = torch.device(device) if device is not None else default_device()
    try:
        version_dir = _resolve(path_or_dir)
    except DataError:
        raise
    except Exception as exc:  # e.g. an unreadable or undecodable LATEST
        raise DataError(f"cannot read the model pointer in {path_or_dir}: {_one_line(exc)}") from None
    try:
        return _load(version_dir, target)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"model artifact {version_dir} is incomplete ({Path(exc.filename).name} missing)") from None
    except Exception as exc:  # any malformed content: the caller gets one readable line, never a crash
        raise DataError(f"model artifact {version_dir} is unreadable: {_one_line(exc)}") from None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}").split())  # no ANSI, one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load(version_dir: Path, target: torch.device) -> ModelArtifact:
    spec = json.loads((version_dir / SPEC).read_text())
    manifest = json.loads((version_dir / METRICS).read_text())
    payload = torch.load(version_dir / WEIGHTS, map_location="cpu", weights_only=True)
    if not isinstance(spec, dict) or not isinstance(manifest, dict):
        raise DataError(f"model artifact {version_dir} has a {SPEC} or {METRICS} that is not a JSON object")
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise DataError(f"model artifact {version_dir}: {WEIGHTS} does not hold a model config and state dict")
    names = spec.get("feature_names")
    assert_no_protected_inputs(names or [])
    if spec.get("version") != FEATURE_SPEC_VERSION or tuple(names or ()) != FEATURE_NAMES:
        raise DataError(
            f"model artifact {version_dir} was trained on feature spec v{spec.get('version')}, this code builds "
            f"v{FEATURE_SPEC_VERSION} {FEATURE_NAMES[:2]}...; retrain the model"
        )
    model = DemandModel(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    _check_servable(model, version_dir)
    artifact = ModelArtifact(
        version=str(manifest.get("version", version_dir.name)),
        model=model,
        spec=spec,
        metrics=dict(manifest.get("metrics", {})),
        data_range=dict(manifest.get("data_range", {})),
        created_at=float(manifest["created_at"]),
        path=version_dir,
    )
    # Served in float64: float32 matmuls give a row results that depend on the other rows of its batch
    # (on this CPU 1,856 of 4,000 outputs differ between batches of 1 and of 2,000), and a replay's
    # batches are not the first run's, so a near-tie between two candidate prices could flip.
    model.to(device=target, dtype=SERVING_DTYPE)
    return artifact


def _check_servable(model: DemandModel, version_dir: Path) -> None:
    """Refuse a model the policy could not run: non-finite weights, or not this code's input widths.

    A zero row (with and without a zero review embedding) must go through and come out finite,
    so a model that loads here cannot raise on its first batch.
    """
    bad = non_finite_weights(model.state_dict())
    if bad:
        raise DataError(f"model artifact {version_dir} has NaN/inf weights ({_listing(bad)}); retrain the model")
    embedding_dim = model.config.get("embedding_dim")
    if model.n_features != len(FEATURE_NAMES) or embedding_dim not in (0, EMBEDDING_DIM):
        raise DataError(
            f"model artifact {version_dir} takes {model.n_features} features and a {embedding_dim}-float embedding; "
            f"this code builds {len(FEATURE_NAMES)} and {EMBEDDING_DIM}: retrain the model"
        )
    x = torch.zeros(2, model.n_features)
    with torch.inference_mode():
        outputs = [*model.decompose(x, None), *model.decompose(x, torch.zeros(2, EMBEDDING_DIM))]
    if not all(bool(torch.isfinite(t).all()) for t in outputs):
        raise DataError(f"model artifact {version_dir} gives NaN/inf on a zero input; retrain the model")


class ArtifactWatcher:
    """Serves the newest model version, reloading when ``LATEST`` changes (no restart).

    :meth:`current` stats the pointer file at most once per ``check_interval_s`` (a cheap
    ``os.stat``) and loads a new version only when the pointer's mtime/size changed and it names
    another version.

    It never raises. A version that fails to load, for any reason, is logged, counted in
    ``load_failures`` (its message in ``last_error``) and not retried until ``LATEST`` changes;
    the last good model keeps serving, or None (the kill switch prices at base) in a watcher that
    never loaded one. A removed ``LATEST`` means "no model": :meth:`current` returns None from the
    next check on, exactly what a worker started without ``LATEST`` sees; publishing a model again
    (``LATEST`` back) serves it.

    Args:
        model_dir: The model directory.
        device: Where models go (default: CUDA when present, else CPU).
        check_interval_s: Minimum seconds between pointer checks.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: torch.device | str | None = None,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._artifact: ModelArtifact | None = None
        self._pointer_stat: tuple[int, int] | None = None
        self._checked_at: float | None = None
        self.reloads = 0
        self.load_failures = 0  # versions that failed to load (for metrics and the dashboard)
        self.last_error: str | None = None  # the latest failure's message

    def current(self) -> ModelArtifact | None:
        """The artifact to serve now; None while there is no model (none published, ``LATEST``
        removed, or no version has loaded yet). Never raises."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.check_interval_s:
            return self._artifact
        self._checked_at = now
        try:
            self._check()
        except Exception as exc:  # belt and braces: a model fault must never stop pricing
            self._failed(exc)
        return self._artifact

    def _check(self) -> None:
        try:
            st = os.stat(self.model_dir / POINTER)
        except (FileNotFoundError, NotADirectoryError):
            if self._artifact is not None:
                log.warning(
                    "%s is gone: no longer serving model %s; the kill switch prices at base until a model is published",
                    self.model_dir / POINTER,
                    self._artifact.version,
                )
            self._artifact, self._pointer_stat = None, None
            return
        stat_key = (st.st_mtime_ns, st.st_size)
        if stat_key == self._pointer_stat:
            return
        self._pointer_stat = stat_key
        version = (self.model_dir / POINTER).read_text().strip()
        if self._artifact is not None and version == self._artifact.version:
            return
        self._artifact = load_artifact(self.model_dir, device=self.device)
        self.reloads += 1
        log.info("serving model %s", self._artifact.version)

    def _failed(self, exc: Exception) -> None:
        self.load_failures += 1
        self.last_error = str(exc) if isinstance(exc, DataError) else f"{self.model_dir}: {_one_line(exc)}"
        serving = self._artifact.version if self._artifact is not None else "none (the kill switch prices at base)"
        log.warning("model load failed (%d so far), serving %s: %s", self.load_failures, serving, self.last_error)
