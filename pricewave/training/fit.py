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
from pricewave.reviews.sentiment import roc_auc
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


@dataclass(frozen=True)
class _TimeSplit:
    """The usable rows split by time: the last share of the decision-time range validates."""

    train_rows: npt.NDArray[np.int64]
    val_rows: npt.NDArray[np.int64]
    split_ms: float
    rows_without_features: int
    price_ratio_sd: float


@dataclass(frozen=True)
class _Tensors:
    """The whole frame as tensors; rows are picked by index."""

    x: torch.Tensor
    embeddings: torch.Tensor | None
    log_ratio: torch.Tensor
    labels: torch.Tensor

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The model's inputs of ``rows``: features, embeddings (or None) and log price ratio."""
        return self.x[rows], None if self.embeddings is None else self.embeddings[rows], self.log_ratio[rows]

    def predict(self, model: DemandModel, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Purchase probabilities of ``rows`` under ``model`` (evaluation mode, no gradients)."""
        with torch.no_grad():
            model.eval()
            return model(*self.batch(torch.as_tensor(rows))).squeeze(-1).numpy()


@dataclass
class _Training:
    """What the epochs leave: the best validation loss, its epoch and the learning curve."""

    best_loss: float = math.inf
    best_epoch: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)


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
    labels = frame["purchased"].to_numpy(dtype=np.float64)
    split = _split_by_time(frame, missing, log_ratio, labels, val_share)

    torch.manual_seed(seed)
    model = DemandModel(embedding_dim=EMBEDDING_DIM if with_embeddings else 0, hidden=hidden)
    tensors = _Tensors(
        x=torch.as_tensor(x_all),
        embeddings=torch.as_tensor(emb_all) if emb_all is not None else None,
        log_ratio=torch.as_tensor(log_ratio, dtype=torch.float32).unsqueeze(-1),
        labels=torch.as_tensor(labels, dtype=torch.float32).unsqueeze(-1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=1e-5)
    training = _train(
        model,
        tensors,
        split,
        labels[split.val_rows],
        optimizer,
        generator=torch.Generator().manual_seed(seed),
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        progress=progress,
    )
    val_y = labels[split.val_rows]
    val_p = tensors.predict(model, split.val_rows).astype(np.float64)
    metrics = _metrics(model, tensors, split, training, labels, val_p)
    return FitResult(model, metrics, val_y, val_p, training.curve)


def _split_by_time(
    frame: pd.DataFrame,
    missing: npt.NDArray[np.bool_],
    log_ratio: npt.NDArray[np.float64],
    labels: npt.NDArray[np.float64],
    val_share: float,
) -> _TimeSplit:
    """The rows with features, split by decision time; a DataError when they cannot teach a price response."""
    usable = ~missing & np.isfinite(log_ratio)
    times = frame["event_time"].to_numpy(dtype=np.int64)
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
    return _TimeSplit(train_rows, val_rows, split_ms, int((~usable).sum()), price_sd)


def _train(
    model: DemandModel,
    tensors: _Tensors,
    split: _TimeSplit,
    val_y: npt.NDArray[np.float64],
    optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator,
    epochs: int,
    patience: int,
    batch_size: int,
    progress: bool,
) -> _Training:
    """Epochs of shuffled mini-batches until validation stops improving; the model keeps the best weights."""
    training, best_state, stale = _Training(), None, 0
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.as_tensor(split.train_rows)[torch.randperm(len(split.train_rows), generator=generator)]
        total = 0.0
        for batch in torch.split(order, batch_size):
            loss = F.binary_cross_entropy_with_logits(model.logits(*tensors.batch(batch)), tensors.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        val_loss = log_loss(val_y, tensors.predict(model, split.val_rows))
        training.curve.append(
            {"epoch": epoch, "train_log_loss": total / len(split.train_rows), "val_log_loss": val_loss}
        )
        bar.set_postfix(val_log_loss=f"{val_loss:.4f}")
        if val_loss < training.best_loss - 1e-5:
            training.best_loss, training.best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return training


def _metrics(
    model: DemandModel,
    tensors: _Tensors,
    split: _TimeSplit,
    training: _Training,
    labels: npt.NDArray[np.float64],
    val_p: npt.NDArray[np.float64],
) -> dict[str, Any]:
    """The fit's metrics for the model card: validation quality against a constant, and the price response."""
    val_y = labels[split.val_rows]
    train_p = tensors.predict(model, split.train_rows).astype(np.float64)
    base_rate = float(labels[split.train_rows].mean())
    with torch.no_grad():
        x_val, emb_val, _ = tensors.batch(torch.as_tensor(split.val_rows))
        elasticity = model.elasticity(x_val, emb_val)
    return {
        "val_log_loss": training.best_loss,
        "val_constant_log_loss": log_loss(val_y, np.full(len(val_y), base_rate)),
        "val_auc": roc_auc(val_y, val_p),
        "val_calibration_error": calibration_error(val_y, val_p),
        "train_log_loss": log_loss(labels[split.train_rows], train_p),
        "train_rows": len(split.train_rows),
        "val_rows": len(split.val_rows),
        "train_purchase_rate": base_rate,
        "val_purchase_rate": float(val_y.mean()),
        "rows_without_features": split.rows_without_features,
        "price_ratio_sd": split.price_ratio_sd,
        "mean_elasticity": float(elasticity.mean()),
        "epochs_run": len(training.curve),
        "best_epoch": training.best_epoch,
        "split_time_ms": int(split.split_ms),
    }
