"""Step 6 and the whole: ``train`` runs the steps and writes the artifact, its model card and plot."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pricewave.config import Settings
from pricewave.pricing.artifact import save_artifact
from pricewave.pricing.features import FEATURE_NAMES
from pricewave.training import fit as fitting
from pricewave.training.calibration import write_calibration_plot
from pricewave.training.dataset import build_training_frame
from pricewave.training.history import History, load_history


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def model_card(version: str, metrics: Mapping[str, Any], data_range: Mapping[str, Any]) -> str:
    """The model card (markdown) saved as ``card.md`` with each artifact."""
    m = metrics
    return f"""# Demand model {version}

**What it is.** P(buy | features, price) for pricewave's pricing network: a torch MLP whose purchase
logit is `base(x) − elasticity(x) · log(price / base_price)` with `elasticity(x) > 0`, so demand falls
with price for every input. The optimizer scores candidate prices with it and the guardrails bound
the result (see `pricewave/pricing/`).

**Inputs.** {len(FEATURE_NAMES)} features (`feature_spec.json`): {", ".join(FEATURE_NAMES)}.
No protected attribute is an input (checked by `assert_no_protected_inputs`).

**Data.** Simulator history `{data_range.get("source", "?")}` (scenario `{data_range.get("scenario", "?")}`),
views from {data_range.get("start_iso", "?")} to {data_range.get("end_iso", "?")}; features joined
point-in-time through Feast (each view sees only feature rows stamped before its decision time).
Training rows {m["train_rows"]:,}, validation rows {m["val_rows"]:,} (the last part of the time range,
from {_iso(int(m["split_time_ms"]))}). Shown prices varied (sd of log price ratio {m["price_ratio_sd"]:.3f}).

**Validation.**

| metric | value |
| --- | --- |
| log loss | {m["val_log_loss"]:.4f} |
| log loss of a constant predictor (training purchase rate) | {m["val_constant_log_loss"]:.4f} |
| ROC AUC | {m["val_auc"]:.3f} |
| expected calibration error (10 equal-count bins) | {m["val_calibration_error"]:.4f} |
| purchase rate (train / validation) | {m["train_purchase_rate"]:.4f} / {m["val_purchase_rate"]:.4f} |
| mean elasticity (validation rows) | {m["mean_elasticity"]:.3f} |
| epochs run (best) | {m["epochs_run"]} ({m["best_epoch"]}) |

![calibration](calibration.png)

**Limits.** Trained on simulated shoppers: the price response is only as good as the explored price
range ({data_range.get("explored", "see the history")}); outside it the model extrapolates along its
logit. Stale models trip the kill switch (guardrails) and fall back to the base price.
"""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced."""

    version: str
    path: Path
    metrics: dict[str, Any]
    data_range: dict[str, Any]


def train(
    history: History | str | Path,
    out_dir: str | Path,
    settings: Settings,
    *,
    epochs: int = 40,
    patience: int = 5,
    seed: int = 0,
    work_dir: str | Path | None = None,
    progress: bool = True,
    on_frame: Callable[[pd.DataFrame], None] | None = None,
) -> TrainResult:
    """Features → point-in-time join → fit → artifact with metrics, ``card.md`` and ``calibration.png``.

    Args:
        history: A :class:`History` or a history directory.
        out_dir: The model directory (``LATEST`` is pointed at the new version).
        settings: pricewave settings.
        epochs, patience: Early-stopping budget.
        seed: Seeds the split into personalized / sku-level rows and the fit.
        work_dir: Where the feature repo copy goes (default: a temporary directory, removed after).
        progress: Show progress bars.
        on_frame: Called with the joined training frame (the evaluation reuses it).

    Raises:
        DataError: Unusable history, or a fitted model that fails the publishing checks of
            :func:`~pricewave.pricing.artifact.save_artifact` (NaN/inf weights or metrics): then
            nothing is written and ``LATEST`` keeps naming the previous model.
    """
    loaded = history if isinstance(history, History) else load_history(history)
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="pricewave-train-")) if work_dir is None else Path(work_dir)
    try:
        frame = build_training_frame(loaded, settings, work, seed=seed)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    if on_frame is not None:
        on_frame(frame)
    fit = fitting.fit_demand_model(frame, epochs=epochs, patience=patience, seed=seed, progress=progress)
    start_ms, end_ms = loaded.time_range
    data_range = {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "start_iso": _iso(start_ms),
        "end_iso": _iso(end_ms),
        "views": len(loaded.exposures),
        "source": str(loaded.path) if loaded.path else "in memory",
        "scenario": loaded.scenario.name if loaded.scenario else "unknown",
    }
    # Publishing: save_artifact refuses NaN/inf weights or metrics before writing anything.
    version = save_artifact(fit.model, None, fit.metrics, data_range, out_dir)
    version_dir = Path(out_dir) / version
    write_calibration_plot(fit.val_labels, fit.val_probs, version_dir / "calibration.png")
    (version_dir / "card.md").write_text(model_card(version, fit.metrics, data_range))
    (version_dir / "training_curve.json").write_text(json.dumps(fit.history, indent=2))
    return TrainResult(version, version_dir, fit.metrics, data_range)


def train_small_model(work: Path, settings: Settings) -> Path:
    """A real demand model on a small simulated history (``small``, 20,000 events, ~30 s on 2 cores),
    under ``work``; returns its model directory. For tests and benchmarks that need a fresh model.

    Example:
        >>> from pricewave.config import load_settings                             # doctest: +SKIP
        >>> (train_small_model(Path("/tmp/work"), load_settings()) / "LATEST").is_file()  # doctest: +SKIP
        True
    """
    from pricewave.training.history import generate_history

    history = generate_history("small", settings, work / "history", events=20_000, seed=5, progress=False)
    train(history, work / "models", settings, epochs=15, patience=3, progress=False)
    return (work / "models").resolve()


def default_model_dir(settings: Settings) -> Path:
    """``settings.models.model_dir`` under the state directory (or as given when absolute)."""
    return settings.model_dir


def torch_threads_from_env() -> None:
    """Respect ``OMP_NUM_THREADS`` for torch's intra-op threads (shared CPUs)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))
