"""How well predicted purchase probabilities match outcomes: log loss, calibration table and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd


def log_loss(labels: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    """Mean binary cross-entropy (probabilities clipped to [1e-7, 1 − 1e-7])."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_table(labels: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of predicted probability: mean predicted, observed rate, count."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, max(len(p), 1)))
    rows = [
        {"predicted": float(p[g].mean()), "observed": float(y[g].mean()), "count": len(g)} for g in groups if len(g)
    ]
    return pd.DataFrame(rows)


def calibration_error(labels: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: count-weighted mean |observed − predicted| over equal-count bins."""
    table = calibration_table(labels, probs, bins)
    if table.empty:
        return float("nan")
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["observed"] - table["predicted"]).abs()).sum())


def write_calibration_plot(labels: npt.ArrayLike, probs: npt.ArrayLike, path: str | Path) -> Path:
    """A reliability diagram (observed purchase rate vs predicted probability) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = calibration_table(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = max(float(table["predicted"].max()), float(table["observed"].max()), 0.05) * 1.1
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.plot(table["predicted"], table["observed"], marker="o", label="model (equal-count bins)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted P(buy)")
    ax.set_ylabel("observed purchase rate")
    ax.set_title("Calibration on the validation range")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
