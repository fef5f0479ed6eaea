"""Step 5: fitting the demand model (BCE of purchase at the shown price, early stopping on validation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pricewave.errors import DataError
from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import (
    EMBEDDING_DIM,
    assert_no_protected_inputs,
    build_embedding_matrix,
    build_feature_matrix,
)
from pricewave.training.calibration import calibration_error, log_loss


@dataclass
class FitResult:
    """A fitted model, its metrics and the validation predictions (for the card)."""

    model: DemandModel
    metrics: dict[str, Any]
    val_labels: npt.NDArray[np.float64]
    val_probs: npt.NDArray[np.float64]
    history: list[dict[str, float]] = field(default_factory=list)


def model_inputs(
    frame: pd.DataFrame, with_embeddings: bool = False
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None, npt.NDArray[np.bool_]]:
    """``(x, embeddings or None, missing)`` of a training or decision frame."""
    assert_no_protected_inputs(frame.columns)
    x, missing = build_feature_matrix(frame)
    emb = build_embedding_matrix(frame)[0] if with_embeddings else None
    return x, emb, missing


def fit_demand_model(
    frame: pd.DataFrame,
    *,
    epochs: int = 40,
    patience: int = 5,
    val_share: float = 0.2,
    batch_size: int = 512,
    learning_rate: float = 3e-3,
    hidden: int = 64,
    seed: int = 0,
    with_embeddings: bool = False,
    progress: bool = True,
) -> FitResult:
    """Fit a :class:`DemandModel` on a training frame (:func:`build_training_frame`).

    The rows are split by time: the last ``val_share`` of the decision-time range validates.
    Training stops after ``patience`` epochs without a better validation log loss and keeps the
    best epoch's weights.

    Raises:
        DataError: Too few usable rows, a single class, or no price variation.
    """
    x_all, emb_all, missing = model_inputs(frame, with_embeddings)
    log_ratio = frame["log_price_ratio"].to_numpy(dtype=np.float64)
    usable = ~missing & np.isfinite(log_ratio)
    times = frame["event_time"].to_numpy(dtype=np.int64)
    labels = frame["purchased"].to_numpy(dtype=np.float64)
    if usable.sum() < 200:
        raise DataError(f"only {int(usable.sum())} views have features: simulate a longer history")
    start, end = times[usable].min(), times[usable].max()
    split_ms = end - val_share * (end - start)
    train_rows = np.flatnonzero(usable & (times < split_ms))
    val_rows = np.flatnonzero(usable & (times >= split_ms))
    if labels[train_rows].min() == labels[train_rows].max() or labels[val_rows].min() == labels[val_rows].max():
        raise DataError("the history needs purchases and non-purchases in both the training and validation ranges")
    price_sd = float(np.std(log_ratio[train_rows]))
    if price_sd < 1e-3:
        raise DataError(
            "the history's shown prices never differ from the list price, so the price response cannot be "
            "learned: omit --history to generate one with explored prices"
        )

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DemandModel(embedding_dim=EMBEDDING_DIM if with_embeddings else 0, hidden=hidden)
    x_t = torch.as_tensor(x_all)
    emb_t = torch.as_tensor(emb_all) if emb_all is not None else None
    r_t = torch.as_tensor(log_ratio, dtype=torch.float32).unsqueeze(-1)
    y_t = torch.as_tensor(labels, dtype=torch.float32).unsqueeze(-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=1e-5)

    def predict(rows: npt.NDArray[np.int64]) -> torch.Tensor:
        with torch.no_grad():
            model.eval()
            index = torch.as_tensor(rows)
            emb = emb_t[index] if emb_t is not None else None
            return model(x_t[index], emb, r_t[index]).squeeze(-1)

    val_y = labels[val_rows]
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    curve: list[dict[str, float]] = []
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.as_tensor(train_rows)[torch.randperm(len(train_rows), generator=generator)]
        total = 0.0
        for batch in torch.split(order, batch_size):
            emb = emb_t[batch] if emb_t is not None else None
            logits = model.logits(x_t[batch], emb, r_t[batch])
            loss = F.binary_cross_entropy_with_logits(logits, y_t[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        val_loss = log_loss(val_y, predict(val_rows).numpy())
        curve.append({"epoch": epoch, "train_log_loss": total / len(train_rows), "val_log_loss": val_loss})
        bar.set_postfix(val_log_loss=f"{val_loss:.4f}")
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()

    from pricewave.reviews.sentiment import roc_auc

    val_p = predict(val_rows).numpy().astype(np.float64)
    train_p = predict(train_rows).numpy().astype(np.float64)
    base_rate = float(labels[train_rows].mean())
    with torch.no_grad():
        elasticity = model.elasticity(x_t[torch.as_tensor(val_rows)], None if emb_t is None else emb_t[val_rows])
    metrics = {
        "val_log_loss": best_loss,
        "val_constant_log_loss": log_loss(val_y, np.full(len(val_y), base_rate)),
        "val_auc": roc_auc(val_y, val_p),
        "val_calibration_error": calibration_error(val_y, val_p),
        "train_log_loss": log_loss(labels[train_rows], train_p),
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "train_purchase_rate": base_rate,
        "val_purchase_rate": float(val_y.mean()),
        "rows_without_features": int((~usable).sum()),
        "price_ratio_sd": price_sd,
        "mean_elasticity": float(elasticity.mean()),
        "epochs_run": len(curve),
        "best_epoch": best_epoch,
        "split_time_ms": int(split_ms),
    }
    return FitResult(model, metrics, val_y, val_p, curve)
