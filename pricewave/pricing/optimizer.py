"""Pick the price that maximizes an objective under the demand model, K candidates per row at once.

For each row, K candidate prices form a geometric grid on [lo, hi] (the guardrail-feasible
interval, so every candidate is already publishable up to rounding). The model scores all B×K
candidates in ONE batched pass (one trunk pass per row, the price enters only through the logit)
on the model's device, and the best candidate per row is taken by:

* ``margin``:  (p − cost) · P(buy | p)
* ``revenue``: p · P(buy | p)
* ``blend``:   (1 − w) · (p − cost) · P + w · ref_price · P  (conversion valued at the reference
  price, so w = 0 is the margin objective and w = 1 maximizes conversion)

plus, when ``stock_pressure`` s >= 0 is given, s · ref_price · P (over-stocked skus value a sale
more, pushing sell-through). ``expected_value`` is that objective at the chosen price, in currency.

Example:
    >>> import numpy as np, torch
    >>> from pricewave.pricing.demand_model import DemandModel
    >>> _ = torch.manual_seed(0)
    >>> model = DemandModel()
    >>> x = np.zeros((3, model.n_features), dtype=np.float32)
    >>> result = optimize(model, x, None, ref_price=[20.0] * 3, cost=[10.0] * 3, lo=[15.0] * 3, hi=[30.0] * 3)
    >>> result.price.shape, bool(((result.price >= 15.0) & (result.price <= 30.0)).all())
    ((3,), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from pricewave.pricing.demand_model import DemandModel, model_device, price_response_logits

Objective = Literal["margin", "revenue", "blend"]
OBJECTIVES: tuple[str, ...] = ("margin", "revenue", "blend")
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OptimizerResult:
    """Per-row optimum (NaN where the interval was not usable) and the scored grid.

    Attributes:
        price: The best candidate price (B,).
        expected_value: The objective at that price, in currency (B,).
        conversion: P(buy) at that price (B,).
        elasticity: The model's elasticity (B,).
        base_logit: The model's purchase logit at the reference price (B,).
        candidates: The candidate grid (B, K), float64.
        conversions: P(buy) of every candidate (B, K).
        best_index: Index of the chosen candidate (B,).
    """

    price: FloatArray
    expected_value: FloatArray
    conversion: FloatArray
    elasticity: FloatArray
    base_logit: FloatArray
    candidates: FloatArray
    conversions: FloatArray
    best_index: npt.NDArray[np.int64]


def candidate_grid(lo: Any, hi: Any, k: int) -> FloatArray:
    """A geometric grid of ``k`` prices from ``lo`` to ``hi`` per row, (B, k); both ends included.

    Rows with a degenerate interval (lo == hi) repeat that price.
    """
    lo_a = np.asarray(lo, dtype=np.float64).reshape(-1, 1)
    hi_a = np.asarray(hi, dtype=np.float64).reshape(-1, 1)
    if k == 1:
        return np.sqrt(lo_a * hi_a)
    steps = np.linspace(0.0, 1.0, k).reshape(1, -1)
    grid = lo_a * np.exp(steps * np.log(hi_a / lo_a))
    grid[:, -1:] = hi_a  # exact ends, whatever exp/log rounding does
    grid[:, :1] = lo_a
    return np.clip(grid, lo_a, hi_a)


def _tensor(value: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    array = np.asarray(value)
    if not array.flags.writeable:  # broadcast views: torch wants memory it may own
        array = array.copy()
    return torch.as_tensor(array, device=device).to(dtype)


def optimize(
    model: DemandModel,
    x: Any,
    emb: Any,
    ref_price: Any,
    cost: Any,
    lo: Any,
    hi: Any,
    *,
    k: int = 32,
    objective: Objective = "margin",
    blend_weight: float = 0.5,
    stock_pressure: Any = None,
) -> OptimizerResult:
    """Best of ``k`` candidate prices on [lo, hi] per row under ``model``.

    Args:
        model: A :class:`~pricewave.pricing.demand_model.DemandModel` (anything with
            ``decompose(x, emb) -> (base_logit, elasticity)``), on any device.
        x: Feature rows (B, F), numpy or torch.
        emb: Review embeddings (B, 384) or None.
        ref_price: Reference price of the log price ratio (the base price), (B,).
        cost: Unit cost, (B,).
        lo, hi: The interval to search per row, (B,). Rows with NaN, lo <= 0 or hi < lo get NaN.
        k: Number of candidates per row (>= 1).
        objective: ``margin``, ``revenue`` or ``blend``.
        blend_weight: w of the ``blend`` objective, in [0, 1].
        stock_pressure: Optional (B,) >= 0 sell-through pressure.

    Returns:
        The per-row optimum and the scored grid.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if k < 1:
        raise ValueError("k must be >= 1")
    if not 0 <= blend_weight <= 1:
        raise ValueError("blend_weight must be in [0, 1]")
    ref = np.asarray(ref_price, dtype=np.float64).reshape(-1)
    n = ref.shape[0]
    cost_a = np.broadcast_to(np.asarray(cost, dtype=np.float64), (n,))
    lo_a = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,))
    hi_a = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,))
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(lo_a) & np.isfinite(hi_a) & (lo_a > 0) & (hi_a >= lo_a) & np.isfinite(ref) & (ref > 0)
    safe_ref = np.where(usable, ref, 1.0)
    grid = candidate_grid(np.where(usable, lo_a, 1.0), np.where(usable, hi_a, 1.0), k)

    device = model_device(model)
    dtype = next(model.parameters()).dtype

    def tensor(value: Any) -> torch.Tensor:
        return _tensor(value, device, dtype)

    log_ratio = np.log(grid / safe_ref[:, None])
    with torch.inference_mode():
        base, elasticity = model.decompose(tensor(x), None if emb is None else tensor(emb))
        probs = torch.sigmoid(price_response_logits(base, elasticity, tensor(log_ratio)))
        prices = tensor(grid)
        per_sale = prices - tensor(cost_a).unsqueeze(-1)
        ref_t = tensor(safe_ref).unsqueeze(-1)
        if objective == "revenue":
            per_sale = prices.expand_as(probs)
        elif objective == "blend":
            per_sale = (1 - blend_weight) * per_sale + blend_weight * ref_t
        if stock_pressure is not None:
            pressure = torch.clamp(tensor(np.broadcast_to(stock_pressure, (n,))), min=0)
            per_sale = per_sale + pressure.unsqueeze(-1) * ref_t
        values = per_sale * probs
        best = torch.argmax(values, dim=1)
        best_values = values.gather(1, best.unsqueeze(-1)).squeeze(-1)
        probs_cpu = probs.double().cpu().numpy()
        best_cpu = best.cpu().numpy().astype(np.int64)
        best_values_cpu = best_values.double().cpu().numpy()
        base_cpu = base.double().cpu().numpy()
        elasticity_cpu = elasticity.double().cpu().numpy()

    rows = np.arange(n)
    nan = np.full(n, np.nan)
    return OptimizerResult(
        price=np.where(usable, grid[rows, best_cpu], nan),
        expected_value=np.where(usable, best_values_cpu, nan),
        conversion=np.where(usable, probs_cpu[rows, best_cpu], nan),
        elasticity=elasticity_cpu,
        base_logit=base_cpu,
        candidates=np.where(usable[:, None], grid, np.nan),
        conversions=probs_cpu,
        best_index=best_cpu,
    )


def conversion_at(base_logit: Any, elasticity: Any, price: Any, ref_price: Any) -> FloatArray:
    """P(buy) at ``price`` from the model's per-row terms (the same response as the model), float64."""
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = np.log(np.asarray(price, dtype=np.float64) / np.asarray(ref_price, dtype=np.float64))
    logits = price_response_logits(
        torch.as_tensor(np.asarray(base_logit, dtype=np.float64)),
        torch.as_tensor(np.asarray(elasticity, dtype=np.float64)),
        torch.as_tensor(log_ratio).unsqueeze(-1),
    )
    return np.asarray(torch.sigmoid(logits).squeeze(-1).numpy(), dtype=np.float64)
