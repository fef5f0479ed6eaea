"""The real-data check: a price response fitted on the Ta Feng transactions, scored on the held-out month."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.config import Settings
from pricewave.errors import DataError
from pricewave.pricing.features import assert_no_protected_inputs

TA_FENG_DESIGN_COLUMNS: tuple[str, ...] = ("product_id", "transaction_date", "log_unit_price")
"""The only inputs of the Ta Feng price-response model (never AGE_GROUP or PIN_CODE)."""


def ta_feng_daily(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily quantity and mean unit price per product (``sales_price`` is the line total)."""
    lines = frame[(frame["amount"] > 0) & (frame["sales_price"] > 0)]
    daily = (
        lines.groupby(["product_id", "transaction_date"], sort=True)
        .agg(quantity=("amount", "sum"), revenue=("sales_price", "sum"))
        .reset_index()
    )
    daily["unit_price"] = daily["revenue"] / daily["quantity"]
    daily["log_unit_price"] = np.log(daily["unit_price"])
    return daily


def fit_price_response(train: pd.DataFrame, prior_strength: float = 5.0) -> pd.DataFrame:
    """Per-product log-log regression ``log q = a + b log p`` with b shrunk toward the pooled slope.

    The pooled slope comes from the within-product regression of all products together; each
    product's slope is ``(Σ x̃ỹ + λ b_pool) / (Σ x̃² + λ)`` (x̃, ỹ: the product's demeaned log price
    and log quantity; λ = ``prior_strength``), so a product with little price variation stays near
    the pool. Residual smearing (Duan) turns log predictions back into quantities.

    Returns:
        One row per product: ``intercept``, ``elasticity``, ``smearing``, ``train_days``, ``mean_quantity``.
    """
    data = train.assign(log_q=np.log(train["quantity"]))
    grouped = data.groupby("product_id")
    x_mean = grouped["log_unit_price"].transform("mean")
    y_mean = grouped["log_q"].transform("mean")
    x_dev, y_dev = data["log_unit_price"] - x_mean, data["log_q"] - y_mean
    sxx = (x_dev * x_dev).groupby(data["product_id"]).sum()
    sxy = (x_dev * y_dev).groupby(data["product_id"]).sum()
    pooled = float(sxy.sum() / sxx.sum()) if sxx.sum() > 0 else 0.0
    slope = (sxy + prior_strength * pooled) / (sxx + prior_strength)
    products = pd.DataFrame(
        {
            "elasticity": slope,
            "x_mean": grouped["log_unit_price"].mean(),
            "y_mean": grouped["log_q"].mean(),
            "train_days": grouped.size(),
            "mean_quantity": grouped["quantity"].mean(),
        }
    )
    products["intercept"] = products["y_mean"] - products["elasticity"] * products["x_mean"]
    fitted = (
        products["intercept"].reindex(data["product_id"]).to_numpy()
        + products["elasticity"].reindex(data["product_id"]).to_numpy() * data["log_unit_price"].to_numpy()
    )
    residual = np.exp(data["log_q"].to_numpy() - fitted)
    products["smearing"] = pd.Series(residual, index=data.index).groupby(data["product_id"]).mean()
    products["elasticity_unpooled"] = (sxy / sxx).where(sxx > 0)
    products.attrs["pooled_elasticity"] = pooled
    return products


def evaluate_ta_feng(
    settings: Settings,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    min_train_days: int = 5,
    prior_strength: float = 5.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit per-product price response on Nov 2000 – Jan 2001, predict February's daily quantities.

    Args:
        settings: pricewave settings (where the data set is cached).
        out_dir: Where ``report.json`` goes.
        limit: Only the ``limit`` products with the most training days (all by default).
        min_train_days: Products need at least this many training days with sales.
        prior_strength: λ of the pooled prior on the slope.
        progress: Show the loading progress bar.

    Returns:
        The report: MAE / RMSE of the model and of the per-product-mean baseline on the held-out
        month, and the share of products with a negative estimated elasticity.
    """
    from pricewave.data.datasets import TA_FENG_MODEL_COLUMNS, load_ta_feng

    assert_no_protected_inputs(TA_FENG_DESIGN_COLUMNS)
    raw = load_ta_feng(settings, progress=progress)
    frame = raw[[c for c in TA_FENG_MODEL_COLUMNS if c in raw.columns]]  # no age group, no pin code
    daily = ta_feng_daily(frame)
    months = daily["transaction_date"].dt.to_period("M")
    ordered = sorted(months.unique())
    if len(ordered) < 2:
        raise DataError("the Ta Feng data need at least two months (train and held-out)")
    held_out = ordered[-1]
    train_rows = daily[(months < held_out) & (months >= ordered[max(0, len(ordered) - 4)])]
    test_rows = daily[months == held_out]
    counts = train_rows.groupby("product_id").size()
    eligible = counts[counts >= min_train_days].sort_values(ascending=False, kind="stable")
    if limit is not None:
        eligible = eligible.iloc[:limit]
    train_rows = train_rows[train_rows["product_id"].isin(eligible.index)]
    test_rows = test_rows[test_rows["product_id"].isin(eligible.index)]
    if test_rows.empty:
        raise DataError("no held-out days for the selected products: raise --limit")
    products = fit_price_response(train_rows, prior_strength)
    p = products.reindex(test_rows["product_id"])
    predicted = (
        np.exp(p["intercept"].to_numpy() + p["elasticity"].to_numpy() * test_rows["log_unit_price"].to_numpy())
        * p["smearing"].to_numpy()
    )
    baseline = p["mean_quantity"].to_numpy()
    actual = test_rows["quantity"].to_numpy(dtype=np.float64)

    def errors(prediction: npt.NDArray[np.float64]) -> dict[str, float]:
        return {
            "mae": round(float(np.mean(np.abs(prediction - actual))), 4),
            "rmse": round(float(np.sqrt(np.mean((prediction - actual) ** 2))), 4),
        }

    model_errors, baseline_errors = errors(predicted), errors(baseline)
    report: dict[str, Any] = {
        "dataset": "ta-feng",
        "train_months": [str(m) for m in ordered if m < held_out][-3:],
        "held_out_month": str(held_out),
        "products": len(products),
        "train_days": len(train_rows),
        "held_out_days": len(test_rows),
        "model": {**model_errors, "description": "per-product log-log regression with a pooled prior"},
        "baseline": {**baseline_errors, "description": "per-product mean daily quantity (training months)"},
        "negative_elasticity_share": round(float((products["elasticity"] < 0).mean()), 4),
        # Without the prior: products whose own prices varied, slope from their days alone.
        "negative_elasticity_share_unpooled": round(float((products["elasticity_unpooled"].dropna() < 0).mean()), 4),
        "caveat": "unit price = line total / quantity, so bulk discounts on big days bias slopes downward",
        "pooled_elasticity": round(float(products.attrs["pooled_elasticity"]), 4),
        "median_elasticity": round(float(products["elasticity"].median()), 4),
        "design_columns": list(TA_FENG_DESIGN_COLUMNS),
        "settings": {"limit": limit, "min_train_days": min_train_days, "prior_strength": prior_strength},
    }
    report["model_beats_baseline"] = {
        "mae": model_errors["mae"] < baseline_errors["mae"],
        "rmse": model_errors["rmse"] < baseline_errors["rmse"],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
