"""Versioned model artifacts, and a watcher that hot-swaps a new version without a restart.

Layout under a model directory (``Settings.models.model_dir``)::

    <model_dir>/<version>/weights.pt         state dict + model constructor config
    <model_dir>/<version>/feature_spec.json  the feature spec the model was trained on
    <model_dir>/<version>/metrics.json       version, created_at, data range, metrics
    <model_dir>/LATEST                       the version to serve (written last, atomically)

A version directory is written under a temporary name and renamed into place, and ``LATEST`` is
replaced atomically, so a reader never sees a half-written artifact. The model's age for the
kill switch is measured from ``created_at``.

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
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from pricewave.errors import DataError
from pricewave.pricing.demand_model import DemandModel, default_device
from pricewave.pricing.features import FEATURE_NAMES, FEATURE_SPEC_VERSION, assert_no_protected_inputs, feature_spec

POINTER = "LATEST"
WEIGHTS = "weights.pt"
SPEC = "feature_spec.json"
METRICS = "metrics.json"

log = logging.getLogger(__name__)


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


def save_artifact(
    model: DemandModel,
    spec: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    data_range: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    created_at: float | None = None,
) -> str:
    """Write a new model version under ``out_dir`` and point ``LATEST`` at it.

    Args:
        model: The trained demand model.
        spec: Its feature spec; None = the current :func:`~pricewave.pricing.features.feature_spec`.
        metrics: Evaluation metrics (JSON-serializable).
        data_range: What the model was trained on (e.g. ``{"start_ms": ..., "end_ms": ...}``).
        out_dir: The model directory.
        created_at: Creation time in epoch seconds (default: now).

    Returns:
        The new version name, e.g. ``demand-20250101T120000123456Z``.

    Raises:
        DataError: The spec names protected attributes or does not fit the model.
    """
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
    pointer_tmp = root / f".{POINTER}.{os.getpid()}.tmp"
    pointer_tmp.write_text(version + "\n")
    os.replace(pointer_tmp, root / POINTER)
    return version


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
    try:
        manifest = json.loads((_resolve(path_or_dir) / METRICS).read_text())
        created_at = float(manifest["created_at"])
    except (DataError, OSError, ValueError, KeyError, TypeError):
        return None
    return (time.time() if now is None else now) - created_at


def load_artifact(path_or_dir: str | Path, *, device: torch.device | str | None = None) -> ModelArtifact:
    """Load the version ``LATEST`` names in a model directory, or a version directory itself.

    Args:
        path_or_dir: A model directory (with ``LATEST``) or one version's directory.
        device: Where to put the model (default: CUDA when present, else CPU).

    Raises:
        DataError: Nothing there, files unreadable, or trained on another feature spec.
    """
    version_dir = _resolve(path_or_dir)
    target = torch.device(device) if device is not None else default_device()
    try:
        spec = json.loads((version_dir / SPEC).read_text())
        manifest = json.loads((version_dir / METRICS).read_text())
        payload = torch.load(version_dir / WEIGHTS, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"model artifact {version_dir} is incomplete ({Path(exc.filename).name} missing)") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"model artifact {version_dir} is unreadable: {exc}") from None
    names = spec.get("feature_names")
    assert_no_protected_inputs(names or [])
    if spec.get("version") != FEATURE_SPEC_VERSION or tuple(names or ()) != FEATURE_NAMES:
        raise DataError(
            f"model artifact {version_dir} was trained on feature spec v{spec.get('version')}, this code builds "
            f"v{FEATURE_SPEC_VERSION} {FEATURE_NAMES[:2]}...; retrain the model"
        )
    model = DemandModel(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.to(target).eval()
    return ModelArtifact(
        version=str(manifest.get("version", version_dir.name)),
        model=model,
        spec=spec,
        metrics=dict(manifest.get("metrics", {})),
        data_range=dict(manifest.get("data_range", {})),
        created_at=float(manifest["created_at"]),
        path=version_dir,
    )


class ArtifactWatcher:
    """Serves the newest model version, reloading when ``LATEST`` changes (no restart).

    :meth:`current` stats the pointer file at most once per ``check_interval_s`` (a cheap
    ``os.stat``) and loads a new version only when the pointer's mtime/size changed and it names
    another version. A version that fails to load is logged and the previous one keeps serving.

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

    def current(self) -> ModelArtifact | None:
        """The artifact to serve now; None while no model has been published yet."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.check_interval_s:
            return self._artifact
        self._checked_at = now
        try:
            st = os.stat(self.model_dir / POINTER)
        except FileNotFoundError:
            return self._artifact
        stat_key = (st.st_mtime_ns, st.st_size)
        if stat_key == self._pointer_stat:
            return self._artifact
        self._pointer_stat = stat_key
        try:
            version = (self.model_dir / POINTER).read_text().strip()
            if self._artifact is not None and version == self._artifact.version:
                return self._artifact
            self._artifact = load_artifact(self.model_dir, device=self.device)
            self.reloads += 1
            log.info("serving model %s", self._artifact.version)
        except (DataError, OSError) as exc:
            log.warning("keeping model %s: %s", self._artifact.version if self._artifact else None, exc)
        return self._artifact
